"""The services' "now": callers (tests, jobs) may pass one; it must be aware."""
from __future__ import annotations

from datetime import datetime, timezone


def as_utc(now: datetime | None) -> datetime:
    """``now`` in UTC, the current time for None; a naive datetime is a bug, not a guess."""
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise ValueError("naive datetime")
    return now.astimezone(timezone.utc)
