"""Who is the diner on this request.

A diner *session* (``resident_id`` in the signed session cookie) covers every page under
``/m/``; it comes only from

- WeChat web OAuth, silent ``snsapi_base``. The ``state`` carries the return path, signed
  and bound to this browser, so the callback can neither be turned into an open redirect
  nor replayed into someone else's browser. The unionid WeChat returns is the one WeCom
  reported for the customer, which finds the resident;
- or a single-use sign-in token ``…?t=<token>`` (``tokens.make_sign_in_token``), spent in
  Redis the first time it is opened.

A welcome card's coupon link ``/m/c/<code>?t=<token>`` is no session: it opens that coupon's
page and its status poll, nothing else (a forwarded card must not hand over the diner's list,
taste or message settings). The browser keeps the link's token in the session cookie under
``coupon_links`` (a few of them, by code) and each use checks it again: signature, age, the
resident not erased, the coupon still theirs, so erasing a resident revokes their links.

Either token is dropped from the address bar by a redirect, so it never reaches a
screenshot or a forward of the page.

WeChat's ``state`` takes only ``[A-Za-z0-9]`` up to 128 bytes, hence the base62 packing.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
import time
from functools import wraps
from urllib.parse import urlencode, urlsplit

from flask import current_app, g, redirect, render_template, request, url_for
from flask import session as web_session
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import db
from core.extensions import get_redis
from coupons.services import normalize_code
from residents.models import Resident
from residents.tokens import SIGN_IN_MAX_AGE, load_link
from wecom.oauth import WeChatOAuth

SESSION_KEY = "resident_id"
NONCE_KEY = "oauth_nonce"
LINKS_KEY = "coupon_links"
MAX_LINKS = 5  # coupon links a browser remembers (a cookie is small)
SPENT_PREFIX = "linli:diner-sign-in:"
COUPON_ENDPOINTS = ("residents.coupon", "residents.coupon_status")
TOKEN_ARG = "t"
STATE_MAX_AGE = 600  # seconds from leaving for WeChat to coming back
_MAC_BYTES = 10
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_STATE_MAX = 128
HOME = "/m/"


# ---------------------------------------------------------------- the session


def current_resident_id() -> int | None:
    rid = web_session.get(SESSION_KEY)
    return rid if isinstance(rid, int) else None


def remember(resident_id: int) -> None:
    web_session[SESSION_KEY] = resident_id
    web_session.permanent = True  # a diner should not be asked again every visit


def forget() -> None:
    web_session.pop(SESSION_KEY, None)


def active_resident(session: Session, resident_id: int | None) -> Resident | None:
    """The resident if they still exist and were not erased (privacy erase ends every session)."""
    if resident_id is None:
        return None
    resident = session.get(Resident, resident_id)
    return resident if resident is not None and resident.erased_at is None else None


def resident_by_unionid(session: Session, unionid: str | None) -> Resident | None:
    if not unionid:
        return None
    return session.scalar(
        select(Resident)
        .where(Resident.unionid == unionid, Resident.erased_at.is_(None))
        .order_by(Resident.id)
        .limit(1)
    )


# ---------------------------------------------------------------- personal links


def clean_url() -> str:
    """This request's path and query without the token."""
    args = [(k, v) for k, v in request.args.items(multi=True) if k != TOKEN_ARG]
    return request.path + (f"?{urlencode(args)}" if args else "")


def _spend(nonce: str) -> bool:
    """True the first time a sign-in nonce is seen (SET NX outlives the token's age)."""
    return bool(get_redis().set(SPENT_PREFIX + nonce, b"1", nx=True, ex=SIGN_IN_MAX_AGE + 60))


def _url_code() -> str | None:
    if request.endpoint not in COUPON_ENDPOINTS or not request.view_args:
        return None
    return normalize_code(str(request.view_args.get("short_code", ""))) or None


def remember_link(short_code: str, token: str) -> None:
    links = web_session.get(LINKS_KEY)
    links = dict(links) if isinstance(links, dict) else {}
    links.pop(short_code, None)
    links[short_code] = token
    while len(links) > MAX_LINKS:
        links.pop(next(iter(links)))
    web_session[LINKS_KEY] = links


def link_holder(session: Session, short_code: str) -> Resident | None:
    """The resident whose coupon link for ``short_code`` this browser opened, if the link is
    still good (signed, not expired, made for this coupon, resident not erased). Whether they
    still hold the coupon is the caller's lookup ("by code and holder")."""
    code = normalize_code(short_code)
    links = web_session.get(LINKS_KEY)
    token = links.get(code) if isinstance(links, dict) else None
    link = load_link(token) if isinstance(token, str) else None
    if link is None or link.is_sign_in or (link.short_code is not None and link.short_code != code):
        return None
    return active_resident(session, link.resident_id)


def consume_link_token():
    """``before_request`` of the diner pages. A sign-in token, the first time, signs its
    resident in; a coupon link on its coupon's page is remembered for that coupon only; any
    token (valid, spent, forged, expired, or a link opened elsewhere) is then dropped from the
    URL by a redirect. A bad token only means we fall back to the session or to OAuth, like
    a link without one."""
    if TOKEN_ARG not in request.args:
        return None
    token = request.args.get(TOKEN_ARG, "")
    link = load_link(token)
    if link is None:
        current_app.logger.info("diner link with a bad or expired token on %s", request.path)
    elif link.is_sign_in:
        if active_resident(db.session, link.resident_id) is not None and _spend(link.nonce):
            remember(link.resident_id)
        else:
            current_app.logger.info("diner sign-in token spent or for nobody on %s", request.path)
    else:
        code = _url_code()
        if code is not None and link.short_code in (None, code):
            remember_link(code, token)
        else:
            current_app.logger.info("coupon link opened off its coupon on %s", request.path)
    return redirect(clean_url())


# ---------------------------------------------------------------- OAuth state


def _b62encode(raw: bytes) -> str:
    number = int.from_bytes(b"\x01" + raw, "big")  # the 0x01 keeps leading zero bytes
    out = ""
    while number:
        number, rem = divmod(number, 62)
        out = _B62[rem] + out
    return out


def _b62decode(text: str) -> bytes | None:
    number = 0
    for ch in text:
        index = _B62.find(ch)
        if index < 0:
            return None
        number = number * 62 + index
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return raw[1:] if raw[:1] == b"\x01" else None


def _mac(nonce: str, issued: int, path: bytes) -> bytes:
    key = current_app.config["SECRET_KEY"].encode()
    message = b"linli.oauth-state|" + nonce.encode() + b"|" + struct.pack(">I", issued) + b"|" + path
    return hmac.new(key, message, hashlib.sha256).digest()[:_MAC_BYTES]


def safe_return_path(path: str | None) -> str:
    """Only our own diner pages: a relative path under /m/ (no scheme, host or ``//``)."""
    if not path or not path.startswith(HOME) or path.startswith("//") or "\\" in path:
        return HOME
    parts = urlsplit(path)
    if parts.scheme or parts.netloc:
        return HOME
    return path


def make_state(return_path: str, nonce: str, now: float | None = None) -> str:
    """Pack (issued-at, MAC, path) into ≤ 128 base62 characters; a path too long for WeChat
    loses its query string, then falls back to the diner home."""
    issued = int(time.time() if now is None else now) & 0xFFFFFFFF
    candidates = (safe_return_path(return_path), safe_return_path(return_path).split("?", 1)[0], HOME)
    for path in candidates:
        raw_path = path.encode()
        state = _b62encode(struct.pack(">I", issued) + _mac(nonce, issued, raw_path) + raw_path)
        if len(state) <= _STATE_MAX:
            return state
    raise AssertionError("unreachable: HOME always fits")


def read_state(state: str, nonce: str | None, now: float | None = None) -> str | None:
    """The return path if ``state`` is ours, fresh and made for this browser; else None."""
    if not state or len(state) > _STATE_MAX or not nonce:
        return None
    raw = _b62decode(state)
    if raw is None or len(raw) < 4 + _MAC_BYTES:
        return None
    (issued,) = struct.unpack(">I", raw[:4])
    mac, raw_path = raw[4:4 + _MAC_BYTES], raw[4 + _MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(nonce, issued, raw_path)):
        return None
    age = int(time.time() if now is None else now) - issued
    if not 0 <= age <= STATE_MAX_AGE:
        return None
    try:
        path = raw_path.decode()
    except UnicodeDecodeError:
        return None
    return path if safe_return_path(path) == path else None


# ---------------------------------------------------------------- OAuth


def oauth_client() -> WeChatOAuth | None:
    """The official account's OAuth client, built on first use; None when not configured."""
    cfg = current_app.config
    if not (cfg.get("WECHAT_OA_APPID") and cfg.get("WECHAT_OA_SECRET")):
        return None
    client = current_app.extensions.get("wechat_oauth")
    if client is None:
        client = WeChatOAuth(
            cfg["WECHAT_OA_APPID"],
            cfg["WECHAT_OA_SECRET"],
            api_base=cfg["WECHAT_OA_API_BASE"],
            authorize_url=cfg["WECHAT_OA_AUTHORIZE_URL"],
            timeout=float(cfg.get("WECOM_HTTP_TIMEOUT", 5.0)),
        )
        current_app.extensions["wechat_oauth"] = client
    return client


def callback_url() -> str:
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    return base + url_for("residents.oauth_callback")


def nonce() -> str:
    value = web_session.get(NONCE_KEY)
    if not isinstance(value, str) or not value:
        value = secrets.token_hex(8)
        web_session[NONCE_KEY] = value
    return value


def ask_wechat(return_path: str):
    """Send the browser to WeChat to learn who it is (or say who we need when we can't)."""
    client = oauth_client()
    if client is None:
        return unknown_diner()
    state = make_state(return_path, nonce())
    return redirect(client.authorize_url(callback_url(), state=state))


def unknown_diner(status: int = 200):
    """The friendly dead end: we don't know this WeChat user yet."""
    return render_template("residents/unknown.html"), status


def require_resident(view):
    """Diner pages: ``g.resident`` is the signed-in diner, or the browser goes to WeChat."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        resident = active_resident(db.session, current_resident_id())
        if resident is None:
            forget()
            return ask_wechat(clean_url())
        g.resident = resident
        return view(*args, **kwargs)

    return wrapped
