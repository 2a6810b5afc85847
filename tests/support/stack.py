"""A live stack over real HTTP: the app and the WeCom simulator, each on a loopback port,
pointed at each other. Used by the e2e (per module) and browser (per session) fixtures."""
from __future__ import annotations

import time

import httpx
import pytest

from core.db import db
from marketplace.worker import drain
from tests.support.servers import BACKENDS, LiveServer, make_test_app, truncate_all
from wecom.simulator import create_simulator_app


class Stack:
    def __init__(self, app, app_server: LiveServer, sim_app, sim_server: LiveServer) -> None:
        self.app = app
        self.app_url = app_server.url
        self.sim = sim_app
        self.sim_url = sim_server.url
        self.http = httpx.Client(timeout=10)

    def url(self, path: str) -> str:
        return self.app_url + path

    def sim_scan_url(self, config_id: str) -> str:
        """What a channel's QR encodes: the simulator's "scan this contact way" page."""
        return f"{self.sim_url}/phone/scan/{config_id}"

    def drain(self) -> None:
        """Run every queued RQ job now (in this process, with a real worker in burst mode)."""
        drain(self.app)

    def wait_for(self, predicate, timeout: float = 15.0, interval: float = 0.1):
        """Run queued jobs until ``predicate()`` is truthy (callbacks arrive asynchronously)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain()
            result = predicate()
            if result:
                return result
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, database_urls, redis_url):
    tmp = tmp_path_factory.mktemp("stack")
    app_server, sim_server = LiveServer(), LiveServer()
    sim_app = create_simulator_app(
        {
            "WECOM_SIM_DATABASE_URL": f"sqlite:///{tmp / 'sim.db'}",
            "WECOM_SIM_PUBLIC_URL": sim_server.url,
            "WECOM_SIM_CALLBACK_URL": f"{app_server.url}/wecom/callback",
        }
    )
    sim_server.app = sim_app
    backend = BACKENDS[-1]  # PostgreSQL when CI provides it
    app = make_test_app(
        tmp / "instance",
        database_urls[backend],
        redis_url,
        WECOM_API_BASE=f"{sim_server.url}/cgi-bin/",
        WECHAT_OA_API_BASE=f"{sim_server.url}/",
        WECHAT_OA_AUTHORIZE_URL=f"{sim_server.url}/connect/oauth2/authorize",
        PUBLIC_BASE_URL=app_server.url,
    )
    app_server.app = app
    stack = Stack(app, app_server, sim_app, sim_server)
    with app.app_context():
        yield stack
        db.session.remove()
        truncate_all(database_urls[backend])
    app.extensions["redis"].flushdb()
    app.extensions["redis"].close()
    stack.http.close()
    app_server.stop()
    sim_server.stop()
