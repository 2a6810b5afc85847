"""The simulator's runtime: settings, database, clock, fault queue and callback dispatcher.

One ``Sim`` lives in ``app.extensions["wecom_sim"]``; services receive it for the clock,
the settings and ``emit`` (callbacks).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from wecom.crypto import WeComCrypto
from wecom.simulator.callbacks import Dispatcher
from wecom.simulator.models import SimBase
from wecom.simulator.settings import Settings

FAULT_KINDS = ("errcode", "http_status", "latency_ms")


class Faults:
    """Queued fault injections; each applies to the next ``times`` matching API calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[dict[str, Any]] = []

    def add(self, spec: dict[str, Any]) -> dict[str, Any]:
        if not any(k in spec for k in FAULT_KINDS):
            raise ValueError("a fault needs errcode, http_status or latency_ms")
        item = {k: spec[k] for k in (*FAULT_KINDS, "path") if spec.get(k) is not None}
        for key in FAULT_KINDS:
            if key in item:
                item[key] = int(item[key])
        if spec.get("after"):  # the call is carried out, then its answer is lost on the way back
            item["after"] = True
        if "path" in item:
            item["path"] = str(item["path"]).strip("/").removeprefix("cgi-bin/")
        item["times"] = int(spec.get("times", 1))
        if item["times"] < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._items.append(item)
        return item

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(i) for i in self._items]

    def take(self, path: str) -> dict[str, Any] | None:
        """The first fault matching ``path``, with one use consumed."""
        with self._lock:
            for item in self._items:
                if item.get("path") in (None, path):
                    item["times"] -= 1
                    if item["times"] <= 0:
                        self._items.remove(item)
                    return dict(item)
        return None


class InFlight:
    """Calls of one API running right now, for WeCom's per-corp concurrency limit (45033)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def enter(self, path: str, limit: int) -> bool:
        """Count one more call of ``path``; False (not counted) when ``limit`` already run."""
        with self._lock:
            if self._counts.get(path, 0) >= limit:
                return False
            self._counts[path] = self._counts.get(path, 0) + 1
            return True

    def leave(self, path: str) -> None:
        with self._lock:
            self._counts[path] = max(0, self._counts.get(path, 0) - 1)


class Sim:
    def __init__(self, settings: Settings, clock: Callable[[], float] | None = None) -> None:
        self.settings = settings
        self._clock = clock or time.time
        url = settings.database_url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.faults = Faults()
        self.in_flight = InFlight()
        for spec in settings.faults:
            self.faults.add(spec)
        self.write_lock = threading.RLock()  # SQLite: one writer at a time, no lock errors
        self.dispatcher = Dispatcher(self)

    def now(self) -> float:
        return float(self._clock())

    @property
    def crypto(self) -> WeComCrypto:
        s = self.settings
        return WeComCrypto(s.callback_token, s.callback_aes_key, s.corp_id)

    def create_schema(self) -> None:
        SimBase.metadata.create_all(self.engine)

    def drop_schema(self) -> None:
        SimBase.metadata.drop_all(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in a transaction; queued callbacks are handed to the dispatcher after commit."""
        with self.write_lock:
            session = self.sessions()
            try:
                with session.begin():
                    yield session
                emitted = session.info.pop("emitted", False)
            finally:
                session.close()
        if emitted:
            self.dispatcher.kick()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        session = self.sessions()
        try:
            yield session
        finally:
            session.close()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
