"""Account rules: creating users, checking passwords, throttling failed logins.

Services take a session and never commit; the caller owns the transaction.
"""
from __future__ import annotations

import hashlib
import re

from flask import current_app, has_app_context
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from accounts.models import Role, User
from core.errors import Invalid

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{3,64}$")
MIN_PASSWORD = 8
_dummy_hashes: dict[str, str] = {}


class AccountError(Invalid):
    """A rule the user broke; ``field`` names the form input to show it on."""


def _hash_method() -> str:
    """werkzeug's default (scrypt, random salt); ``PASSWORD_HASH_METHOD`` exists only so test
    suites can pick cheaper scrypt parameters."""
    method = current_app.config.get("PASSWORD_HASH_METHOD") if has_app_context() else None
    return method or "scrypt"


def hash_password(password: str) -> str:
    return generate_password_hash(password, _hash_method())


def _dummy_hash() -> str:
    """Checked when the username is unknown, so a miss costs as much as a wrong password."""
    method = _hash_method()
    if method not in _dummy_hashes:
        _dummy_hashes[method] = generate_password_hash("linli-dummy-password", method)
    return _dummy_hashes[method]


def _check_new_credentials(username: str, password: str) -> str:
    username = (username or "").strip()
    if not USERNAME_RE.match(username):
        raise AccountError(_l("用户名须为 3–64 位字母、数字或 _ . @ -"), "username")
    if len(password or "") < MIN_PASSWORD:
        raise AccountError(_l("密码至少 %(n)s 位。", n=MIN_PASSWORD), "password")
    return username


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(func.lower(User.username) == username.strip().lower()))


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: Role,
    display_name: str = "",
    merchant_id: int | None = None,
    store_id: int | None = None,
) -> User:
    username = _check_new_credentials(username, password)
    if find_user(session, username) is not None:
        raise AccountError(_l("用户名已被占用。"), "username")
    user = User(
        username=username,
        password_hash=hash_password(password),
        display_name=(display_name or "").strip()[:64],
        role=role,
        merchant_id=merchant_id,
        store_id=store_id,
    )
    session.add(user)
    session.flush()
    return user


def sign_up_owner(session: Session, *, username: str, password: str, display_name: str = "") -> User:
    """A merchant owner without a merchant yet: enrolment comes next."""
    return create_user(session, username=username, password=password, role=Role.owner, display_name=display_name)


def create_admin(session: Session, username: str, password: str) -> User:
    """For ``linli admin create``: a platform admin, or a new password for an existing one."""
    user = find_user(session, username)
    if user is None:
        return create_user(session, username=username, password=password, role=Role.admin)
    if user.role != Role.admin:
        raise AccountError(_l("该用户名已被非管理员账号使用。"), "username")
    _check_new_credentials(username, password)
    user.password_hash = hash_password(password)
    user.active = True
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    user = find_user(session, username or "")
    if user is None:
        check_password_hash(_dummy_hash(), password or "")
        return None
    if not user.active or not check_password_hash(user.password_hash, password or ""):
        return None
    return user


class LoginThrottle:
    """Failed logins counted in Redis per username + IP; ``limit`` failures within ``window``
    seconds lock that pair out until the window (started by the first failure) ends."""

    def __init__(self, redis, limit: int = 5, window: int = 15 * 60) -> None:
        self.redis, self.limit, self.window = redis, limit, window

    def _key(self, username: str, ip: str) -> str:
        digest = hashlib.sha256(f"{(username or '').strip().lower()}|{ip}".encode()).hexdigest()[:32]
        return f"linli:login:fail:{digest}"

    def blocked(self, username: str, ip: str) -> bool:
        count = self.redis.get(self._key(username, ip))
        return count is not None and int(count) >= self.limit

    def failed(self, username: str, ip: str) -> int:
        key = self._key(username, ip)
        count = self.redis.incr(key)
        if count == 1:
            self.redis.expire(key, self.window)
        return count

    def reset(self, username: str, ip: str) -> None:
        self.redis.delete(self._key(username, ip))
