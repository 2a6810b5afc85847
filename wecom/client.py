"""WeCom (企业微信) server API client: one httpx client, one class per API area.

All WeCom URLs are built here and nowhere else. The access token is cached in a store shared
by every process (Redis in production), fetched under a lock so only one process calls
``gettoken`` (WeCom rate-limits it). Retry policy lives in one method, ``WeComClient._request``:

- ``40014``/``42001`` (token invalid/expired): drop the cached token, fetch anew, retry once;
- ``-1``, ``45009``, ``45033``, HTTP 5xx/429, timeouts and transport errors: up to
  ``max_retries`` retries with capped exponential backoff and jitter above a floor (half
  the step: the first retry after ``45009``/``45033`` waits 0.25–0.5 s, never 35 ms);
- anything else raises :class:`WeComError` straight away.
"""
from __future__ import annotations

import hashlib
import json as jsonlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx

from wecom import redact
from wecom.defaults import REAL_API_BASE

log = logging.getLogger(__name__)

T = TypeVar("T")

TOKEN_ERRORS = frozenset({40014, 42001})
RETRYABLE_ERRORS = frozenset({-1, 45009, 45033})
#: errcode used for failures that never reached a WeCom answer (HTTP status, transport, bad
#: JSON); it is WeCom's own "system busy" code, so callers treat both as "try again later".
LOCAL_ERRCODE = -1
#: Calls that create something WeCom cannot de-duplicate: after a request may have reached
#: WeCom (read timeout, dropped connection, a gateway's 5xx, errcode -1) a retry could create
#: a second mass-message task, so those failures are raised for the caller to settle (the
#: campaign dispatcher looks for the task first). Connection failures, 45009 and 45033 (refused
#: before any work) are still retried.
NOT_REPEATABLE = frozenset({"externalcontact/add_msg_template"})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0

MSG_TEMPLATE_BATCH = 10_000  # add_msg_template: external_userid per call
TRANSFER_BATCH = 100  # transfer_customer / resigned transfer: external_userid per call
BY_USER_BATCH = 100  # batch/get_by_user: userid_list per call

_HINTS: dict[int, tuple[str, str]] = {
    -1: ("企业微信系统繁忙或网络故障，请稍后再试。", "WeCom is busy or unreachable; try again later."),
    40001: (
        "Secret 不正确：请在企业微信管理后台核对“客户联系”应用的 Secret（重置后需更新配置）。",
        "Wrong secret: check the customer-contact app's secret in the WeCom admin console "
        "(update it after a reset).",
    ),
    40003: ("成员账号不存在或不在应用可见范围内。", "Unknown member userid, or not visible to the app."),
    60111: ("成员账号不存在。", "No member with this userid."),
    40013: ("企业 ID（CorpID）不正确。", "Wrong CorpID."),
    40068: ("标签不存在或已被删除。", "The tag or tag group does not exist."),
    40096: ("客户 ID 无效（可能不属于本企业）。", "Invalid external_userid (not this corp's customer)."),
    40098: (
        "该成员尚未实名认证，认证后才能使用“联系我”。",
        "The member has not completed real-name verification.",
    ),
    41054: (
        "该成员尚未激活企业微信，请提醒其登录企业微信。",
        "The member has not activated WeCom yet; ask them to log in once.",
    ),
    41050: ("欢迎语发送窗口已过（20 秒）。", "The welcome-message window (20 s) has passed."),
    41051: ("该客户已开始聊天，无法再发欢迎语。", "The customer already started chatting."),
    45009: ("调用太频繁，已被企业微信限流，请稍后再试。", "WeCom rate limit reached; try again later."),
    45033: ("并发调用过多，请稍后再试。", "Too many concurrent calls; try again later."),
    48002: (
        "应用没有客户联系接口权限：请在“客户联系 → 可调用接口的应用”中添加本应用。",
        "The app may not call customer-contact APIs: add it under 客户联系 → 可调用接口的应用.",
    ),
    60020: (
        "服务器 IP 不在企业可信 IP 列表中：请在企业微信管理后台把本服务器的出口 IP 加入“企业可信IP”。",
        "This server's IP is not in the app's trusted IP list: add it in the WeCom admin console.",
    ),
    84074: (
        "该成员没有客户联系权限：请在企业微信管理后台“客户联系 → 权限配置”把他加入使用范围。",
        "The member may not hold customers: add them to the customer-contact usage range in the "
        "WeCom admin console.",
    ),
    84061: (
        "该客户不是此成员的联系人（可能已被删除）。",
        "The customer is not (or no longer) an external contact of this member.",
    ),
    41048: ("没有可发送的客户。", "No customers can receive this mass message."),
    41094: ("提醒次数已达上限（每 24 小时 3 次）。", "Reminder limit reached (3 per 24 h)."),
}


class WeComError(Exception):
    """A WeCom call that did not succeed: the server's errcode/errmsg and the API path."""

    def __init__(self, errcode: int, errmsg: str, path: str) -> None:
        super().__init__(errcode, errmsg, path)
        self.errcode = int(errcode)
        self.errmsg = errmsg
        self.path = path

    def __str__(self) -> str:
        return f"WeCom {self.path}: errcode {self.errcode}: {self.errmsg}"

    @property
    def retryable(self) -> bool:
        return self.errcode in RETRYABLE_ERRORS

    def hint(self, lang: str = "zh") -> str | None:
        """Plain words for operators (``zh`` or ``en``); None for codes without a hint."""
        return hint_for(self.errcode, lang)


def hint_for(errcode: int, lang: str = "zh") -> str | None:
    pair = _HINTS.get(errcode)
    if pair is None:
        return None
    return pair[1] if lang.startswith("en") else pair[0]


def chunked(seq: Sequence[T] | Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most ``size`` items."""
    if size < 1:
        raise ValueError("size must be positive")
    batch: list[T] = []
    for item in seq:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _clean(value: Any) -> Any:
    """Drop None-valued fields (recursively) so optional fields are simply absent."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _text(text: str | dict | None) -> dict | None:
    if text is None or isinstance(text, dict):
        return text
    return {"content": text}


def _token_ttl(expires_in: int) -> int:
    """Cache a little shorter than WeCom says: 10% early, at most 5 minutes early."""
    expires_in = int(expires_in)
    margin = min(300, max(1, expires_in // 10))
    return max(1, expires_in - margin)


redact.install()


# --------------------------------------------------------------------------- token stores


class MemoryTokenStore:
    """In-process token cache (one process only: scripts and tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def get(self) -> str | None:
        if self._token and self._clock() < self._expires_at:
            return self._token
        return None

    def set(self, token: str, expires_in: int) -> None:
        self._token, self._expires_at = token, self._clock() + _token_ttl(expires_in)

    def invalidate(self, token: str | None = None) -> None:
        if token is None or token == self._token:
            self._token = None

    @contextmanager
    def lock(self) -> Iterator[bool]:
        with self._lock:
            yield True


class RedisTokenStore:
    """Token cache in Redis, shared by every web and worker process.

    The key holds the corp id and a hash of the secret (so a rotated secret never reuses an
    old token, and the secret itself never lands in Redis). ``lock()`` is a Redis lock so only
    one process fetches a token while the others wait and re-read the cache.
    """

    _DELETE_IF_EQUAL = (
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
    )

    def __init__(
        self,
        redis,
        corp_id: str,
        secret: str,
        *,
        prefix: str = "wecom:token",
        lock_timeout: float = 60.0,
        wait_timeout: float = 60.0,
    ) -> None:
        digest = hashlib.sha256(secret.encode()).hexdigest()[:16]
        self.redis = redis
        self.key = f"{prefix}:{corp_id}:{digest}"
        self.lock_key = f"{self.key}:lock"
        self.lock_timeout = lock_timeout
        self.wait_timeout = wait_timeout

    def get(self) -> str | None:
        value = self.redis.get(self.key)
        if isinstance(value, bytes):
            value = value.decode()
        return value or None

    def set(self, token: str, expires_in: int) -> None:
        self.redis.set(self.key, token, ex=_token_ttl(expires_in))

    def invalidate(self, token: str | None = None) -> None:
        """Drop the cached token; with ``token``, only if it is still that one (another process
        may already have stored a fresh token)."""
        if token is None:
            self.redis.delete(self.key)
        else:
            self.redis.eval(self._DELETE_IF_EQUAL, 1, self.key, token)

    @contextmanager
    def lock(self) -> Iterator[bool]:
        """Hold the fetch lock; yields False if it could not be had within ``wait_timeout``."""
        from redis.exceptions import LockError

        lock = self.redis.lock(self.lock_key, timeout=self.lock_timeout, blocking_timeout=self.wait_timeout)
        acquired = lock.acquire()
        try:
            yield bool(acquired)
        finally:
            if acquired:
                try:
                    lock.release()
                except LockError:  # expired while we fetched: nothing left to release
                    pass


# --------------------------------------------------------------------------- client


class WeComClient:
    """The WeCom API. Areas: ``users``, ``contact_way``, ``customers``, ``tags``, ``messages``,
    ``groups``, ``transfers``; low level ``get``/``post``."""

    def __init__(
        self,
        corp_id: str,
        secret: str,
        *,
        base_url: str = REAL_API_BASE,
        token_store=None,
        timeout: float = 5.0,
        max_retries: int = 4,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.corp_id = corp_id
        self._secret = secret
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.token_store = token_store if token_store is not None else MemoryTokenStore()
        self.max_retries = max_retries
        self._sleep = sleep
        self._jitter = jitter
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": "linli-wecom/1"},
        )
        self.users = Users(self)
        self.contact_way = ContactWay(self)
        self.customers = Customers(self)
        self.tags = Tags(self)
        self.messages = Messages(self)
        self.groups = Groups(self)
        self.transfers = Transfers(self)

    def __repr__(self) -> str:  # never show the secret
        return f"<WeComClient corp_id={self.corp_id!r} base_url={self.base_url!r}>"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> WeComClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- token

    def token(self) -> str:
        """The cached access token; fetched (by one process at a time) when missing."""
        token = self.token_store.get()
        if token:
            return token
        with self.token_store.lock():
            # Another process may have fetched while we waited for the lock. If the lock could
            # not be had in time, we still fetch once rather than fail the call.
            token = self.token_store.get()
            if token:
                return token
            data = self._request(
                "GET", "gettoken", params={"corpid": self.corp_id, "corpsecret": self._secret}, auth=False
            )
            token = data["access_token"]
            self.token_store.set(token, int(data.get("expires_in") or 7200))
            return token

    # -- low level

    def get(self, path: str, params: dict | None = None) -> dict:
        return self._request("GET", path, params=params)

    def post(self, path: str, json: dict | None = None) -> dict:
        return self._request("POST", path, json=json or {})

    def _backoff(self, attempt: int) -> float:
        """Equal jitter: uniform in [step/2, step], step = min(cap, base·2^attempt). The floor
        keeps a retry from hitting WeCom's rate limit again a few milliseconds later."""
        step = min(BACKOFF_CAP, BACKOFF_BASE * (2**attempt))
        return step / 2 + self._jitter() * step / 2

    def _request(
        self, method: str, path: str, *, params: dict | None = None, json: dict | None = None, auth: bool = True
    ) -> dict:
        path = path.lstrip("/")
        token_refreshed = False
        attempt = 0
        while True:
            token = self.token() if auth else None
            try:
                data = self._send_once(method, path, params, json, token)
            except _NoAnswer as failure:  # HTTP error, timeout, transport error, bad JSON
                error, retry = failure.error, failure.retry
            else:
                errcode = int(data.get("errcode") or 0)
                if errcode == 0:
                    return data
                error = WeComError(errcode, str(data.get("errmsg", "")), path)
                if auth and errcode in TOKEN_ERRORS and not token_refreshed:
                    token_refreshed = True
                    self.token_store.invalidate(token)
                    continue
                # a refusal before any work (rate, concurrency) may be repeated; -1 ("busy")
                # may come after a task was created, so a NOT_REPEATABLE call raises it
                retry = errcode in RETRYABLE_ERRORS and (path not in NOT_REPEATABLE or errcode != LOCAL_ERRCODE)
            if not retry or attempt >= self.max_retries:
                raise error from error.__cause__
            delay = self._backoff(attempt)
            attempt += 1
            log.info("wecom %s: errcode %s, retry %d/%d in %.2fs", path, error.errcode, attempt, self.max_retries, delay)
            self._sleep(delay)

    def _send_once(self, method: str, path: str, params: dict | None, json: dict | None, token: str | None) -> dict:
        query = dict(_clean(params or {}))
        if token is not None:
            query["access_token"] = token
        kwargs: dict[str, Any] = {"params": query}
        if json is not None:
            kwargs["content"] = jsonlib.dumps(_clean(json), ensure_ascii=False).encode("utf-8")
            kwargs["headers"] = {"Content-Type": "application/json; charset=utf-8"}
        started = time.monotonic()
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:  # timeouts and transport errors (messages carry no URL)
            log.debug("wecom %s %s failed: %s (%.0f ms)", method, path, type(exc).__name__, _ms(started))
            retry = path not in NOT_REPEATABLE or isinstance(exc, _NOT_SENT)
            message = f"{type(exc).__name__}: {exc}" + ("" if retry else " (outcome unknown, not retried)")
            raise _local_error(message, path, exc, retry=retry) from exc
        status = response.status_code
        if status >= 400:
            log.debug("wecom %s %s http %s (%.0f ms)", method, path, status, _ms(started))
            # a gateway's 5xx may hide a task WeCom created: not repeated for NOT_REPEATABLE
            retry = status == 429 or (status >= 500 and path not in NOT_REPEATABLE)
            raise _local_error(f"HTTP {status}", path, None, retry=retry)
        try:
            data = response.json()
        except ValueError as exc:
            raise _local_error(f"invalid JSON (HTTP {status})", path, exc, retry=path not in NOT_REPEATABLE) from exc
        if not isinstance(data, dict):
            raise _local_error(f"unexpected response (HTTP {status})", path, None, retry=False)
        log.debug("wecom %s %s errcode=%s (%.0f ms)", method, path, data.get("errcode", 0), _ms(started))
        return data


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


class _NoAnswer(Exception):
    """Internal: the call got no WeCom answer; carries the error to raise and whether to retry."""

    def __init__(self, error: WeComError, retry: bool) -> None:
        super().__init__(str(error))
        self.error, self.retry = error, retry


def _local_error(message: str, path: str, cause: BaseException | None, *, retry: bool) -> _NoAnswer:
    error = WeComError(LOCAL_ERRCODE, message, path)
    error.__cause__ = cause
    return _NoAnswer(error, retry)


# --------------------------------------------------------------------------- API areas


class _Area:
    def __init__(self, client: WeComClient) -> None:
        self._client = client

    def _get(self, path: str, **params: Any) -> dict:
        return self._client.get(path, params=params)

    def _post(self, path: str, **body: Any) -> dict:
        return self._client.post(path, body)


class Users(_Area):
    """Members (通讯录): the staff who own customer relationships."""

    def get(self, userid: str) -> dict:
        return self._get("user/get", userid=userid)

    def simplelist(self, department_id: int = 1, fetch_child: bool = True) -> list[dict]:
        data = self._get("user/simplelist", department_id=department_id, fetch_child=int(fetch_child))
        return data.get("userlist", [])

    def list_id(self, cursor: str | None = None, limit: int | None = None) -> dict:
        return self._post("user/list_id", cursor=cursor, limit=limit)


class ContactWay(_Area):
    """「联系我」 QR codes (our channel codes)."""

    def add(
        self,
        *,
        type: int,
        scene: int,
        user: Sequence[str] | None = None,
        party: Sequence[int] | None = None,
        state: str | None = None,
        remark: str | None = None,
        skip_verify: bool = True,
        style: int | None = None,
        is_temp: bool | None = None,
        expires_in: int | None = None,
        chat_expires_in: int | None = None,
        unionid: str | None = None,
        is_exclusive: bool | None = None,
        conclusions: dict | None = None,
    ) -> dict:
        return self._post(
            "externalcontact/add_contact_way",
            type=type,
            scene=scene,
            style=style,
            remark=remark,
            skip_verify=skip_verify,
            state=state,
            user=list(user) if user is not None else None,
            party=list(party) if party is not None else None,
            is_temp=is_temp,
            expires_in=expires_in,
            chat_expires_in=chat_expires_in,
            unionid=unionid,
            is_exclusive=is_exclusive,
            conclusions=conclusions,
        )

    def get(self, config_id: str) -> dict:
        return self._post("externalcontact/get_contact_way", config_id=config_id)["contact_way"]

    def update(self, config_id: str, **fields: Any) -> dict:
        return self._post("externalcontact/update_contact_way", config_id=config_id, **fields)

    def delete(self, config_id: str) -> dict:
        return self._post("externalcontact/del_contact_way", config_id=config_id)

    def list(
        self,
        start_time: int | None = None,
        end_time: int | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> dict:
        return self._post(
            "externalcontact/list_contact_way", start_time=start_time, end_time=end_time, cursor=cursor, limit=limit
        )


class Customers(_Area):
    """External contacts (客户)."""

    def get(self, external_userid: str, cursor: str | None = None) -> dict:
        return self._get("externalcontact/get", external_userid=external_userid, cursor=cursor)

    def list(self, userid: str) -> list[str]:
        return self._get("externalcontact/list", userid=userid).get("external_userid", [])

    def batch_get_by_user(self, userid_list: Sequence[str], cursor: str | None = None, limit: int = 100) -> dict:
        return self._post(
            "externalcontact/batch/get_by_user", userid_list=list(userid_list), cursor=cursor, limit=limit
        )

    def iter_by_user(self, userid_list: Iterable[str], limit: int = 100) -> Iterator[dict]:
        """Every ``external_contact_list`` item for these members (≤100 members per call),
        following ``next_cursor``."""
        for batch in chunked(list(userid_list), BY_USER_BATCH):
            cursor: str | None = None
            while True:
                data = self.batch_get_by_user(batch, cursor=cursor, limit=limit)
                yield from data.get("external_contact_list", [])
                cursor = data.get("next_cursor") or None
                if not cursor:
                    break

    def follow_user_list(self) -> list[str]:
        return self._get("externalcontact/get_follow_user_list").get("follow_user", [])


class Tags(_Area):
    """Corp customer tags (企业客户标签)."""

    def list(self, tag_id: Sequence[str] | None = None, group_id: Sequence[str] | None = None) -> list[dict]:
        data = self._post(
            "externalcontact/get_corp_tag_list",
            tag_id=list(tag_id) if tag_id else None,
            group_id=list(group_id) if group_id else None,
        )
        return data.get("tag_group", [])

    def add(
        self,
        *,
        tags: Sequence[str | dict],
        group_id: str | None = None,
        group_name: str | None = None,
        order: int | None = None,
    ) -> dict:
        tag = [{"name": t} if isinstance(t, str) else dict(t) for t in tags]
        data = self._post(
            "externalcontact/add_corp_tag", group_id=group_id, group_name=group_name, order=order, tag=tag
        )
        return data["tag_group"]

    def edit(self, id: str, name: str | None = None, order: int | None = None) -> dict:
        return self._post("externalcontact/edit_corp_tag", id=id, name=name, order=order)

    def delete(self, tag_id: Sequence[str] | None = None, group_id: Sequence[str] | None = None) -> dict:
        return self._post(
            "externalcontact/del_corp_tag",
            tag_id=list(tag_id) if tag_id else None,
            group_id=list(group_id) if group_id else None,
        )

    def mark(
        self, userid: str, external_userid: str, add_tag: Sequence[str] = (), remove_tag: Sequence[str] = ()
    ) -> dict:
        return self._post(
            "externalcontact/mark_tag",
            userid=userid,
            external_userid=external_userid,
            add_tag=list(add_tag) or None,
            remove_tag=list(remove_tag) or None,
        )


class Messages(_Area):
    """Welcome messages and mass messages (企业群发). ``text`` may be a str or ``{content}``."""

    def send_welcome(self, welcome_code: str, text: str | dict | None = None, attachments: list[dict] | None = None) -> dict:
        return self._post(
            "externalcontact/send_welcome_msg", welcome_code=welcome_code, text=_text(text), attachments=attachments
        )

    def add_msg_template(
        self,
        *,
        chat_type: str = "single",
        external_userid: Sequence[str] | None = None,
        chat_id_list: Sequence[str] | None = None,
        sender: str | None = None,
        tag_filter: dict | None = None,
        allow_select: bool | None = None,
        text: str | dict | None = None,
        attachments: list[dict] | None = None,
    ) -> dict:
        if external_userid is not None and len(external_userid) > MSG_TEMPLATE_BATCH:
            raise ValueError(f"at most {MSG_TEMPLATE_BATCH} external_userid per call; use add_msg_template_batched")
        return self._post(
            "externalcontact/add_msg_template",
            chat_type=chat_type,
            external_userid=list(external_userid) if external_userid is not None else None,
            chat_id_list=list(chat_id_list) if chat_id_list is not None else None,
            sender=sender,
            tag_filter=tag_filter,
            allow_select=allow_select,
            text=_text(text),
            attachments=attachments,
        )

    def add_msg_template_batched(self, external_userids: Sequence[str], **kw: Any) -> list[dict]:
        """One task per ≤10,000 customers; the responses (``msgid``, ``fail_list``) in order."""
        return [
            self.add_msg_template(external_userid=batch, **kw)
            for batch in chunked(list(external_userids), MSG_TEMPLATE_BATCH)
        ]

    def list_v2(self, **kw: Any) -> dict:
        return self._post("externalcontact/get_groupmsg_list_v2", **kw)

    def task(self, msgid: str, cursor: str | None = None, limit: int | None = None) -> dict:
        return self._post("externalcontact/get_groupmsg_task", msgid=msgid, cursor=cursor, limit=limit)

    def send_result(self, msgid: str, userid: str, cursor: str | None = None, limit: int | None = None) -> dict:
        return self._post(
            "externalcontact/get_groupmsg_send_result", msgid=msgid, userid=userid, cursor=cursor, limit=limit
        )

    def remind(self, msgid: str) -> dict:
        return self._post("externalcontact/remind_groupmsg_send", msgid=msgid)

    def cancel(self, msgid: str, userid_list: Sequence[str] | None = None) -> dict:
        return self._post(
            "externalcontact/cancel_groupmsg_send",
            msgid=msgid,
            userid_list=list(userid_list) if userid_list is not None else None,
        )


class Groups(_Area):
    """Customer groups (客户群)."""

    def list(
        self,
        status_filter: int = 0,
        owner_userids: Sequence[str] | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> dict:
        owner_filter = {"userid_list": list(owner_userids)} if owner_userids else None
        return self._post(
            "externalcontact/groupchat/list",
            status_filter=status_filter,
            owner_filter=owner_filter,
            cursor=cursor,
            limit=limit,
        )

    def iter_chats(
        self, status_filter: int = 0, owner_userids: Sequence[str] | None = None, limit: int = 100
    ) -> Iterator[dict]:
        """Every ``group_chat_list`` item (``{chat_id, status}``), following ``next_cursor``."""
        cursor: str | None = None
        while True:
            data = self.list(status_filter=status_filter, owner_userids=owner_userids, cursor=cursor, limit=limit)
            yield from data.get("group_chat_list", [])
            cursor = data.get("next_cursor") or None
            if not cursor:
                return

    def get(self, chat_id: str, need_name: bool = True) -> dict:
        return self._post("externalcontact/groupchat/get", chat_id=chat_id, need_name=int(need_name))["group_chat"]

    def transfer(self, chat_id_list: Sequence[str], new_owner: str) -> dict:
        return self._post("externalcontact/groupchat/transfer", chat_id_list=list(chat_id_list), new_owner=new_owner)

    def onjob_transfer(self, chat_id_list: Sequence[str], new_owner: str) -> dict:
        return self._post(
            "externalcontact/groupchat/onjob_transfer", chat_id_list=list(chat_id_list), new_owner=new_owner
        )


class Transfers(_Area):
    """Customer inheritance when staff move (在职继承) or leave (离职继承)."""

    def transfer_customer(
        self,
        handover_userid: str,
        takeover_userid: str,
        external_userid: Sequence[str],
        transfer_success_msg: str | None = None,
    ) -> dict:
        return self._post(
            "externalcontact/transfer_customer",
            handover_userid=handover_userid,
            takeover_userid=takeover_userid,
            external_userid=list(external_userid),
            transfer_success_msg=transfer_success_msg,
        )

    def transfer_customer_batched(
        self,
        handover_userid: str,
        takeover_userid: str,
        external_userids: Sequence[str],
        transfer_success_msg: str | None = None,
    ) -> list[dict]:
        """One call per ≤100 customers; the responses (each with ``customer``) in order."""
        return [
            self.transfer_customer(handover_userid, takeover_userid, batch, transfer_success_msg)
            for batch in chunked(list(external_userids), TRANSFER_BATCH)
        ]

    def transfer_result(self, handover_userid: str, takeover_userid: str, cursor: str | None = None) -> dict:
        return self._post(
            "externalcontact/transfer_result",
            handover_userid=handover_userid,
            takeover_userid=takeover_userid,
            cursor=cursor,
        )

    def resigned_transfer_customer(
        self, handover_userid: str, takeover_userid: str, external_userid: Sequence[str]
    ) -> dict:
        return self._post(
            "externalcontact/resigned/transfer_customer",
            handover_userid=handover_userid,
            takeover_userid=takeover_userid,
            external_userid=list(external_userid),
        )

    def resigned_transfer_customer_batched(
        self, handover_userid: str, takeover_userid: str, external_userids: Sequence[str]
    ) -> list[dict]:
        return [
            self.resigned_transfer_customer(handover_userid, takeover_userid, batch)
            for batch in chunked(list(external_userids), TRANSFER_BATCH)
        ]

    def resigned_transfer_result(self, handover_userid: str, takeover_userid: str, cursor: str | None = None) -> dict:
        return self._post(
            "externalcontact/resigned/transfer_result",
            handover_userid=handover_userid,
            takeover_userid=takeover_userid,
            cursor=cursor,
        )

    def unassigned_list(self, cursor: str | None = None, page_size: int | None = None) -> dict:
        return self._post("externalcontact/get_unassigned_list", cursor=cursor, page_size=page_size)

    def iter_unassigned(self, page_size: int = 1000) -> Iterator[dict]:
        """Every ``info`` item of the unassigned list, following ``next_cursor``."""
        cursor: str | None = None
        while True:
            data = self.unassigned_list(cursor=cursor, page_size=page_size)
            yield from data.get("info", [])
            cursor = data.get("next_cursor") or None
            if data.get("is_last") or not cursor:
                return
