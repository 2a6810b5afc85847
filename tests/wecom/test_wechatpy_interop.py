"""A third-party SDK (wechatpy 1.8.18) talks to the simulator: evidence that the simulator
speaks WeCom's wire format, not just our client's dialect."""
from __future__ import annotations

import uuid

import pytest
from wechatpy.enterprise import WeChatClient


@pytest.fixture
def wechatpy_client(sim):
    class SimWeChatClient(WeChatClient):
        API_BASE_URL = sim.api_base

        def fetch_access_token(self):  # wechatpy has the real host built in here
            return self._fetch_access_token(
                url=f"{sim.api_base}gettoken", params={"corpid": self.corp_id, "corpsecret": self.secret}
            )

    client = SimWeChatClient(sim.corp_id, sim.secret, timeout=10)
    yield client
    client._http.close()


def ok(data: dict) -> dict:
    assert data["errcode"] == 0, data
    return data


def test_wechatpy_external_contact_round_trip(wechatpy_client, sim):
    ec = wechatpy_client.external_contact
    members = ok(ec.get_follow_user_list())["follow_user"]
    member = members[0]
    state = f"wp-{uuid.uuid4().hex[:8]}"

    way = ok(ec.add_contact_way(type=1, scene=2, remark="wechatpy 渠道", state=state, user=[member]))
    assert way["config_id"] and way["qr_code"].startswith(sim.url)

    got = ok(ec.get_contact_way(way["config_id"]))["contact_way"]
    assert got["state"] == state and got["user"] == [member]

    external_userid = sim.add_customer(way["config_id"])
    contact = ok(ec.get(external_userid))
    assert contact["external_contact"]["external_userid"] == external_userid
    assert contact["external_contact"]["name"]
    follow = next(f for f in contact["follow_user"] if f["userid"] == member)
    assert follow["state"] == state and "createtime" in follow

    group = ok(ec.add_corp_tag(None, f"口味-{state}", None, [{"name": "川菜"}, {"name": "粤菜"}]))["tag_group"]
    assert group["group_id"] and {t["name"] for t in group["tag"]} == {"川菜", "粤菜"}
    listed = ok(ec.get_corp_tag_list())["tag_group"]
    assert any(g["group_id"] == group["group_id"] for g in listed)
    tag_id = group["tag"][0]["id"]

    ok(ec.mark_tag(member, external_userid, add_tag=[tag_id]))
    tags = next(f for f in ok(ec.get(external_userid))["follow_user"] if f["userid"] == member)["tags"]
    assert any(t.get("tag_id") == tag_id for t in tags)

    sent = ok(
        ec.add_msg_template(
            {"external_userid": [external_userid], "sender": member, "text": {"content": "本周川菜八折"}}
        )
    )
    assert sent["msgid"] and isinstance(sent.get("fail_list", []), list)
