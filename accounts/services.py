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
from zxcvbn import zxcvbn

from accounts.models import Role, User
from core.errors import Invalid, NotFound

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{3,64}$")
MIN_PASSWORD = 8
# zxcvbn's 0–4 guessability score a chosen password must reach (2: "somewhat guessable",
# about 10^8 guesses; 0–1 are dictionary words, keyboard walks, the username with digits).
MIN_PASSWORD_SCORE = 2
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


def check_password_strength(password: str, *, username: str, other_inputs: tuple[str, ...] = ()) -> None:
    """Refuse a password equal to the username or that zxcvbn finds easy to guess (common
    passwords, the username or the user's name with a few digits)."""
    password = password or ""
    if password.strip().lower() == (username or "").strip().lower():
        raise AccountError(_l("密码不能与用户名相同。"), "password")
    inputs = [x for x in (username, *other_inputs) if x]
    if zxcvbn(password[:100], user_inputs=inputs)["score"] < MIN_PASSWORD_SCORE:
        raise AccountError(_l("密码太常见或太容易猜到，请换一个更长、更少见的密码。"), "password")


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
    """A merchant owner without a merchant yet: enrolment comes next. The password must not be
    the username nor easy to guess."""
    username = _check_new_credentials(username, password)
    check_password_strength(password, username=username, other_inputs=((display_name or "").strip(),))
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


def end_sessions(session: Session, user_id: int) -> User:
    """Log a user out everywhere: every session and remember cookie issued so far is refused
    (deactivation and a new password do this by themselves, see ``User``)."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(_l("用户不存在。"))
    user.end_sessions()
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    user = find_user(session, username or "")
    if user is None:
        check_password_hash(_dummy_hash(), password or "")
        return None
    if not user.active or not check_password_hash(user.password_hash, password or ""):
        return None
    return user


# Counts one attempt on every key at once; the window starts with a key's first attempt.
_COUNT_ATTEMPT = """
local counts = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('EXPIRE', key, ARGV[1]) end
  counts[i] = n
end
return counts
"""
# A successful login: the username+IP pair starts over; the attempt is taken back from the
# username and IP counters (which count failures), without creating an expired key again.
_REFUND_ATTEMPT = """
redis.call('DEL', KEYS[1])
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 and tonumber(redis.call('GET', KEYS[i])) > 0 then
    redis.call('DECR', KEYS[i])
  end
end
return 1
"""


class LoginThrottle:
    """Login attempts counted in Redis before the password is checked, so parallel guesses
    cannot overtake the count: ``attempt`` adds one to the username+IP pair, the username
    (from any IP) and the IP (for any username) in one atomic script and says whether any is
    over its limit; ``succeeded`` takes a good login back. Each counter's window starts with
    its first attempt and lasts ``window`` seconds."""

    def __init__(self, redis, limit: int = 5, window: int = 15 * 60, *, user_limit: int = 20, ip_limit: int = 50) -> None:
        self.redis, self.limit, self.window = redis, limit, window
        self.user_limit, self.ip_limit = user_limit, ip_limit

    @staticmethod
    def _digest(*parts: str) -> str:
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]

    def _keys(self, username: str, ip: str) -> list[str]:
        name = (username or "").strip().lower()
        return [
            f"linli:login:fail:{self._digest(name, ip)}",
            f"linli:login:user:{self._digest(name)}",
            f"linli:login:ip:{self._digest(ip)}",
        ]

    def attempt(self, username: str, ip: str) -> bool:
        """Count this attempt; True when it may go on to the password check."""
        pair, user, addr = self.redis.eval(_COUNT_ATTEMPT, 3, *self._keys(username, ip), self.window)
        return pair <= self.limit and user <= self.user_limit and addr <= self.ip_limit

    def succeeded(self, username: str, ip: str) -> None:
        self.redis.eval(_REFUND_ATTEMPT, 3, *self._keys(username, ip))

    def reset(self, username: str, ip: str) -> None:
        self.redis.delete(*self._keys(username, ip))
