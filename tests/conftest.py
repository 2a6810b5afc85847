"""Shared fixtures.

Database tests run on SQLite and, when ``TEST_DATABASE_URL`` is set (CI), on PostgreSQL too;
queue tests use ``TEST_REDIS_URL`` (CI: a real redis-server) or an embedded redis-server.
In CI a missing server is a failure, never a skip.
"""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from core.embedded_redis import EmbeddedRedis
from marketplace.all_models import metadata
from tests.support.servers import BACKENDS, IN_CI, PG_URL, REDIS_URL, running_app

if IN_CI and not (PG_URL and REDIS_URL):
    raise pytest.UsageError("CI must export TEST_DATABASE_URL and TEST_REDIS_URL")



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


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


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


