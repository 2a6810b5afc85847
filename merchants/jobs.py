"""RQ entry points for channel codes: thin wrappers over ``merchants.channels`` taking ids.

Scheduling (e.g. every 10 minutes) lives with the scheduler; these only do one pass.
"""
from __future__ import annotations

import logging
from datetime import date, datetime

from sqlalchemy import select

from core.db import db, utcnow
from merchants import channels
from wecom.client import WeComError

log = logging.getLogger(__name__)


def _client():
    from core.wecom import get_wecom

    return get_wecom()


def rebalance_store_channels(store_id: int, day: str | None = None) -> int:
    """Re-point one store's codes at today's members (cap overflow to backups)."""
    today = date.fromisoformat(day) if day else channels.local_today()
    with db.session.begin():
        return channels.rebalance_channels(db.session, _client(), store_id, today)


def rebalance_all_stores(day: str | None = None) -> int:
    """One pass over every store with an active code; one store's WeCom error spares the rest."""
    with db.session.begin():
        store_ids = list(
            db.session.scalars(
                select(channels.Channel.store_id).where(channels.Channel.active.is_(True)).distinct()
            )
        )
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
    with db.session.begin():
        return channels.apply_opening_hours(db.session, _client(), now)
