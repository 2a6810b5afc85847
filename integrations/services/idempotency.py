"""Idempotency records: Stripe's contract for the API's mutations.

The record is inserted in the transaction of the mutation it guards and its unique
(key, Idempotency-Key) is the lock: a concurrent request with the same key waits on the
index (PostgreSQL; SQLite has one writer anyway) and, once the first commits, fails its
insert and replays the stored response. If the first rolls back — a crash, a killed worker —
its record goes with it and the next attempt runs for real: nothing is half-done."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.errors import Invalid
from core.localtime import as_utc
from integrations.models import IDEMPOTENCY_KEY_MAX, IdempotencyRecord

KEEP_FOR = timedelta(hours=48)  # "at least 24 h": a day's margin


class KeyReused(Invalid):
    """The same Idempotency-Key came back with other parameters (422)."""


@dataclass(frozen=True)
class Stored:
    status: int
    body: str


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What "the same request" means: method, path and the JSON body's content (key order
    and spacing aside); a body that is not JSON by its bytes."""
    try:
        canonical = json.dumps(json.loads(body or b"null"), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    return hashlib.sha256(method.encode() + b"\n" + path.encode() + b"\n" + canonical).hexdigest()


def check_key(key: str | None) -> str:
    if not key or len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise Invalid(_l("每个修改请求都要带 Idempotency-Key 头（1–255 个可打印字符）"), field="Idempotency-Key")
    return key


def stored(session: Session, api_key_id: int, key: str, request_sha256: str) -> Stored | None:
    """The response kept for this key, or None; another request under the key is refused."""
    record = session.scalar(select(IdempotencyRecord).where(
        IdempotencyRecord.api_key_id == api_key_id, IdempotencyRecord.key == key))
    if record is None:
        return None
    if record.request_sha256 != request_sha256:
        raise KeyReused(_l("这个 Idempotency-Key 已用于另一个请求"), field="Idempotency-Key")
    return Stored(record.status, record.body)


def claim(session: Session, api_key_id: int, key: str, request_sha256: str, now: datetime | None = None,
          *, status: int = 0, body: str = "") -> IdempotencyRecord:
    """Insert the record (flushed: the lock is taken here). IntegrityError: someone holds it,
    or held it and stored its answer."""
    record = IdempotencyRecord(api_key_id=api_key_id, key=key, request_sha256=request_sha256,
                               created_at=as_utc(now), status=status, body=body)
    session.add(record)
    session.flush()
    return record


def sweep(session: Session, now: datetime | None = None) -> int:
    """Forget records older than ``KEEP_FOR``."""
    cutoff = as_utc(now) - KEEP_FOR
    return session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff)).rowcount or 0
