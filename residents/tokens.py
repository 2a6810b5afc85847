"""Signed tokens naming a resident, carried in a ``?t=`` argument of the diner pages.

Two kinds, one salt (both are ``{"r": resident_id, …}`` under the app's secret):

- a **coupon link** ``{"r", "c"}``: the welcome link card's URL. It opens *that coupon's* page
  (and its status poll) for 30 days and nothing else: a forwarded card shows the coupon, never
  the diner's list, taste or message settings. Links minted before coupon links named their
  coupon (``{"r"}`` alone) are read the same way, for the coupon in the URL they were sent
  with. Whether a link still works is decided when it is used: the resident must not be
  erased and must still hold the coupon, so erasing a resident revokes every link of theirs.
- a **sign-in** ``{"r", "n"}``: a single-use exchange for a diner session over ``/m/``,
  valid for 10 minutes; the nonce ``n`` is spent in Redis the first time (see
  ``identity.consume_link_token``). Minted only by the server for a diner it already knows
  (support tools, the demo, tests); WeChat OAuth is the everyday way in.

Mass messages are identical for every recipient and carry neither; pages opened from them
identify the diner through WeChat OAuth (see ``identity``).
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

SALT = "linli.resident-link"
DEFAULT_MAX_AGE = 30 * 86400  # a coupon link keeps working for a month
SIGN_IN_MAX_AGE = 600  # a sign-in token is spent within ten minutes, or never


@dataclass(frozen=True)
class Link:
    """A valid token's content. ``short_code`` is None for a sign-in (or a link from before
    links named their coupon: ``nonce`` tells the two apart)."""

    resident_id: int
    short_code: str | None = None
    nonce: str | None = None
    issued_at: int = 0

    @property
    def is_sign_in(self) -> bool:
        return self.nonce is not None


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def make_link_token(resident_id: int, short_code: str) -> str:
    """A welcome card's token: opens ``short_code``'s page for its holder, nothing else."""
    return _serializer().dumps({"r": resident_id, "c": short_code})


def make_sign_in_token(resident_id: int) -> str:
    """A single-use, ten-minute exchange for a diner session (``/m/…?t=<token>``)."""
    return _serializer().dumps({"r": resident_id, "n": secrets.token_hex(8)})


make_token = make_sign_in_token  # the name tests and tools know for "sign this diner in"


def load_link(token: str, max_age: int = DEFAULT_MAX_AGE) -> Link | None:
    """The token's content, or None for a forged, mangled or expired one (a sign-in expires
    after ``SIGN_IN_MAX_AGE``, a link after ``max_age``). Says nothing about whether the
    resident still exists or a sign-in was already spent."""
    try:
        data, issued = _serializer().loads(token or "", max_age=max_age, return_timestamp=True)
    except BadSignature:  # SignatureExpired is a BadSignature
        return None
    if not isinstance(data, dict):
        return None
    rid, code, nonce = data.get("r"), data.get("c"), data.get("n")
    if not isinstance(rid, int) or isinstance(rid, bool):
        return None
    if code is not None and (not isinstance(code, str) or not code):
        return None
    if nonce is not None and (not isinstance(nonce, str) or not nonce or code is not None):
        return None
    issued_at = int(issued.timestamp())
    if nonce is not None and time.time() - issued_at > SIGN_IN_MAX_AGE:
        return None
    return Link(rid, code, nonce, issued_at)


def load_token(token: str, max_age: int = DEFAULT_MAX_AGE) -> int | None:
    """The resident id a valid token names (either kind), or None."""
    link = load_link(token, max_age)
    return link.resident_id if link is not None else None


def coupon_url(short_code: str, resident_id: int) -> str:
    """Absolute URL of a coupon's mobile page, signed for its holder (works from a worker)."""
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    return f"{base}/m/c/{short_code}?t={make_link_token(resident_id, short_code)}"
