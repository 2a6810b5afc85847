"""Marketplace-wide pages and blueprint registration."""
from __future__ import annotations

from flask import Blueprint, Flask, jsonify, render_template

bp = Blueprint("marketplace", __name__)


@bp.get("/")
def home():
    return render_template("marketplace/home.html")


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


def init_app(app: Flask) -> None:
    from marketplace import admin
    from merchants import views as merchant_views

    app.register_blueprint(bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(merchant_views.bp)
    from merchants.channel_views import bp as channels_bp; app.register_blueprint(channels_bp)  # noqa: E702
    from coupons.views import init_app as coupons_init_app; coupons_init_app(app)  # noqa: E702
    from marketplace.residents import transfer_views, views as resident_views

    app.register_blueprint(resident_views.bp)
    app.register_blueprint(transfer_views.bp)
