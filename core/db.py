"""The database: one declarative base for every package, one scoped session per app context.

Services take a ``Session`` and never commit; the caller owns the transaction
(``with transaction(db.session) as session:`` from ``core.txn`` in views and jobs).
"""
from __future__ import annotations

import os
import threading
from datetime import datetime, timezone

from flask import has_app_context
from flask.globals import app_ctx
from sqlalchemy import DateTime, MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class TZDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: store aware UTC datetimes")
        if value is not None:
            value = value.astimezone(timezone.utc)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: TZDateTime()}


class Database:
    """Engine + scoped session, bound to a Flask app by ``init_app``."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self._factory = sessionmaker(expire_on_commit=False)
        self.session: scoped_session[Session] = scoped_session(self._factory, scopefunc=_scope)
        self._pid = os.getpid()

    def init_app(self, app) -> None:
        self.configure(app.config["DATABASE_URL"])
        app.extensions["db"] = self

        @app.teardown_appcontext
        def _remove_session(exc):  # noqa: ARG001
            self.session.remove()

    def configure(self, url: str) -> None:
        if self.engine is not None and str(self.engine.url) == url:
            return
        self.session.remove()
        if self.engine is not None:
            self.engine.dispose()
        kwargs: dict = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._factory.configure(bind=self.engine)
        self._pid = os.getpid()

    def after_fork(self) -> None:
        """A forked child must not reuse the parent's connections (SQLAlchemy pooling docs)."""
        if self.engine is not None and os.getpid() != self._pid:
            self.engine.dispose(close=False)
            self._pid = os.getpid()


def _scope() -> int:
    """One session per app context (as Flask-SQLAlchemy does), else per thread: a job run
    inside a test or CLI command gets its own app context, hence its own session and
    transaction, instead of inheriting whatever the caller left open."""
    if has_app_context():
        return id(app_ctx._get_current_object())
    return threading.get_ident()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


db = Database()
