"""The statistics' RQ entry points: the clock's roll-up (every 15 s) and a rebuild."""
from __future__ import annotations

import logging
from datetime import date

from core import failpoints
from core.db import db
from core.txn import transaction
from stats.services import rollup

log = logging.getLogger(__name__)


def roll_up(batch: int = rollup.BATCH) -> int:
    """Move the waiting tallies into the rollups, a batch per transaction, until none wait;
    the first run on a database (no cursor yet) recounts all history from the raw rows."""
    with transaction(db.session) as session:
        first = not rollup.has_cursor(session)
    if first:
        rollup.rebuild_in(db.session.session_factory)
        log.info("stats: first run, rebuilt from the raw tables")
    moved = 0
    while True:
        with transaction(db.session) as session:
            n = rollup.roll_up(session, batch)
            failpoints.hit("stats.rolled_batch")  # a kill here must change no total
        moved += n
        if n < batch:
            return moved


def rebuild(from_day: str | None = None) -> str:
    day = date.fromisoformat(from_day) if from_day else None
    rollup.rebuild_in(db.session.session_factory, day)
    return f"rebuilt from {day or 'the beginning'}"
