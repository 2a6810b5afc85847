"""Linli: the app factory. One place builds the app and wires every package."""
from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask

import accounts
from core import converters, i18n
from core import wecom as wecom_setup
from core.config import ROOT, Settings
from core.extensions import db, init_redis

# Importing these connects every signal receiver and WeCom event handler (one module a domain;
# the add-contact flow spans domains, so it lives on the roof).
from integrations import handlers as integration_handlers  # noqa: F401
from marketplace import (
    errors,
    security,
    views,
    welcome,  # noqa: F401
)
from merchants import handlers as merchant_handlers  # noqa: F401
from residents import handlers as resident_handlers  # noqa: F401


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
    security.init_app(app)  # refuses demo secrets against the real WeCom; proxies; headers
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    db.init_app(app)
    init_redis(app)
    i18n.init_app(app)

    converters.init_app(app)  # before any route: <int:...> is bounded to 1..2147483647
    wecom_setup.init_app(app)
    views.init_app(app)
    errors.init_app(app)
    accounts.init_app(app)  # after the blueprints: it exempts the WeCom callback from CSRF
    return app
