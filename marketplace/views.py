"""Marketplace-wide pages and blueprint registration."""
from __future__ import annotations

from flask import Blueprint, Flask, jsonify, render_template

from coupons import views as coupon_views
from marketplace import admin
from merchants import channel_views
from merchants import views as merchant_views
from residents import views as resident_views
from residents.transfers import views as transfer_views

bp = Blueprint("marketplace", __name__)


@bp.get("/")
def home():
    return render_template("marketplace/home.html")


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(merchant_views.bp)
    app.register_blueprint(channel_views.bp)
    coupon_views.init_app(app)
    app.register_blueprint(resident_views.bp)
    app.register_blueprint(transfer_views.bp)
