"""The statistics' RQ entry point: the clock's roll-up (every 15 s)."""
from __future__ import annotations

import logging

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
