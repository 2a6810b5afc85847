"""The WSGI entry point for gunicorn (``gunicorn 'marketplace.wsgi:app'``).

After the app is built, everything alive is moved out of the garbage collector's sight
(``gc.freeze``): the models, catalogues and OpenAPI shapes live as long as the process, and a
full collection walking them took ~0.1 s of a page now and then (a dashboard's p95 doubled).
Only here, not in ``create_app``: a test session builds hundreds of apps that must be freed."""
from __future__ import annotations

import gc

from marketplace import create_app

app = create_app()
gc.collect()
gc.freeze()
