"""Linli: the app factory. One place builds the app and wires every package."""
from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask

from marketplace.config import ROOT, Settings


def create_app(config: dict | None = None) -> Flask:
    """Build the web app. ``config`` overrides settings read from the environment (tests)."""
    settings = Settings.from_env()
    overrides = dict(config or {})
    for key in list(overrides):
        if hasattr(settings, key):
            setattr(settings, key, overrides.pop(key))
    settings.extra.update(overrides)
    settings.fill_defaults()

    app = Flask(
        __name__,
        instance_path=str(Path(settings.INSTANCE_PATH).resolve()),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "marketplace" / "static"),
    )
    app.config.from_mapping(settings.as_flask_config())
    app.config.setdefault("MAX_CONTENT_LENGTH", 8 * 1024 * 1024)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from marketplace import i18n
    from marketplace.extensions import db, init_redis

    db.init_app(app)
    init_redis(app)
    i18n.init_app(app)

    from marketplace import auth, wecom_setup, views

    wecom_setup.init_app(app)
    views.init_app(app)
    auth.init_app(app)  # after the blueprints: it exempts the WeCom callback from CSRF
    _register_event_handlers()
    return app


def _register_event_handlers() -> None:
    """Domain modules subscribe to WeCom events on import (``wecom.events.registry``)."""
    from marketplace import welcome  # noqa: F401
    from marketplace.residents import handlers, tags, transfers  # noqa: F401
