"""Rules of the event log (take a session, never commit)."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.inbox.models import WeComEvent


def record(session: Session, payload: dict, digest: str) -> WeComEvent:
    """Add an event row; the unique digest makes a second insert of it fail at flush."""
    row = WeComEvent(
        digest=digest,
        event=payload.get("Event") or payload.get("MsgType") or "unknown",
        change_type=payload.get("ChangeType"),
        payload=payload,
    )
    session.add(row)
    session.flush()
    return row


def pending_ids(
    session: Session, *, statuses: tuple[str, ...] = ("pending", "failed"), older_than: timedelta | None = None
) -> list[int]:
    """Events whose job never ran (Redis lost it) or failed. ``older_than`` leaves alone
    events whose first job may still be queued."""
    stmt = select(WeComEvent.id).where(WeComEvent.status.in_(statuses))
    if older_than is not None:
        stmt = stmt.where(WeComEvent.received_at < utcnow() - older_than)
    return list(session.scalars(stmt.order_by(WeComEvent.id)))
