"""A store's channel codes over the API: the QR, the portal's poster links, the contacts each
brought; another merchant's (or, for a store key, another store's) are not found."""
from __future__ import annotations

import itertools
from urllib.parse import parse_qs, urlsplit

from core.db import db, utcnow
from core.txn import transaction
from merchants.models import Channel, ChannelAdd, Store
from merchants.services import make_state
from tests.api.conftest import auth

PROBLEM = "application/problem+json"
_seq = itertools.count(1)


def make_channel(store: Store, name: str = "门口海报", *, kind: str = "door", active: bool = True,
                 contacts: int = 0) -> int:
    """A channel row as WeCom left it (config and QR), without calling WeCom; its contacts."""
    with transaction(db.session) as session:
        channel = Channel(store_id=store.id, name=name, kind=kind, active=active)
        session.add(channel)
        session.flush()
        n = next(_seq)
        channel.state, channel.config_id = make_state(store.id, channel.id), f"cfg-api-{channel.id}-{n}"
        channel.qr_code = f"https://wework.qpic.cn/wwpic/api-{channel.id}-{n}/0"
        session.add_all([ChannelAdd(channel_id=channel.id, external_userid=f"wm-{n}-{i}", member_userid="zhang",
                                    added_at=utcnow()) for i in range(contacts)])
        return channel.id


def test_a_stores_channels_with_qr_posters_and_contacts(client, tenant):
    store = tenant.shop.store
    door = make_channel(store, contacts=3)
    table = make_channel(store, "桌贴", kind="table")
    retired = make_channel(store, "旧传单", kind="flyer", active=False, contacts=1)
    make_channel(tenant.shop.other_store, "分店门口")
    resp = client.get(f"/api/v1/stores/{store.id}/channels", headers=auth(tenant.token))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert [c["id"] for c in body["data"]] == [door, table, retired] and body["has_more"] is False
    first = body["data"][0]
    assert first["contacts"] == 3 and first["kind"] == "door" and first["active"] is True
    assert first["kind_label"] == "门口海报" and first["qr_code"].startswith("https://wework.qpic.cn/")
    assert [(p["size"], p["format"]) for p in first["posters"]] == [("a5", "png"), ("a5", "pdf"),
                                                                     ("tent", "png"), ("tent", "pdf")]
    url = urlsplit(first["posters"][2]["url"])
    assert url.scheme == "http" and url.netloc  # absolute
    assert url.path == f"/portal/stores/{store.id}/channels/{door}/poster.png" and parse_qs(url.query) == {
        "size": ["tent"]}
    assert body["data"][2]["active"] is False and body["data"][2]["contacts"] == 1
    one = client.get(f"/api/v1/channels/{door}", headers=auth(tenant.store_token))
    assert one.status_code == 200 and one.get_json() == first
    # cursor pages
    page = client.get(f"/api/v1/stores/{store.id}/channels?limit=2", headers=auth(tenant.token)).get_json()
    assert len(page["data"]) == 2 and page["has_more"] is True
    rest = client.get(f"/api/v1/stores/{store.id}/channels?limit=2&starting_after={table}",
                      headers=auth(tenant.token)).get_json()
    assert [c["id"] for c in rest["data"]] == [retired] and rest["has_more"] is False


def test_a_channel_without_its_qr_yet_has_no_posters(client, tenant):
    channel_id = make_channel(tenant.shop.store)
    with transaction(db.session) as session:
        session.get(Channel, channel_id).qr_code = ""
    body = client.get(f"/api/v1/channels/{channel_id}", headers=auth(tenant.token)).get_json()
    assert body["qr_code"] is None and body["posters"] == []


def test_channels_of_others_are_not_found(client, tenant, rival, manager_token):
    theirs = make_channel(rival.shop.store, "湘里门口")
    other_store = make_channel(tenant.shop.other_store, "分店门口")
    assert client.get(f"/api/v1/channels/{theirs}", headers=auth(tenant.token)).status_code == 404
    resp = client.get(f"/api/v1/stores/{rival.shop.store.id}/channels", headers=auth(tenant.token))
    assert resp.status_code == 404 and resp.mimetype == PROBLEM
    # a store key sees its own store's codes only
    assert client.get(f"/api/v1/channels/{other_store}", headers=auth(tenant.store_token)).status_code == 404
    assert client.get(f"/api/v1/stores/{tenant.shop.other_store.id}/channels",
                      headers=auth(tenant.store_token)).status_code == 404
    assert client.get(f"/api/v1/channels/{other_store}", headers=auth(tenant.token)).status_code == 200
    for bad in ("/api/v1/channels/0", "/api/v1/channels/99999999999", "/api/v1/channels/2147483647"):
        resp = client.get(bad, headers=auth(tenant.token))
        assert resp.status_code == 404 and resp.mimetype == PROBLEM, bad
    resp = client.get(f"/api/v1/stores/{tenant.shop.store.id}/channels?limit=0", headers=auth(tenant.token))
    assert resp.status_code == 422 and resp.mimetype == PROBLEM
    assert client.get(f"/api/v1/channels/{theirs}", headers=auth(manager_token)).status_code == 403
