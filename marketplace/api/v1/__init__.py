"""``/api/v1``: the JSON API for merchants' POS systems and managers' statistics.

Every route is declared with spectree over the pydantic shapes in ``schemas`` (the
statistics' own in ``statistics``), and the OpenAPI 3.1 document (``/api/v1/openapi.json``)
is generated from those declarations; the reference page (``/api/v1/docs/reference/``)
renders it with the vendored Redoc. Callers authenticate with ``Authorization: Bearer lk_…``
(``integrations.services.keys``); every error is a problem document (``problems``); every
mutation needs an ``Idempotency-Key`` (``base.mutate``); each key has a rate limit
(``API_RATE_LIMIT``, a 429 with Retry-After past it). Views stay thin: parse, call a domain
service, shape the answer."""
from __future__ import annotations

from flask import jsonify

from marketplace.api.v1 import channels, redemptions, statistics, stores, templates  # noqa: F401  (views on ``bp``)
from marketplace.api.v1.base import bp, document, init_limiter, spec


def init_app(app) -> None:
    init_limiter(app)
    app.register_blueprint(bp)
    spec.register(app)  # the reference page (and spectree's raw document under /docs/)
    app.add_url_rule("/api/v1/openapi.json", "api_v1_openapi", lambda: jsonify(document()))
