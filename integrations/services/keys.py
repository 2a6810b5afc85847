"""API keys: made with the secret shown once, found by their token, listed, revoked.

A token reads ``lk_<prefix>_<secret>``: the prefix finds the row (an index lookup), the
secret's SHA-256 is compared in constant time. ``last_used_at`` is written at most once a
minute per key, so a busy POS does not turn every read into a write."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from accounts.models import Role, User
from core.errors import Invalid, NotFound
from core.localtime import as_utc
from integrations.models import PREFIX_LENGTH, ApiKey
from merchants.models import Merchant, Store

TOKEN_PREFIX = "lk_"
TOUCH_EVERY = timedelta(minutes=1)
LABEL_MAX = 64


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    token: str  # shown once, never stored


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _clean_label(label: str | None) -> str:
    label = (label or "").strip()
    if len(label) > LABEL_MAX:
        raise Invalid(_l("名称最多 %(n)s 个字", n=LABEL_MAX), field="label")
    return label


def create_key(
    session: Session, *, merchant_id: int | None = None, store_id: int | None = None,
    manager_id: int | None = None, label: str = "", created_by_id: int | None = None,
) -> NewKey:
    """A merchant key (``store_id``: narrowed to that store of the merchant; the merchant is
    taken from the store when only the store is given) or a manager key."""
    label = _clean_label(label)
    if store_id is not None:
        store = session.get(Store, store_id)
        if store is None or (merchant_id is not None and store.merchant_id != merchant_id):
            raise NotFound(_l("没有这家门店"))
        merchant_id = store.merchant_id
    if (merchant_id is None) == (manager_id is None):
        raise Invalid(_l("密钥要么属于商户（或其门店），要么属于区域经理"))
    if merchant_id is not None and session.get(Merchant, merchant_id) is None:
        raise NotFound(_l("没有这个商户"))
    if manager_id is not None:
        manager = session.get(User, manager_id)
        if manager is None or manager.role != Role.manager:
            raise NotFound(_l("没有这位区域经理"))
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(prefix=prefix, secret_sha256=_sha256(secret), label=label, merchant_id=merchant_id,
                 store_id=store_id, manager_id=manager_id, created_by_id=created_by_id)
    session.add(key)
    session.flush()
    return NewKey(key, f"{TOKEN_PREFIX}{prefix}_{secret}")


def authenticate(session: Session, token: str, now: datetime | None = None) -> ApiKey | None:
    """The live key behind ``token``, or None (unknown, revoked, malformed: one answer)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    prefix, sep, secret = token[len(TOKEN_PREFIX):].partition("_")
    if not sep or len(prefix) != PREFIX_LENGTH or not secret:
        return None
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or key.revoked_at is not None:
        return None
    if not hmac.compare_digest(key.secret_sha256, _sha256(secret)):
        return None
    now = as_utc(now)
    if key.last_used_at is None or now - key.last_used_at >= TOUCH_EVERY:
        session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now)
                        .execution_options(synchronize_session=False))
    return key


def keys_of_merchant(session: Session, merchant_id: int) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).where(ApiKey.merchant_id == merchant_id).order_by(ApiKey.id.desc())))


def all_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def get_key_for_merchant(session: Session, key_id: int, merchant_id: int) -> ApiKey:
    """The tenant lookup: another merchant's key is not found."""
    key = session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.merchant_id == merchant_id))
    if key is None:
        raise NotFound()
    return key


def revoke(session: Session, key: ApiKey, now: datetime | None = None) -> None:
    if key.revoked_at is None:
        key.revoked_at = as_utc(now)


def relabel(session: Session, key: ApiKey, label: str) -> None:
    """A key's name is the owner's note (which till, which POS): the same rule as at creation."""
    key.label = _clean_label(label)
