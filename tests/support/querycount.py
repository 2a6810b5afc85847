"""Count the SQL statements the app sends to its database during a block.

The style guide forbids lazy-load N+1 in list views; the way to hold a page to that is to
render it with few rows and with many and compare how many statements each took. This
listens to SQLAlchemy's ``before_cursor_execute`` on the app's engine
(``core.db.db.engine``), so it sees every statement the ORM or Core emits, lazy
loads included. An ``executemany`` (a batched flush) counts once, as it is one round trip.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from sqlalchemy import event
from sqlalchemy.engine import Engine

from core.db import db


@dataclass
class QueryLog:
    """The statements seen, in order (SQL text only; parameters are left out)."""

    statements: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.statements)

    def __len__(self) -> int:
        return len(self.statements)

    def _record(self, conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ARG002
        self.statements.append(statement)

    def report(self) -> str:
        """One numbered line per statement, for assertion messages."""
        return "\n".join(f"{n:3d}. {' '.join(s.split())[:300]}" for n, s in enumerate(self.statements, 1))


@contextmanager
def count_queries(engine: Engine | None = None) -> Iterator[QueryLog]:
    """``with count_queries() as log: ...`` then ``log.count``. The engine defaults to the
    app's, read when the block starts (each test app may configure a new one)."""
    target = engine if engine is not None else db.engine
    if target is None:
        raise RuntimeError("no engine: create the app (db.init_app) first")
    log = QueryLog()
    event.listen(target, "before_cursor_execute", log._record)
    try:
        yield log
    finally:
        event.remove(target, "before_cursor_execute", log._record)
