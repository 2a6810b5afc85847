"""Marketplace-wide pages and blueprint registration."""
from __future__ import annotations

from flask import Blueprint, Flask, current_app, jsonify, render_template

from campaigns import mobile as campaign_mobile
from campaigns import views as campaign_views
from coupons import views as coupon_views
from integrations import views as integration_views
from integrations import webhook_views
from marketplace import admin
from marketplace.api import v1 as api_v1
from marketplace.demo import DEMO_PASSWORD, demo_logins
from merchants import channel_views
from merchants import views as merchant_views
from residents import views as resident_views
from residents.transfers import views as transfer_views
from stats import admin_views as stats_admin_views
from stats import views as stats_views
from wecom.defaults import DEMO_CORP_ID

bp = Blueprint("marketplace", __name__)


@bp.get("/")
def home():
    # On the demo corp (local dev, ``make run``): where to sign in and the simulated phone.
    demo = current_app.config.get("WECOM_CORP_ID") == DEMO_CORP_ID
    api_base = current_app.config.get("WECOM_API_BASE", "")
    sim = api_base[: -len("cgi-bin/")] if demo and api_base.endswith("/cgi-bin/") else ""
    return render_template("marketplace/home.html", demo_logins=demo_logins() if demo else [],
                           demo_password=DEMO_PASSWORD, sim_url=sim)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(stats_views.bp)
    app.register_blueprint(stats_admin_views.bp)
    app.register_blueprint(stats_views.portal)
    app.register_blueprint(merchant_views.bp)
    app.register_blueprint(channel_views.bp)
    coupon_views.init_app(app)
    app.register_blueprint(resident_views.bp)
    app.register_blueprint(transfer_views.bp)
    app.register_blueprint(campaign_views.bp)
    app.register_blueprint(campaign_mobile.bp)
    app.register_blueprint(integration_views.bp)
    app.register_blueprint(webhook_views.bp)
    api_v1.init_app(app)
