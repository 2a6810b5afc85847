"""``transaction(session)``: the view-side unit of work.

Flask-Login's user loader (and any read before the write) autobegins a transaction on the
scoped session, after which ``session.begin()`` refuses to start. This commits whatever
transaction is open, or begins one, and rolls back on error either way.
"""
from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy.orm import Session, scoped_session


@contextmanager
def transaction(session: Session | scoped_session):
    if isinstance(session, scoped_session):
        session = session()
    if not session.in_transaction():
        with session.begin():
            yield session
        return
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    session.commit()
