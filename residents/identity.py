"""Who is the diner on this request.

Two ways in, one result (``resident_id`` in the signed session cookie):

- a personal link ``…?t=<token>`` (welcome link cards): the token names the resident; we
  remember them and redirect to the clean URL, so the token leaves the address bar and
  never reaches a screenshot or a forward;
- anything else (mass messages are the same for every recipient, so they carry no token):
  WeChat web OAuth, silent ``snsapi_base``. The ``state`` carries the return path, signed
  and bound to this browser, so the callback can neither be turned into an open redirect
  nor replayed into someone else's browser. The unionid WeChat returns is the one WeCom
  reported for the customer, which finds the resident.

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
from residents.models import Resident
from residents.tokens import load_token
from wecom.oauth import WeChatOAuth

SESSION_KEY = "resident_id"
NONCE_KEY = "oauth_nonce"
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


def consume_link_token():
    """``before_request`` of the diner pages: a valid token signs its resident in; any token
    (valid, forged or expired) is then dropped from the URL by a redirect. A bad token only
    means we fall back to the session or to OAuth, like a link without one."""
    if TOKEN_ARG not in request.args:
        return None
    rid = load_token(request.args.get(TOKEN_ARG, ""))
    if rid is not None and active_resident(db.session, rid) is not None:
        remember(rid)
    elif rid is None:
        current_app.logger.info("diner link with a bad or expired token on %s", request.path)
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
