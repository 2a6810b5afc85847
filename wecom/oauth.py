"""WeChat official-account web OAuth (公众号网页授权), the silent ``snsapi_base`` flavour.

A page opened in WeChat's browser without knowing its reader sends the browser to
``authorize_url(...)``; WeChat comes back to ``redirect_uri?code=…&state=…`` and
``exchange_code(code)`` turns the code into the reader's ``openid`` (per official account)
and ``unionid`` (per WeChat open-platform account, the same id WeCom reports for a customer).

This is WeChat, not WeCom, but it is a platform client like ``wecom.client`` and likewise
knows nothing of our domain. Codes are single use and live five minutes, so an exchange is
never retried once the request may have reached WeChat.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx

from wecom import redact
from wecom.defaults import REAL_OA_API_BASE, REAL_OA_AUTHORIZE_URL

SCOPE_BASE = "snsapi_base"  # silent: no consent page, openid (+ unionid when bound)
SCOPE_USERINFO = "snsapi_userinfo"
STATE_MAX = 128  # WeChat: a-zA-Z0-9, at most 128 bytes
_STATE_RE = re.compile(r"^[A-Za-z0-9]{0,128}$")

# errcodes of sns/oauth2/access_token worth naming
INVALID_CODE = 40029  # unknown or expired code
CODE_USED = 40163  # the code was already exchanged
INVALID_SECRET = 40125
INVALID_APPID = 40013
BUSY = -1
LOCAL_ERRCODE = -1  # the request never got a WeChat answer (transport, HTTP status, bad JSON)

# Only failures where the request surely did not reach WeChat are retried: a code works once.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)



class WeChatOAuthError(Exception):
    """WeChat refused the exchange (``errcode``/``errmsg`` as it answered) or was unreachable."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errcode, errmsg)
        self.errcode = int(errcode)
        self.errmsg = errmsg

    def __str__(self) -> str:
        return f"WeChat OAuth: errcode {self.errcode}: {self.errmsg}"

    @property
    def bad_code(self) -> bool:
        """The diner's code is spent or stale: send them through authorize again."""
        return self.errcode in (INVALID_CODE, CODE_USED)


@dataclass(frozen=True)
class OAuthIdentity:
    openid: str
    unionid: str | None  # only when the official account is bound to an open-platform account
    scope: str
    access_token: str
    expires_in: int
    refresh_token: str


redact.install()


class WeChatOAuth:
    """One official account's web OAuth. ``api_base``/``authorize_url`` move it to a stand-in
    (the simulator) without touching the code paths."""

    def __init__(
        self,
        appid: str,
        secret: str,
        *,
        api_base: str = REAL_OA_API_BASE,
        authorize_url: str = REAL_OA_AUTHORIZE_URL,
        timeout: float = 5.0,
        max_retries: int = 2,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.appid = appid
        self._secret = secret
        self.api_base = api_base if api_base.endswith("/") else api_base + "/"
        self.authorize_endpoint = authorize_url
        self.max_retries = max_retries
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.api_base, timeout=timeout, transport=transport, headers={"User-Agent": "linli-wechat/1"}
        )

    def __repr__(self) -> str:  # never show the secret
        return f"<WeChatOAuth appid={self.appid!r} api_base={self.api_base!r}>"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> WeChatOAuth:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def authorize_url(self, redirect_uri: str, state: str = "", scope: str = SCOPE_BASE) -> str:
        """Where to send the browser. ``state`` is echoed back untouched: WeChat accepts only
        ``[A-Za-z0-9]`` up to 128 bytes. ``#wechat_redirect`` is required for a 302."""
        if not _STATE_RE.match(state):
            raise ValueError("state must be [A-Za-z0-9], at most 128 characters")
        if scope not in (SCOPE_BASE, SCOPE_USERINFO):
            raise ValueError(f"unknown scope {scope!r}")
        query = urlencode(
            {"appid": self.appid, "redirect_uri": redirect_uri, "response_type": "code", "scope": scope,
             "state": state}
        )
        return f"{self.authorize_endpoint}?{query}#wechat_redirect"

    def exchange_code(self, code: str) -> OAuthIdentity:
        """``sns/oauth2/access_token``: the code from the redirect → who the reader is."""
        if not code:
            raise WeChatOAuthError(41008, "missing code")
        params = {"appid": self.appid, "secret": self._secret, "code": code, "grant_type": "authorization_code"}
        data = self._get("sns/oauth2/access_token", params)
        try:
            return OAuthIdentity(
                openid=data["openid"],
                unionid=data.get("unionid") or None,
                scope=data.get("scope", ""),
                access_token=data.get("access_token", ""),
                expires_in=int(data.get("expires_in", 0)),
                refresh_token=data.get("refresh_token", ""),
            )
        except (KeyError, TypeError, ValueError):
            raise WeChatOAuthError(LOCAL_ERRCODE, f"unexpected answer: {str(data)[:200]}") from None

    def _get(self, path: str, params: dict) -> dict:
        attempt = 0
        while True:
            try:
                response = self._http.get(path, params=params)
            except _NOT_SENT as exc:
                if attempt < self.max_retries:
                    attempt += 1
                    self._sleep(0.2 * attempt)
                    continue
                raise WeChatOAuthError(LOCAL_ERRCODE, f"unreachable: {exc.__class__.__name__}") from exc
            except httpx.HTTPError as exc:  # may have reached WeChat: the code may be spent
                raise WeChatOAuthError(LOCAL_ERRCODE, f"transport error: {exc.__class__.__name__}") from exc
            if response.status_code != 200:
                raise WeChatOAuthError(LOCAL_ERRCODE, f"HTTP {response.status_code}")
            try:
                data = response.json()
            except ValueError:
                raise WeChatOAuthError(LOCAL_ERRCODE, "answer is not JSON") from None
            if not isinstance(data, dict):
                raise WeChatOAuthError(LOCAL_ERRCODE, "answer is not a JSON object")
            errcode = int(data.get("errcode") or 0)
            if errcode == BUSY and attempt < self.max_retries:
                # system busy: ask again; if the code was spent anyway WeChat answers 40163 and
                # the caller sends the diner through authorize once more
                attempt += 1
                self._sleep(0.2 * attempt)
                continue
            if errcode:
                raise WeChatOAuthError(errcode, str(data.get("errmsg", "")))
            return data
