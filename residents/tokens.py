"""Personal links: signed, expiring tokens naming a resident, carried in welcome link cards.

Mass messages are identical for every recipient and cannot carry these; pages opened from
them identify the diner through WeChat OAuth instead (see ``views``).
"""
from __future__ import annotations

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

SALT = "linli.resident-link"
DEFAULT_MAX_AGE = 30 * 86400  # a welcome link keeps working for a month


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def make_token(resident_id: int) -> str:
    return _serializer().dumps({"r": resident_id})


def load_token(token: str, max_age: int = DEFAULT_MAX_AGE) -> int | None:
    """The resident id, or None for a forged, mangled or expired token."""
    try:
        data = _serializer().loads(token, max_age=max_age)
    except BadSignature:  # SignatureExpired is a BadSignature
        return None
    rid = data.get("r") if isinstance(data, dict) else None
    return rid if isinstance(rid, int) else None


def coupon_url(short_code: str, resident_id: int) -> str:
    """Absolute URL of a coupon's mobile page, signed for its holder (works from a worker)."""
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    return f"{base}/m/c/{short_code}?t={make_token(resident_id)}"
