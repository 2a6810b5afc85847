"""A live stack over real HTTP: the app and the WeCom simulator, each on a loopback port,
pointed at each other. Used by the e2e (per module) and browser (per session) fixtures."""
from __future__ import annotations

import time

import httpx

from marketplace.worker import drain
from tests.conftest import LiveServer


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
