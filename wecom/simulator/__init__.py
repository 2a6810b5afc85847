"""A local stand-in for WeCom (企业微信): the customer-contact API under ``/cgi-bin/``,
encrypted callbacks, a phone view for simulated diners and a console for staff.

Imports nothing from the app; see README.md beside this file for knobs and endpoints.
"""
from __future__ import annotations

import os
from typing import Any

from flask import Flask, request
from flask_babel import Babel

from wecom import redact
from wecom.simulator import admin, api, groups, messaging, oauth, pages
from wecom.simulator.seed import seed
from wecom.simulator.settings import load_settings
from wecom.simulator.state import Sim

# Paths that never need lazy settlement (static images).
_NO_SETTLE = ("/qr/", "/avatar/")


def create_simulator_app(config: dict[str, Any] | None = None) -> Flask:
    config = dict(config or {})
    redact.install("werkzeug")  # its access log shows the token, the secret and OAuth codes
    app = Flask(__name__, instance_path=config.get("INSTANCE_PATH") or os.path.abspath("instance"))
    app.config.update(SECRET_KEY=config.get("SECRET_KEY", "wecom-simulator"), BABEL_DEFAULT_LOCALE="zh",
                      SESSION_COOKIE_NAME="wecom_sim_session")  # cookies ignore ports: not the app's
    app.config.update(config)
    os.makedirs(app.instance_path, exist_ok=True)
    settings = load_settings(config, app.instance_path)
    sim = Sim(settings, clock=config.get("CLOCK"))
    app.extensions["wecom_sim"] = sim
    sim.create_schema()
    with sim.transaction() as session:
        seed(session, settings.corp_id)

    Babel(app)

    app.register_blueprint(api.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(pages.bp)
    oauth.init_app(app)  # WeChat web OAuth (open.weixin.qq.com / api.weixin.qq.com stand-ins)

    @app.before_request
    def settle() -> None:
        """Lazy time: auto-confirm due mass messages and complete due transfers."""
        if request.path.startswith(_NO_SETTLE):
            return
        settle_now(sim)

    return app


def settle_now(sim: Sim) -> None:
    with sim.transaction() as session:
        messaging.settle_due(session, sim)
        groups.settle_transfers(session, sim)


def run_simulator(host: str = "127.0.0.1", port: int = 5001, config: dict[str, Any] | None = None) -> None:
    """``linli simulator``: serve the simulator with Werkzeug (threaded)."""
    config = dict(config or {})
    config.setdefault("WECOM_SIM_PUBLIC_URL", os.environ.get("WECOM_SIM_PUBLIC_URL", f"http://{host}:{port}"))
    app = create_simulator_app(config)
    app.run(host=host, port=port, threaded=True, use_reloader=False)
