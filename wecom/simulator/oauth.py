"""WeChat official-account web OAuth, as the simulated diners' WeChat does it.

- ``GET /connect/oauth2/authorize`` (open.weixin.qq.com): the phone view plays WeChat's
  browser. It knows who holds the phone from ``?as=<wechat user>`` or the ``sim_wechat_user``
  cookie that ``/phone/<user>/open`` sets when a link card is tapped, and redirects to
  ``redirect_uri?code=…&state=…`` (without either it asks who is reading).
- ``GET /sns/oauth2/access_token`` (api.weixin.qq.com): code → ``openid`` (per app),
  ``unionid`` (the same the customer API reports for that diner), tokens. Codes work once and
  live five minutes; errcodes as WeChat answers them (40029, 40163, 40013, 40125, …).

Codes live in memory: the simulator is one process and a code outlives no restart in WeChat
either. The credentials are the app's ``WECHAT_OA_APPID``/``WECHAT_OA_SECRET`` (demo defaults).
"""
from __future__ import annotations

import json
import os
import secrets
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Blueprint, Flask, Response, abort, current_app, redirect, render_template, request
from sqlalchemy import select

from wecom.defaults import DEMO_OA_APPID, DEMO_OA_SECRET
from wecom.simulator import ids
from wecom.simulator.models import WechatUser

bp = Blueprint("wecom_sim_oauth", __name__)

COOKIE = "sim_wechat_user"
SCOPES = ("snsapi_base", "snsapi_userinfo")
TOKEN_PATH = "sns/oauth2/access_token"

ERRMSG = {
    -1: "system error",
    40002: "invalid grant_type",
    40013: "invalid appid",
    40029: "invalid code",
    40125: "invalid appsecret",
    40163: "code been used",
    41002: "appid missing",
    41004: "appsecret missing",
    41008: "missing code",
}


@dataclass
class _Code:
    appid: str
    wechat_user: str
    scope: str
    created_at: float
    used: bool = False


class OAuthState:
    """The official account's credentials and the codes handed out (single use, ``ttl`` s)."""

    def __init__(self, appid: str, secret: str, ttl: float = 300.0) -> None:
        self.appid, self.secret, self.ttl = appid, secret, ttl
        self._codes: dict[str, _Code] = {}
        self._lock = threading.Lock()

    def issue(self, wechat_user: str, scope: str, now: float) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            for key in [k for k, c in self._codes.items() if now - c.created_at > 2 * self.ttl]:
                del self._codes[key]
            self._codes[code] = _Code(self.appid, wechat_user, scope, now)
        return code

    def redeem(self, code: str, appid: str, now: float) -> _Code:
        """The code's grant, consumed; raises ``_OAuthError`` 40029 / 40163 like WeChat."""
        with self._lock:
            grant = self._codes.get(code)
            if grant is None or grant.appid != appid or now - grant.created_at > self.ttl:
                raise _OAuthError(40029)
            if grant.used:
                raise _OAuthError(40163)
            grant.used = True
            return grant


class _OAuthError(Exception):
    def __init__(self, errcode: int) -> None:
        super().__init__(errcode)
        self.errcode = errcode


def init_app(app: Flask) -> None:
    config = app.config
    app.extensions["wecom_sim_oauth"] = OAuthState(
        appid=config.get("WECHAT_OA_APPID") or os.environ.get("WECHAT_OA_APPID") or DEMO_OA_APPID,
        secret=config.get("WECHAT_OA_SECRET") or os.environ.get("WECHAT_OA_SECRET") or DEMO_OA_SECRET,
        ttl=float(config.get("WECHAT_SIM_OAUTH_CODE_TTL", 300)),
    )
    app.register_blueprint(bp)


def _sim():
    return current_app.extensions["wecom_sim"]


def _state() -> OAuthState:
    return current_app.extensions["wecom_sim_oauth"]


def _json(payload: dict[str, Any]) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Response(body, content_type="application/json; encoding=utf-8")


def _error(errcode: int) -> Response:
    rid = f"{secrets.token_hex(4)}-{secrets.token_hex(4)}-{secrets.token_hex(4)}"
    return _json({"errcode": errcode, "errmsg": f"{ERRMSG.get(errcode, 'unknown error')}, rid: {rid}"})


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _page_error(code: int, message: str):
    """What WeChat's browser shows for a broken authorize link (an error page, not JSON)."""
    return render_template("sim/oauth_error.html", code=code, message=message), 400


@bp.get("/connect/oauth2/authorize")
def authorize():
    args = request.args
    state = _state()
    appid, redirect_uri, scope = args.get("appid", ""), args.get("redirect_uri", ""), args.get("scope", "")
    if not appid:
        return _page_error(10012, "appid不能为空")
    if appid != state.appid:
        return _page_error(40013, "appid无效")
    if not redirect_uri:
        return _page_error(10011, "redirect_uri不能为空")
    if urlsplit(redirect_uri).scheme not in ("http", "https"):
        return _page_error(10003, "redirect_uri参数错误")
    if not scope:
        return _page_error(10010, "scope不能为空")
    if scope not in SCOPES:
        return _page_error(10005, "此公众号并没有这些scope的权限")
    if args.get("response_type") != "code":
        return _page_error(10002, "response_type错误")
    who = args.get("as") or request.cookies.get(COOKIE, "")
    with _sim().reading() as session:
        user = session.get(WechatUser, who) if who else None
        if user is None:
            users = session.scalars(select(WechatUser).order_by(WechatUser.id)).all()
            base = {k: v for k, v in args.items() if k != "as"}
            return render_template("sim/oauth_pick.html", users=users,
                                   pick_url=lambda uid: f"{request.base_url}?{urlencode({**base, 'as': uid})}")
    code = state.issue(user.id, scope, _sim().now())
    response = redirect(_with_query(redirect_uri, code=code, state=args.get("state", "")))
    if args.get("as"):
        response.set_cookie(COOKIE, user.id, httponly=True, samesite="Lax")
    return response


@bp.get("/sns/oauth2/access_token")
def access_token():
    sim, state = _sim(), _state()
    fault = sim.faults.take(TOKEN_PATH)
    if fault and "errcode" in fault:
        return _error(fault["errcode"])
    args = request.args
    appid, secret, code = args.get("appid", ""), args.get("secret", ""), args.get("code", "")
    if not appid:
        return _error(41002)
    if appid != state.appid:
        return _error(40013)
    if not secret:
        return _error(41004)
    if not secrets.compare_digest(secret, state.secret):
        return _error(40125)
    if not code:
        return _error(41008)
    if args.get("grant_type") != "authorization_code":
        return _error(40002)
    try:
        grant = state.redeem(code, appid, sim.now())
    except _OAuthError as exc:
        return _error(exc.errcode)
    with sim.reading() as session:
        user = session.get(WechatUser, grant.wechat_user)
        if user is None:  # reset since the code was issued
            return _error(40029)
        unionid = user.unionid
    return _json({
        "access_token": ids.random_id("", 86),
        "expires_in": 7200,
        "refresh_token": ids.random_id("", 86),
        "openid": openid(appid, grant.wechat_user),
        "scope": grant.scope,
        "unionid": unionid,
    })


def openid(appid: str, wechat_user: str) -> str:
    """Stable per (official account, WeChat user), like WeChat's."""
    return ids.stable_id("o", 27, "openid", appid, wechat_user)


@bp.get("/phone/<wechat_user>/open")
def phone_open(wechat_user: str):
    """Tapping a link card: the phone's browser now belongs to ``wechat_user`` (cookie), so
    a page that asks WeChat who is reading gets this diner back."""
    url = request.args.get("url", "")
    if urlsplit(url).scheme not in ("http", "https"):
        abort(400)
    with _sim().reading() as session:
        if session.get(WechatUser, wechat_user) is None:
            abort(404)
    response = redirect(url)
    response.set_cookie(COOKIE, wechat_user, httponly=True, samesite="Lax")
    return response
