"""Who may see what: Flask-Login wiring, CSRF for every form (Flask-WTF), ``require_role``
for views and ``home_for`` (where a user lands after signing in)."""
from __future__ import annotations

from datetime import timedelta
from functools import wraps

from flask import Flask, abort, current_app, url_for
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFProtect

from accounts.models import Role, User
from core.db import db

login_manager = LoginManager()
csrf = CSRFProtect()

WECOM_CALLBACK_PATH = "/wecom/callback"


def init_app(app: Flask) -> None:
    """Cookies, sign-in and CSRF. Call after every blueprint is registered: the WeCom
    callback is found by its URL."""
    secure = bool(app.config.get("SESSION_COOKIE_SECURE"))
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["REMEMBER_COOKIE_SECURE"] = secure
    app.config["REMEMBER_COOKIE_HTTPONLY"] = True
    app.config["REMEMBER_COOKIE_SAMESITE"] = "Lax"
    app.config["REMEMBER_COOKIE_DURATION"] = timedelta(days=int(app.config.get("REMEMBER_COOKIE_DAYS", 14)))

    login_manager.login_view = "auth.login"
    login_manager.login_message = _l("请先登录。")
    login_manager.login_message_category = "error"
    login_manager.init_app(app)

    csrf.init_app(app)
    _exempt_wecom_callback(app)


def _exempt_wecom_callback(app: Flask) -> None:
    """WeCom signs its callbacks itself (msg_signature), it cannot send our CSRF token."""
    for rule in app.url_map.iter_rules():
        if rule.rule == WECOM_CALLBACK_PATH and "." in rule.endpoint:
            blueprint = app.blueprints.get(rule.endpoint.rsplit(".", 1)[0])
            if blueprint is not None:
                csrf.exempt(blueprint)


def parse_session_id(value: str) -> tuple[int, int] | None:
    """``"id:version"`` (``User.get_id``) as two ints; anything else (a bare id from before
    session versions, garbage) is None."""
    user_id, sep, version = (value or "").partition(":")
    if not sep:
        return None
    try:
        return int(user_id), int(version)
    except ValueError:
        return None


@login_manager.user_loader
def _load_user(session_id: str) -> User | None:
    """The session's and the remember cookie's user, only while active and only for the
    session version they were issued under (bumped by logout, deactivation, a new password)."""
    parsed = parse_session_id(session_id)
    if parsed is None:
        return None
    user = db.session.get(User, parsed[0])
    if user is None or not user.active or (user.session_version or 1) != parsed[1]:
        return None
    return user


def require_role(*roles: Role):
    """Signed-in users with one of ``roles`` pass; anonymous users go to the login page,
    others get 403."""

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            # the loader already refuses inactive users and ended sessions; is_active is
            # checked again for a user object swapped in some other way
            if not current_user.is_authenticated or not current_user.is_active:
                return current_app.login_manager.unauthorized()
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


# Cashiers work only at the redemption desk; the coupons package names its endpoint.
CASHIER_HOME_ENDPOINTS = ("coupons.desk", "coupons.desk_index", "coupons.redeem_index")


def home_for(user: User) -> str:
    """The page a user lands on after signing in."""
    if user.role in (Role.admin, Role.manager):
        return url_for("merchants.review_queue")
    if user.role == Role.cashier:
        for endpoint in CASHIER_HOME_ENDPOINTS:
            if endpoint in current_app.view_functions:
                return url_for(endpoint)
        return url_for("marketplace.home")
    return url_for("merchants.portal_home")
