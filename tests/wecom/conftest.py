"""Shared WeCom fixtures: the simulator served over real HTTP on a loopback port.

``simulator`` (session) starts one simulator server; ``sim`` (per test) is the same server
with its fault knobs cleared before and after the test. Both return a :class:`SimServer`.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest
import redis as redis_lib

from tests.support.servers import serve_simulator
from wecom.client import RedisTokenStore, WeComClient
from wecom.defaults import DEMO_CONTACT_SECRET, DEMO_CORP_ID


@dataclass
class SimServer:
    url: str
    app: object
    corp_id: str = DEMO_CORP_ID
    secret: str = DEMO_CONTACT_SECRET

    @property
    def api_base(self) -> str:
        return f"{self.url}/cgi-bin/"

    def admin(self, method: str, path: str, json: dict | None = None) -> httpx.Response:
        response = httpx.request(method, f"{self.url}/sim/admin/{path.lstrip('/')}", json=json, timeout=60)
        response.raise_for_status()
        return response

    def fault(self, **knob) -> None:
        """``errcode``/``http_status``/``latency_ms`` with ``times`` and an optional ``path``."""
        self.admin("POST", "faults", knob)

    def clear_faults(self) -> None:
        self.admin("DELETE", "faults")

    def expire_tokens(self) -> None:
        self.admin("POST", "tokens/expire")

    def add_customer(self, config_id: str, wechat_user: str = "beibei") -> str:
        """A seeded diner scans a contact-me code; returns their external_userid."""
        return self.admin("POST", "scan", {"wechat_user": wechat_user, "config_id": config_id}).json()[
            "external_userid"
        ]


@pytest.fixture(scope="session")
def simulator(tmp_path_factory):
    server = serve_simulator(
        tmp_path_factory.mktemp("wecom-sim"),
        WECOM_CORP_ID=DEMO_CORP_ID,
        WECOM_CONTACT_SECRET=DEMO_CONTACT_SECRET,
        WECOM_SIM_AUTO_CONFIRM_SECONDS=0,
        WECOM_SIM_CALLBACK_TRIES=1,
    )
    yield SimServer(url=server.url, app=server.app)
    server.stop()


@pytest.fixture
def sim(simulator):
    simulator.clear_faults()
    yield simulator
    simulator.clear_faults()


@pytest.fixture
def token_redis(redis_url):
    conn = redis_lib.Redis.from_url(redis_url)
    yield conn
    conn.close()


@pytest.fixture
def make_wecom(sim, token_redis):
    """Build clients on the simulator sharing one fresh Redis token key (per test); all closed
    at teardown. Keyword arguments override the client's."""
    prefix = f"test:wecom:token:{uuid.uuid4().hex}"
    clients: list[WeComClient] = []

    def make(*, secret: str | None = None, **kw) -> WeComClient:
        secret = sim.secret if secret is None else secret
        kw.setdefault("token_store", RedisTokenStore(token_redis, sim.corp_id, secret, prefix=prefix))
        kw.setdefault("sleep", lambda s: None)
        client = WeComClient(sim.corp_id, secret, base_url=sim.api_base, **kw)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
    for key in token_redis.scan_iter(f"{prefix}*"):
        token_redis.delete(key)
