"""WeComClient over real HTTP against the WeCom simulator, token cache in a real Redis."""
from __future__ import annotations

import json
import logging
import threading

import httpx
import pytest

from wecom.client import (
    BACKOFF_CAP,
    MemoryTokenStore,
    RedisTokenStore,
    WeComClient,
    WeComError,
    chunked,
)

FOLLOW = "externalcontact/get_follow_user_list"


class Recorder(httpx.HTTPTransport):
    """A real HTTP transport that also notes each request's path and JSON body."""

    def __init__(self, calls: list) -> None:
        super().__init__()
        self.calls = calls

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.calls.append((request.url.path.removeprefix("/cgi-bin/"), body, request))
        return super().handle_request(request)


def paths(calls) -> list[str]:
    return [p for p, _, _ in calls]


# --------------------------------------------------------------------------- token


def test_token_fetched_once_and_shared_through_redis(make_wecom, token_redis):
    calls: list = []
    a = make_wecom(transport=Recorder(calls))
    b = make_wecom(transport=Recorder(calls))

    assert isinstance(a.customers.follow_user_list(), list)
    assert isinstance(b.customers.follow_user_list(), list)
    a.customers.follow_user_list()

    assert paths(calls).count("gettoken") == 1
    assert a.token() == b.token()
    store = a.token_store
    assert isinstance(store, RedisTokenStore)
    assert store.get() == a.token()
    ttl = token_redis.ttl(store.key)
    assert 0 < ttl < 7200  # cached a little shorter than WeCom's expires_in
    assert a._secret not in store.key  # only a hash of the secret names the key


def test_concurrent_processes_fetch_one_token(make_wecom):
    """Clients racing on an empty cache: the Redis lock lets one fetch, the others re-read."""
    calls: list = []
    clients = [make_wecom(transport=Recorder(calls)) for _ in range(6)]
    barrier = threading.Barrier(len(clients))
    tokens: list[str] = []

    def run(client):
        barrier.wait()
        tokens.append(client.token())

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(set(tokens)) == 1 and len(tokens) == len(clients)
    assert paths(calls).count("gettoken") == 1


def test_expired_token_refreshed_and_retried_once(make_wecom, sim):
    calls: list = []
    client = make_wecom(transport=Recorder(calls))
    old = client.token()
    sim.expire_tokens()

    assert isinstance(client.customers.follow_user_list(), list)
    assert client.token() != old
    assert paths(calls) == ["gettoken", FOLLOW, "gettoken", FOLLOW]


def test_token_error_is_retried_only_once(make_wecom, sim):
    calls: list = []
    client = make_wecom(transport=Recorder(calls))
    client.token()
    sim.fault(errcode=42001, times=5, path=FOLLOW)

    with pytest.raises(WeComError) as info:
        client.customers.follow_user_list()
    assert info.value.errcode == 42001
    assert paths(calls).count(FOLLOW) == 2
    assert paths(calls).count("gettoken") == 2


def test_wrong_secret_raises_40001_with_hint(make_wecom):
    client = make_wecom(secret="not-the-secret")
    with pytest.raises(WeComError) as info:
        client.customers.follow_user_list()
    error = info.value
    assert (error.errcode, error.path) == (40001, "gettoken")
    assert "40001" in str(error) and "gettoken" in str(error) and error.errmsg in str(error)
    assert "Secret" in error.hint() and "secret" in error.hint("en")
    assert client.token_store.get() is None


def test_memory_token_store_caches_per_client(sim):
    calls: list = []
    with WeComClient(
        sim.corp_id, sim.secret, base_url=sim.api_base, token_store=MemoryTokenStore(), transport=Recorder(calls)
    ) as client:
        client.customers.follow_user_list()
        client.customers.follow_user_list()
    assert paths(calls) == ["gettoken", FOLLOW, FOLLOW]


# --------------------------------------------------------------------------- retries


def test_rate_limit_backs_off_then_succeeds(make_wecom, sim):
    sleeps: list[float] = []
    client = make_wecom(sleep=sleeps.append, jitter=lambda: 1.0)
    client.token()
    sim.fault(errcode=45009, times=2, path=FOLLOW)

    assert isinstance(client.customers.follow_user_list(), list)
    assert sleeps == [0.5, 1.0]


def test_rate_limit_gives_up_after_max_retries(make_wecom, sim):
    calls: list = []
    sleeps: list[float] = []
    client = make_wecom(transport=Recorder(calls), sleep=sleeps.append, jitter=lambda: 1.0, max_retries=3)
    client.token()
    sim.fault(errcode=45009, times=10, path=FOLLOW)

    with pytest.raises(WeComError) as info:
        client.customers.follow_user_list()
    assert info.value.errcode == 45009 and info.value.path == FOLLOW
    assert sleeps == [0.5, 1.0, 2.0]
    assert paths(calls).count(FOLLOW) == 4


def test_backoff_is_capped_with_full_jitter(sim):
    with WeComClient(sim.corp_id, sim.secret, base_url=sim.api_base, jitter=lambda: 1.0) as client:
        assert [client._backoff(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, BACKOFF_CAP]
    with WeComClient(sim.corp_id, sim.secret, base_url=sim.api_base) as client:
        delays = [client._backoff(3) for _ in range(200)]
        assert all(0 <= d <= 4.0 for d in delays) and len(set(delays)) > 1


def test_backoff_keeps_a_floor_of_half_the_step(sim):
    with WeComClient(sim.corp_id, sim.secret, base_url=sim.api_base, jitter=lambda: 0.0) as client:
        assert [client._backoff(n) for n in range(6)] == [0.25, 0.5, 1.0, 2.0, 4.0, BACKOFF_CAP / 2]
    with WeComClient(sim.corp_id, sim.secret, base_url=sim.api_base) as client:
        first = [client._backoff(0) for _ in range(200)]
        assert all(0.25 <= d <= 0.5 for d in first) and len(set(first)) > 1


def test_http_502_is_retried(make_wecom, sim):
    sleeps: list[float] = []
    client = make_wecom(sleep=sleeps.append)
    client.token()
    sim.fault(http_status=502, times=1)

    assert isinstance(client.customers.follow_user_list(), list)
    assert len(sleeps) == 1


def test_http_5xx_gives_up_with_local_error(make_wecom, sim):
    client = make_wecom(max_retries=1)
    client.token()
    sim.fault(http_status=503, times=5)
    with pytest.raises(WeComError) as info:
        client.customers.follow_user_list()
    assert info.value.errcode == -1 and "503" in info.value.errmsg


def test_timeout_is_retried(make_wecom, sim):
    sleeps: list[float] = []
    client = make_wecom(timeout=0.5, sleep=sleeps.append)
    client.token()
    sim.fault(latency_ms=1500, times=1)

    assert isinstance(client.customers.follow_user_list(), list)
    assert len(sleeps) == 1


def test_timeout_gives_up_and_keeps_the_cause(make_wecom, sim):
    client = make_wecom(timeout=0.3, max_retries=1)
    client.token()
    sim.fault(latency_ms=1000, times=2)
    with pytest.raises(WeComError) as info:
        client.customers.follow_user_list()
    assert info.value.errcode == -1
    assert isinstance(info.value.__cause__, httpx.TimeoutException)


def test_connection_refused_is_a_wecom_error():
    sleeps: list[float] = []
    with WeComClient(
        "ww0", "s", base_url="http://127.0.0.1:9/cgi-bin/", sleep=sleeps.append, max_retries=2
    ) as client:
        with pytest.raises(WeComError) as info:
            client.token()
    assert info.value.errcode == -1 and isinstance(info.value.__cause__, httpx.TransportError)
    assert len(sleeps) == 2


# --------------------------------------------------------------------------- batching


def member_with_customers(client: WeComClient) -> tuple[str, list[str]]:
    for userid in client.customers.follow_user_list():
        customers = client.customers.list(userid)
        if customers:
            return userid, customers
    raise AssertionError("the simulator should seed members with customers")


@pytest.mark.slow
def test_add_msg_template_batches_by_10000(make_wecom):
    calls: list = []
    client = make_wecom(transport=Recorder(calls), timeout=120)
    sender, customers = member_with_customers(client)
    ids = [f"wmtest{n:026d}" for n in range(25_000)]
    for n in (0, 10_000, 20_000):  # a real customer in every batch, else WeCom answers 41048
        ids[n] = customers[0]

    results = client.messages.add_msg_template_batched(ids, sender=sender, text="周末八折，欢迎光临")

    sent = [body for path, body, _ in calls if path == "externalcontact/add_msg_template"]
    assert [len(body["external_userid"]) for body in sent] == [10_000, 10_000, 5_000]
    assert [i for body in sent for i in body["external_userid"]] == ids
    assert all(body["text"] == {"content": "周末八折，欢迎光临"} for body in sent)
    assert len(results) == 3 and all(r["msgid"] for r in results)
    assert all(customers[0] not in r.get("fail_list", []) for r in results)
    with pytest.raises(ValueError):
        client.messages.add_msg_template(external_userid=ids[:10_001], text="x")


def test_add_msg_template_not_repeated_after_read_timeout(make_wecom, sim):
    """A timed-out create may have reached WeCom: retrying could make a second task."""
    sleeps: list[float] = []
    client = make_wecom(timeout=0.3, sleep=sleeps.append)
    sender, customers = member_with_customers(client)
    sim.fault(latency_ms=1000, times=1, path="externalcontact/add_msg_template")
    with pytest.raises(WeComError) as info:
        client.messages.add_msg_template(external_userid=customers[:1], sender=sender, text="x")
    assert info.value.errcode == -1 and "not retried" in info.value.errmsg
    assert sleeps == []


def test_transfer_batches_by_100(make_wecom):
    calls: list = []
    client = make_wecom(transport=Recorder(calls))
    members = client.customers.follow_user_list()
    assert len(members) >= 2, "simulator should seed at least two members"
    ids = [f"wmtest{n:026d}" for n in range(250)]

    results = client.transfers.transfer_customer_batched(members[0], members[1], ids)

    sent = [body for path, body, _ in calls if path == "externalcontact/transfer_customer"]
    assert [len(body["external_userid"]) for body in sent] == [100, 100, 50]
    assert "transfer_success_msg" not in sent[0]  # None-valued optional fields are dropped
    assert len(results) == 3
    assert sum(len(r.get("customer", [])) for r in results) == 250


def test_chunked():
    assert list(chunked(range(5), 2)) == [[0, 1], [2, 3], [4]]
    assert list(chunked([], 3)) == []
    with pytest.raises(ValueError):
        list(chunked([1], 0))


# --------------------------------------------------------------------------- wire details


def test_bodies_are_utf8_json_without_none_fields(make_wecom):
    calls: list = []
    client = make_wecom(transport=Recorder(calls))
    group = client.tags.add(group_name="口味偏好", tags=["川菜", {"name": "粤菜", "order": 2}])

    assert {t["name"] for t in group["tag"]} >= {"川菜", "粤菜"}
    _, body, request = next(c for c in calls if c[0] == "externalcontact/add_corp_tag")
    assert "口味偏好".encode() in request.content  # not \\u-escaped
    assert request.headers["content-type"].startswith("application/json")
    assert "group_id" not in body and "order" not in body
    assert body["tag"] == [{"name": "川菜"}, {"name": "粤菜", "order": 2}]


def test_logs_never_show_secret_or_token(make_wecom, sim, caplog):
    """Our own debug lines, and httpx's request lines (URLs carry the token or the secret)."""
    caplog.set_level(logging.DEBUG)
    client = make_wecom()
    client.customers.follow_user_list()
    sim.fault(errcode=45009, times=1, path=FOLLOW)
    client.customers.follow_user_list()
    ours = [r for r in caplog.records if r.name.startswith(("wecom.client", "httpx", "httpcore"))]
    text = "\n".join(r.getMessage() for r in ours)
    assert "HTTP Request" in text
    assert FOLLOW in text and "errcode" in text
    assert sim.secret not in text and client.token() not in text
    assert sim.secret not in repr(client)


def test_contact_way_round_trip(make_wecom, sim):
    client = make_wecom()
    member = client.customers.follow_user_list()[0]
    created = client.contact_way.add(type=1, scene=2, user=[member], state="ch-test-1", remark="测试渠道")
    assert created["config_id"] and created["qr_code"].startswith(sim.url)

    way = client.contact_way.get(created["config_id"])
    assert way["config_id"] == created["config_id"] and way["state"] == "ch-test-1"
    assert way["user"] == [member]

    client.contact_way.update(created["config_id"], remark="新备注")
    assert client.contact_way.get(created["config_id"])["remark"] == "新备注"
    client.contact_way.delete(created["config_id"])
    with pytest.raises(WeComError):
        client.contact_way.get(created["config_id"])


def test_error_hints():
    assert "IP" in WeComError(60020, "not allow to access from your ip", "x").hint()
    assert WeComError(84061, "", "x").hint("en")
    assert WeComError(41054, "", "x").hint() and WeComError(40098, "", "x").hint()
    assert WeComError(99999, "", "x").hint() is None


# --------------------------------------------------------------------------- paging and areas


def test_iterators_follow_cursors(make_wecom):
    calls: list = []
    client = make_wecom(transport=Recorder(calls))
    sender, customers = member_with_customers(client)

    items = list(client.customers.iter_by_user([sender], limit=1))
    assert sorted(i["external_contact"]["external_userid"] for i in items) == sorted(customers)
    assert paths(calls).count("externalcontact/batch/get_by_user") == len(customers)

    chats = list(client.groups.iter_chats(limit=1))
    assert len(chats) >= 2 and len({c["chat_id"] for c in chats}) == len(chats)
    group = client.groups.get(chats[0]["chat_id"])
    assert group["chat_id"] == chats[0]["chat_id"] and group["member_list"]


def test_users_area(make_wecom):
    client = make_wecom()
    users = client.users.simplelist()
    assert users and all("userid" in u for u in users)
    assert client.users.get(users[0]["userid"])["userid"] == users[0]["userid"]
    assert "dept_user" in client.users.list_id(limit=100)
    with pytest.raises(WeComError) as info:
        client.users.get("no-such-member")
    assert info.value.errcode in (40003, 60111)  # WeCom answers user/get with 60111


def test_contact_way_for_a_member_without_customer_contact_says_why(make_wecom):
    """zhaolei (the demo cook) is outside the customer-contact range: WeCom answers 84074 and
    the error carries words a merchant can act on."""
    client = make_wecom()
    with pytest.raises(WeComError) as caught:
        client.contact_way.add(type=1, scene=2, user=["zhaolei"])
    assert caught.value.errcode == 84074
    assert "客户联系" in caught.value.hint() and "customer-contact" in caught.value.hint("en")
