"""Entry points of the event log: the callback sink (called by the callback blueprint in
the request) and the RQ jobs that dispatch stored events to the domain handlers. Each owns
its transaction.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from redis import RedisError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import db, utcnow
from core.extensions import QUEUE_HIGH, enqueue
from core.inbox.models import WeComEvent
from core.inbox.services import pending_ids, record
from core.txn import transaction
from wecom.events import registry

log = logging.getLogger(__name__)


def accept_callback(payload: dict, digest: str) -> None:
    """The callback sink: persist, then hand to a job on ``high``. Duplicates stop here."""
    try:
        with transaction(db.session) as session:
            event_id = record(session, payload, digest).id
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
    with transaction(db.session) as session:
        row = session.get(WeComEvent, event_id, with_for_update=True)
        if row is None or row.status == "done":
            return "skipped"
        payload = dict(row.payload)
    try:
        handled = registry.dispatch(payload)
    except Exception as exc:
        with transaction(db.session) as session:
            row = session.get(WeComEvent, event_id)
            row.status, row.error = "failed", repr(exc)[:2000]
        raise
    with transaction(db.session) as session:
        row = session.get(WeComEvent, event_id)
        row.status, row.processed_at, row.error = "done", utcnow(), None
    return f"handled by {handled}"


def requeue_pending(
    session: Session, *, statuses: tuple[str, ...] = ("pending", "failed"), older_than: timedelta | None = None
) -> int:
    """Re-enqueue events whose job never ran or failed; handlers are idempotent."""
    ids = pending_ids(session, statuses=statuses, older_than=older_than)
    for event_id in ids:
        enqueue(QUEUE_HIGH, process_event, event_id, job_id=f"wecom-event-{event_id}-retry")
    return len(ids)


def requeue_stranded_events() -> int:
    """Periodic job: events still pending five minutes after they arrived lost their job."""
    with transaction(db.session) as session:
        return requeue_pending(session, statuses=("pending",), older_than=timedelta(minutes=5))
