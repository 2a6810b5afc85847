"""Shared fixtures.

Database tests run on SQLite and, when ``TEST_DATABASE_URL`` is set (CI), on PostgreSQL too;
queue tests use ``TEST_REDIS_URL`` (CI: a real redis-server) or an embedded redis-server.
In CI a missing server is a failure, never a skip.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from marketplace import create_app
from marketplace.all_models import metadata
from core.db import db
from core.embedded_redis import EmbeddedRedis

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_URL = os.environ.get("TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "")

if IN_CI and not (PG_URL and REDIS_URL):
    raise pytest.UsageError("CI must export TEST_DATABASE_URL and TEST_REDIS_URL")

BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    if REDIS_URL:
        yield REDIS_URL
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    url = server.start()
    yield url
    server.stop()


def _reset_schema(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        metadata.drop_all(conn)
        metadata.create_all(conn)
    engine.dispose()


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory) -> dict[str, str]:
    urls = {"sqlite": f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"}
    if PG_URL:
        urls["postgresql"] = PG_URL
    for url in urls.values():
        _reset_schema(url)
    return urls


def _truncate_all(url: str) -> None:
    engine = db.engine
    with engine.begin() as conn:
        if url.startswith("postgresql"):
            names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
            if names:
                conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())


def make_test_app(instance: Path, database_url: str, redis_url: str, **extra):
    config = {
        "TESTING": True,
        "INSTANCE_PATH": str(instance),
        "SECRET_KEY": "test-secret",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "WTF_CSRF_ENABLED": True,
    }
    config.update(extra)
    return create_app(config)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@contextmanager
def running_app(instance: Path, database_url: str, redis_url: str, **extra) -> Iterator:
    """A test app with its context pushed; tables and Redis are emptied afterwards."""
    application = make_test_app(instance, database_url, redis_url, **extra)
    with application.app_context():
        yield application
        db.session.remove()
        _truncate_all(database_url)
    application.extensions["redis"].flushdb()
    application.extensions["redis"].close()


@pytest.fixture
def app(backend, database_urls, redis_url, tmp_path):
    """A fresh app per test on each backend."""
    with running_app(tmp_path / "instance", database_urls[backend], redis_url) as application:
        yield application


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def redis_conn(app):
    return app.extensions["redis"]


class LiveServer:
    """A WSGI app served over real HTTP on a loopback port, in a daemon thread.

    ``wsgi_app`` may be None and set later (``server.app = ...``): two servers that must know
    each other's URL (the app and the simulator) bind their ports first.
    """

    def __init__(self, wsgi_app=None, host: str = "127.0.0.1") -> None:
        from werkzeug.serving import make_server

        self.app = wsgi_app
        self.server = make_server(host, 0, self._dispatch, threaded=True)
        self.url = f"http://{host}:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _dispatch(self, environ, start_response):
        return self.app(environ, start_response)

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


def serve_simulator(tmp: Path, **config) -> LiveServer:
    """The WeCom simulator on a loopback port with its state under ``tmp``; callbacks go
    nowhere unless ``WECOM_SIM_CALLBACK_URL`` says otherwise."""
    from wecom.simulator import create_simulator_app

    server = LiveServer()
    server.app = create_simulator_app(
        {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp / "sim-instance"),
            "WECOM_SIM_DATABASE_URL": f"sqlite:///{tmp / 'sim.db'}",
            "WECOM_SIM_PUBLIC_URL": server.url,
            "WECOM_SIM_CALLBACK_URL": f"{server.url}/nowhere/callback",
            **config,
        }
    )
    return server
