"""RQ entry points for channel codes: thin wrappers over ``merchants.services.channels`` taking
ids, each owning its transaction.

Scheduling (e.g. every 10 minutes) lives with the scheduler; these only do one pass.
"""
from __future__ import annotations

import logging
from datetime import date, datetime

from sqlalchemy import select

from core.db import db, utcnow
from core.txn import transaction
from core.wecom import get_wecom
from merchants.models import Channel
from merchants.services import channels
from wecom.client import WeComError

log = logging.getLogger(__name__)


def rebalance_store_channels(store_id: int, day: str | None = None) -> int:
    """Re-point one store's codes at today's members (cap overflow to backups)."""
    today = date.fromisoformat(day) if day else channels.local_today()
    with transaction(db.session) as session:
        return channels.rebalance_channels(session, get_wecom(), store_id, today)


def rebalance_all_stores(day: str | None = None) -> int:
    """One pass over every store with an active code; one store's WeCom error spares the rest."""
    with transaction(db.session) as session:
        store_ids = list(session.scalars(select(Channel.store_id).where(Channel.active.is_(True)).distinct()))
    changed = 0
    for store_id in store_ids:
        try:
            changed += rebalance_store_channels(store_id, day)
        except WeComError:
            log.exception("rebalancing store %s failed", store_id)
    return changed


def apply_opening_hours(now_iso: str | None = None) -> int:
    """Turn auto-accept on/off for codes limited to opening hours."""
    now = datetime.fromisoformat(now_iso) if now_iso else utcnow()
    with transaction(db.session) as session:
        return channels.apply_opening_hours(session, get_wecom(), now)
