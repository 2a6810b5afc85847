"""Login throttling that holds: attempts are counted (atomically, in Redis) before the slow
password check, per username+IP, per username from any IP and per IP for any username;
X-Forwarded-For counts only from TRUSTED_PROXIES."""
from __future__ import annotations

import re
import threading

import httpx

from accounts.models import Role
from accounts.services import create_user
from core.db import db
from core.txn import transaction
from tests.support.merchants import PASSWORD, FreshContextClient, login, make_owner
from tests.support.servers import LiveServer, running_app

THREADS = 40


def client_at(app, addr: str):
    """A browser whose requests come from ``addr`` (the socket's peer)."""
    app.test_client_class = FreshContextClient
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = addr
    return c
_TOKEN_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def test_parallel_wrong_passwords_check_exactly_the_limit(app):
    # a realistic (slow) hash for the victim: the old check-then-count let every request
    # that started during the first five hashes through
    app.config["PASSWORD_HASH_METHOD"] = "scrypt:16384:8:1"
    with transaction(db.session):
        create_user(db.session, username="victim", password=PASSWORD, role=Role.owner)
    server = LiveServer(app)
    clients = [httpx.Client(base_url=server.url, timeout=60) for _ in range(THREADS)]
    try:
        tokens = [_TOKEN_RE.search(c.get("/auth/login").text).group(1) for c in clients]
        barrier = threading.Barrier(THREADS)
        statuses: list = [None] * THREADS

        def guess(i: int) -> None:
            barrier.wait()
            resp = clients[i].post("/auth/login", data={"csrf_token": tokens[i], "username": "victim",
                                                        "password": f"guess-{i}"})
            statuses[i] = resp.status_code

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert sorted(statuses) == [401] * 5 + [429] * (THREADS - 5)
        # the right password from the same place now waits too
        resp = clients[0].post("/auth/login", data={"csrf_token": tokens[0], "username": "victim", "password": PASSWORD})
        assert resp.status_code == 429
    finally:
        for c in clients:
            c.close()
        server.stop()


def test_one_password_across_many_usernames_is_limited_per_ip(app, client):
    app.config["LOGIN_THROTTLE_IP_LIMIT"] = 8
    for i in range(8):
        assert login(client, f"someone{i}", "123456789").status_code == 401
    assert login(client, "someone-else", "123456789").status_code == 429
    # another client address is not affected
    make_owner("owner1")
    elsewhere = client_at(app, "198.51.100.7")
    assert login(elsewhere, "owner1").status_code == 302


def test_one_username_from_many_ips_is_limited(app):
    app.config["LOGIN_THROTTLE_USER_LIMIT"] = 6
    make_owner("owner1")
    for i in range(6):
        c = client_at(app, f"198.51.100.{i + 1}")
        assert login(c, "owner1", "wrong-password").status_code == 401
    c = client_at(app, "198.51.100.99")
    assert login(c, "owner1").status_code == 429


def test_good_logins_do_not_use_up_the_ip_allowance(app, client):
    app.config["LOGIN_THROTTLE_IP_LIMIT"] = 3
    make_owner("owner1")
    for _ in range(5):  # a shared till signing in and out all day
        assert login(client, "owner1").status_code == 302
        client.post("/auth/logout", data={"csrf_token": _TOKEN_RE.search(client.get("/portal/enrol").get_data(as_text=True)).group(1)})
    assert login(client, "owner1").status_code == 302


def _post_login(c, password: str, forwarded: str) -> int:
    token = _TOKEN_RE.search(c.get("/auth/login").get_data(as_text=True)).group(1)
    return c.post("/auth/login", data={"csrf_token": token, "username": "owner1", "password": password},
                  headers={"X-Forwarded-For": forwarded}).status_code


def test_forwarded_for_is_ignored_without_trusted_proxies(app):
    # a client cannot dodge the limit by inventing X-Forwarded-For
    make_owner("owner1")
    c = client_at(app, "10.0.0.1")
    for _ in range(5):
        assert _post_login(c, "wrong-password", "203.0.113.1") == 401
    assert _post_login(c, PASSWORD, "203.0.113.2") == 429


def test_trusted_proxy_gives_each_client_its_own_address(database_urls, redis_url, tmp_path):
    with running_app(tmp_path / "proxied", database_urls["sqlite"], redis_url, TRUSTED_PROXIES=1,
                     PASSWORD_HASH_METHOD="scrypt:1024:8:1") as proxied:
        make_owner("owner1")
        behind = client_at(proxied, "10.0.0.1")  # the load balancer
        for _ in range(5):
            assert _post_login(behind, "wrong-password", "203.0.113.1") == 401
        assert _post_login(behind, PASSWORD, "203.0.113.1") == 429  # that client is blocked ...
        assert _post_login(behind, PASSWORD, "203.0.113.2") == 302  # ... another behind the same proxy is not
