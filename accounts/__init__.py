"""Accounts, roles and sign-in. ``init_app`` wires it all (the roof calls it after every other
blueprint is registered); ``require_role`` guards views; ``home_for`` says where a user lands
after signing in (both live in ``accounts.access``)."""
from __future__ import annotations

from flask import Flask

from accounts import access, views
from accounts.access import csrf, home_for, login_manager, require_role

__all__ = ["csrf", "home_for", "init_app", "login_manager", "require_role"]


def init_app(app: Flask) -> None:
    """The sign-in pages, then cookies, Flask-Login and CSRF (which must see every blueprint)."""
    app.register_blueprint(views.bp)
    access.init_app(app)
