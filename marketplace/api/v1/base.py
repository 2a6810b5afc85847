"""The API's plumbing: the blueprint, the OpenAPI generator, who is calling, errors."""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Blueprint, Response, current_app, g, request
from flask_babel import lazy_gettext as _l
from limits import parse as parse_limit
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter
from spectree import SecurityScheme, SpecTree
from spectree.models import SecureType, SecuritySchemeData
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from accounts import csrf
from core import errors
from core.db import db
from core.txn import transaction
from integrations.services import idempotency, keys
from marketplace.api.v1.problems import MEDIA_TYPE, for_domain_error, problem
from merchants.models import Store

bp = Blueprint("api_v1", __name__, url_prefix="/api/v1")
csrf.exempt(bp)  # callers authenticate with a bearer key, not a cookie: there is no CSRF to stop

REFERENCE_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Linli API v1</title></head>
<body style="margin:0"><redoc spec-url="/api/v1/openapi.json"></redoc>
<script src="/static/vendor/redoc/redoc.standalone.js"></script></body></html>"""


class RequestInvalid(errors.Invalid):
    """The request does not match its declared shape (spectree's validation)."""

    def __init__(self, problems: list[dict]) -> None:
        super().__init__("")
        self.problems = problems


def _before(req, resp, req_validation_error, instance, adapter=None):
    if req_validation_error is not None:
        raise RequestInvalid(adapter.validation_errors(req_validation_error) if adapter else [])


spec = SpecTree(
    "flask",
    title="Linli API",
    version="1",
    path="api/v1/docs",
    filename="openapi.json",
    mode="strict",
    page_templates={"reference": REFERENCE_PAGE},
    security_schemes=[SecurityScheme(name="bearer", data=SecuritySchemeData(
        type=SecureType.HTTP, scheme="bearer", bearer_format="lk_<prefix>_<secret>",
        description="An API key from the portal or `linli api-key create`"))],
    security={"bearer": []},
    before=_before,
    validation_error_status=422,
    annotations=True,
    naming_strategy=lambda model: model.__name__,
    validation_error_model=None,
)

IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key", "in": "header", "required": True,
    "description": "One key per intended effect: a retry with the same key replays the first "
                   "response (kept 48 h); the same key with other parameters is a 422.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


def document() -> dict:
    """spectree's OpenAPI 3.1 document, told two things its declarations cannot say: errors
    are ``application/problem+json`` and every mutation takes an Idempotency-Key."""
    doc = json.loads(json.dumps(spec.spec))
    for path in doc.get("paths", {}).values():
        for method, operation in path.items():
            if method == "post":
                operation.setdefault("parameters", []).append(IDEMPOTENCY_HEADER)
            for status, answer in operation.get("responses", {}).items():
                if status.isdigit() and int(status) >= 400 and "application/json" in answer.get("content", {}):
                    answer["content"] = {MEDIA_TYPE: answer["content"]["application/json"]}
    return doc


@dataclass(frozen=True)
class Caller:
    """The key a request came with, as plain values (no ORM object outlives the lookup)."""

    key_id: int
    merchant_id: int | None
    store_id: int | None
    manager_id: int | None


def caller() -> Caller:
    return g.api_caller


@bp.before_request
def _authenticate():
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return _unauthorized()
    with transaction(db.session) as session:
        key = keys.authenticate(session, token.strip())
        if key is None:
            return _unauthorized()
        g.api_caller = Caller(key.id, key.merchant_id, key.store_id, key.manager_id)
    return _throttled(g.api_caller.key_id)


def init_limiter(app) -> None:
    """A fixed-window counter per key on the app's own Redis (``limits``)."""
    storage = RedisStorage("redis://", connection_pool=app.extensions["redis"].connection_pool,
                           key_prefix="linli-api")
    app.extensions["api_limiter"] = (FixedWindowRateLimiter(storage), parse_limit(app.config["API_RATE_LIMIT"]))


def _throttled(key_id: int) -> Response | None:
    limiter, rate = current_app.extensions["api_limiter"]
    if limiter.hit(rate, str(key_id)):
        return None
    reset = limiter.get_window_stats(rate, str(key_id)).reset_time
    resp = problem("too-many-requests", retry_after=max(1, math.ceil(reset - time.time())))
    resp.headers["Retry-After"] = str(max(1, math.ceil(reset - time.time())))
    return resp


def _unauthorized() -> Response:
    resp = problem("unauthorized")
    resp.headers["WWW-Authenticate"] = 'Bearer realm="linli"'
    return resp


@bp.errorhandler(errors.DomainError)
def _domain_error(exc: errors.DomainError):
    if isinstance(exc, RequestInvalid):
        return problem("validation", errors=exc.problems)
    return for_domain_error(exc)


def json_response(body, status: int = 200) -> Response:
    return _answer(json.dumps(body, ensure_ascii=False, default=str), status)


def _answer(text: str, status: int) -> Response:
    """A JSON body as sent: a problem document's media type for an error."""
    return Response(text, status=status, mimetype=MEDIA_TYPE if status >= 400 else "application/json")


def _replay(kept: idempotency.Stored) -> Response:
    resp = _answer(kept.body, kept.status)
    resp.headers["Idempotent-Replayed"] = "true"
    return resp


def mutate(action: Callable[[Session], tuple[int, dict]]) -> Response:
    """Run ``action`` (returning status and body) once per Idempotency-Key.

    The record is inserted first, in the action's own transaction, so the effect and the
    stored answer commit together; a request that finds the key taken (the insert fails,
    after waiting on the holder's lock) replays what the holder stored. A domain refusal
    rolls the effect back and is stored on its own, so a retry gets the same refusal."""
    who = caller()
    key = idempotency.check_key(request.headers.get("Idempotency-Key"))
    fingerprint = idempotency.fingerprint(request.method, request.path, request.get_data())
    try:
        try:
            with transaction(db.session) as session:
                record = idempotency.claim(session, who.key_id, key, fingerprint)
                status, body = action(session)
                record.status, record.body = status, json.dumps(body, ensure_ascii=False, default=str)
                text = record.body
        except errors.DomainError as exc:  # rolled back: keep the refusal alone
            refused = _domain_error(exc)
            status, text = refused.status_code, refused.get_data(as_text=True)
            with transaction(db.session) as session:
                idempotency.claim(session, who.key_id, key, fingerprint, status=status, body=text)
    except IntegrityError:
        with transaction(db.session) as session:
            kept = idempotency.stored(session, who.key_id, key, fingerprint)
        if kept is None:
            raise  # not the key's lock: a real integrity problem
        return _replay(kept)
    return _answer(text, status)


def page_of(session: Session, stmt, id_column, page) -> tuple[list, bool]:
    """Cursor pagination (Stripe's): ids ascending after ``starting_after``, one row more than
    ``limit`` read to answer ``has_more``."""
    if page.starting_after is not None:
        stmt = stmt.where(id_column > page.starting_after)
    rows = list(session.scalars(stmt.order_by(id_column).limit(page.limit + 1)))
    return rows[:page.limit], len(rows) > page.limit


def merchant_caller() -> Caller:
    """The caller, if its key is a merchant's (or a store's); a manager key may not act on stores."""
    who = caller()
    if who.merchant_id is None:
        raise errors.Forbidden(_l("区域经理的密钥只能读取统计数据"))
    return who


def manager_caller() -> Caller:
    """The caller, if its key is a manager's; a merchant's or a store's key may not read the regions' statistics."""
    who = caller()
    if who.manager_id is None:
        raise errors.Forbidden(_l("只有区域经理的密钥能读取统计数据"))
    return who


def visible_stores(who: Caller):
    """``select(Store)`` limited to the key: its merchant's stores, or its one store."""
    stmt = select(Store).where(Store.merchant_id == who.merchant_id)
    if who.store_id is not None:
        stmt = stmt.where(Store.id == who.store_id)
    return stmt


def store_for(session: Session, who: Caller, store_id: int | None) -> Store:
    """The tenant lookup for a key: the store by id *and* key; a store key may leave the id
    out. Another merchant's store is not found."""
    if store_id is None:
        if who.store_id is None:
            raise errors.Invalid(_l("请指定门店 store_id"), field="store_id")
        store_id = who.store_id
    store = session.scalar(visible_stores(who).where(Store.id == store_id))
    if store is None:
        raise errors.NotFound(_l("没有这家门店"))
    return store
