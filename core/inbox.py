"""The WeCom event log: every accepted callback is a row before it is a job.

The row makes callbacks durable (a Redis outage loses nothing: ``requeue_pending`` finds
unprocessed rows) and its unique digest is the last line of defence against duplicates.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from redis import RedisError
from sqlalchemy import JSON, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.db import Base, db, utcnow
from core.extensions import QUEUE_HIGH, enqueue
from wecom.events import registry

log = logging.getLogger(__name__)


class WeComEvent(Base):
    __tablename__ = "wecom_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    event: Mapped[str] = mapped_column(String(64), index=True)
    change_type: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|done|failed
    error: Mapped[str | None] = mapped_column(Text)


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


def accept_callback(payload: dict, digest: str) -> None:
    """The callback sink: persist, then hand to a job on ``high``. Duplicates stop here."""
    try:
        with db.session.begin():
            event_id = record(db.session, payload, digest).id
    except IntegrityError:
        log.info("duplicate WeCom event %s dropped", digest)
        return
    try:
        enqueue(QUEUE_HIGH, process_event, event_id, job_id=f"wecom-event-{event_id}")
    except RedisError:
        # The row is durable: answer WeCom 200 (a retry would only hit the unique digest) and
        # let ``requeue_stranded_events`` (linli cron) give it a job once Redis is back.
        log.error("event %s stored but not enqueued (Redis unavailable)", event_id, exc_info=True)


def process_event(event_id: int) -> str:
    """RQ job: dispatch one stored event to the domain handlers registered for it."""
    with db.session.begin():
        row = db.session.get(WeComEvent, event_id, with_for_update=True)
        if row is None or row.status == "done":
            return "skipped"
        payload = dict(row.payload)
    try:
        handled = registry.dispatch(payload)
    except Exception as exc:
        with db.session.begin():
            row = db.session.get(WeComEvent, event_id)
            row.status, row.error = "failed", repr(exc)[:2000]
        raise
    with db.session.begin():
        row = db.session.get(WeComEvent, event_id)
        row.status, row.processed_at, row.error = "done", utcnow(), None
    return f"handled by {handled}"


def requeue_pending(
    session: Session, *, statuses: tuple[str, ...] = ("pending", "failed"), older_than: timedelta | None = None
) -> int:
    """Re-enqueue events whose job never ran (Redis lost it) or failed; handlers are
    idempotent. ``older_than`` leaves alone events whose first job may still be queued."""
    stmt = select(WeComEvent.id).where(WeComEvent.status.in_(statuses))
    if older_than is not None:
        stmt = stmt.where(WeComEvent.received_at < utcnow() - older_than)
    ids = session.scalars(stmt.order_by(WeComEvent.id)).all()
    for event_id in ids:
        enqueue(QUEUE_HIGH, process_event, event_id, job_id=f"wecom-event-{event_id}-retry")
    return len(ids)


def requeue_stranded_events() -> int:
    """Periodic job: events still pending five minutes after they arrived lost their job."""
    with db.session.begin():
        return requeue_pending(db.session, statuses=("pending",), older_than=timedelta(minutes=5))
