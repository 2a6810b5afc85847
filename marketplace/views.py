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
    app.register_blueprint(bp)
