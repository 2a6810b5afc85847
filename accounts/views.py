"""Sign up (merchant owners), sign in, sign out."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from accounts.access import home_for
from accounts.forms import LoginForm, SignupForm
from accounts.services import AccountError, LoginThrottle, authenticate, end_sessions, sign_up_owner
from core.db import db
from core.extensions import get_redis
from core.txn import transaction

bp = Blueprint("auth", __name__, url_prefix="/auth")


def _throttle() -> LoginThrottle:
    cfg = current_app.config
    return LoginThrottle(
        get_redis(), cfg["LOGIN_THROTTLE_LIMIT"], cfg["LOGIN_THROTTLE_WINDOW"],
        user_limit=cfg["LOGIN_THROTTLE_USER_LIMIT"], ip_limit=cfg["LOGIN_THROTTLE_IP_LIMIT"],
    )


def _safe_next(target: str | None) -> str | None:
    """Only same-site paths: ``next`` must not send a fresh login to another host."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        # remote_addr is the client's address, or X-Forwarded-For's under TRUSTED_PROXIES
        throttle, ip = _throttle(), request.remote_addr or ""
        username = form.username.data.strip()
        # counted before the (slow) password check: parallel guesses cannot slip past
        if not throttle.attempt(username, ip):
            minutes = current_app.config["LOGIN_THROTTLE_WINDOW"] // 60
            form.form_errors.append(_("登录失败次数过多，请 %(m)s 分钟后再试。", m=minutes))
            status = 429
        else:
            user = authenticate(db.session, username, form.password.data)
            if user is None:
                form.form_errors.append(_("用户名或密码不正确。"))
                status = 401
            else:
                throttle.succeeded(username, ip)
                login_user(user, remember=form.remember.data)
                return redirect(_safe_next(request.args.get("next")) or home_for(user))
    return render_template("auth/login.html", form=form), status


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = SignupForm()
    if form.validate_on_submit():
        try:
            with transaction(db.session):
                user = sign_up_owner(
                    db.session,
                    username=form.username.data,
                    password=form.password.data,
                    display_name=form.display_name.data,
                )
        except AccountError as exc:
            getattr(form, exc.field or "username").errors.append(str(exc.message))
        else:
            login_user(user)
            flash(_("注册成功，请填写商户资料。"))
            return redirect(url_for("merchants.enrol"))
    return render_template("auth/signup.html", form=form)


@bp.post("/logout")
@login_required
def logout():
    """Logs out everywhere: the session version moves on, so this session, a copy of its
    cookie and every remember cookie of the user are refused from now on."""
    with transaction(db.session) as session:
        end_sessions(session, current_user.id)
    logout_user()
    flash(_("已退出登录。"))
    return redirect(url_for("auth.login"))
