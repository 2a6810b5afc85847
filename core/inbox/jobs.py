"""Entry points of the event log: the callback sink (called by the callback blueprint in
the request) and the RQ jobs that dispatch stored events to the domain handlers. Each owns
its transaction.
"""
from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from redis import RedisError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import db, utcnow
from core.extensions import QUEUE_HIGH, enqueue
from core.inbox.models import WeComEvent
from core.inbox.services import mark_for_retry, pending_ids, record
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


def retry_failed(ids: list[int] | None = None, *, now: bool = False) -> dict[int, str]:
    """The operator's replay (``linli events retry``, /admin/events): failed events (``ids``,
    or every one) go back to pending and get a fresh job on ``high`` — or, with ``now``, run
    in this process. Returns id -> "queued" | the job's result | "failed: <error>".
    Handlers are idempotent, so a replay of a half-done event only finishes it."""
    with transaction(db.session) as session:
        marked = mark_for_retry(session, ids)
    outcome: dict[int, str] = {}
    for event_id in marked:
        if now:
            try:
                outcome[event_id] = process_event(event_id)
            except Exception as exc:  # noqa: BLE001 - recorded on the row by process_event
                outcome[event_id] = f"failed: {exc!r}"[:300]
            continue
        try:
            enqueue(QUEUE_HIGH, process_event, event_id,
                    job_id=f"wecom-event-{event_id}-replay-{secrets.token_hex(4)}")
        except RedisError:
            # still pending: requeue_stranded_events gives it a job once Redis is back
            log.error("event %s marked for retry but not enqueued (Redis unavailable)", event_id)
            outcome[event_id] = "pending"
        else:
            outcome[event_id] = "queued"
    return outcome
