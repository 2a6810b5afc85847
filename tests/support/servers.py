"""Apps and servers for tests: a test app over a database URL, an app context that empties
the tables afterwards, a WSGI app on a loopback port, and the WeCom simulator on one."""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from werkzeug.serving import make_server

from core.db import db
from marketplace import create_app
from marketplace.all_models import metadata
from wecom.simulator import create_simulator_app

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_URL = os.environ.get("TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def truncate_all(url: str) -> None:
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


@contextmanager
def running_app(instance: Path, database_url: str, redis_url: str, **extra) -> Iterator:
    """A test app with its context pushed; tables and Redis are emptied afterwards."""
    application = make_test_app(instance, database_url, redis_url, **extra)
    with application.app_context():
        yield application
        db.session.remove()
        truncate_all(database_url)
    application.extensions["redis"].flushdb()
    application.extensions["redis"].close()


class LiveServer:
    """A WSGI app served over real HTTP on a loopback port, in a daemon thread.

    ``wsgi_app`` may be None and set later (``server.app = ...``): two servers that must know
    each other's URL (the app and the simulator) bind their ports first.
    """

    def __init__(self, wsgi_app=None, host: str = "127.0.0.1") -> None:
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
