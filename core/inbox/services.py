"""Rules of the event log (take a session, never commit)."""
from __future__ import annotations

from datetime import timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.bounds import is_id
from core.db import utcnow
from core.errors import Invalid, NotFound
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


# ---------------------------------------------------------------- the operator's view

STATUSES = ("pending", "done", "failed")


def status_counts(session: Session) -> dict[str, int]:
    """How many events are in each status (every status present, zero or not)."""
    rows = session.execute(select(WeComEvent.status, func.count()).group_by(WeComEvent.status))
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: n for status, n in rows})
    return counts


def list_events(session: Session, *, status: str = "failed", limit: int = 100) -> list[WeComEvent]:
    """Events in ``status``, newest first (the operator's failed-events page and CLI)."""
    if status not in STATUSES:
        raise Invalid(_l("未知的事件状态：%(s)s", s=status), "status")
    stmt = select(WeComEvent).where(WeComEvent.status == status)
    return list(session.scalars(stmt.order_by(WeComEvent.id.desc()).limit(limit)))


def mark_for_retry(session: Session, ids: list[int] | None = None) -> list[int]:
    """Failed events back to ``pending`` (their last error kept until one run succeeds), for
    a replay: the given ids (each must exist and have failed) or, with None, every failed one.
    A pending row whose job is lost is picked up again by ``requeue_stranded_events``."""
    stmt = select(WeComEvent).where(WeComEvent.status == "failed")
    if ids is not None:
        wanted = sorted({i for i in ids if is_id(i)})
        if len(wanted) != len(set(ids)):
            raise NotFound(_l("没有这些失败的事件：%(ids)s", ids=", ".join(map(str, sorted(set(ids) - set(wanted))))))
        rows = list(session.scalars(stmt.where(WeComEvent.id.in_(wanted)).with_for_update()))
        missing = sorted(set(wanted) - {r.id for r in rows})
        if missing:
            raise NotFound(_l("没有这些失败的事件：%(ids)s", ids=", ".join(map(str, missing))))
    else:
        rows = list(session.scalars(stmt.with_for_update()))
    for row in rows:
        row.status = "pending"
    session.flush()
    return sorted(r.id for r in rows)
