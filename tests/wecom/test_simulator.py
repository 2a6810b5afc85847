"""The WeCom simulator: wire format, errcodes, callbacks, quotas, transfers and fault knobs.

The simulator runs in-process through Flask's test client; callbacks go over real HTTP to a
LiveServer that decrypts them with WeComCrypto, as the app's callback endpoint would.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from defusedxml import ElementTree

from tests.support.servers import LiveServer
from wecom.crypto import WeComCrypto
from wecom.defaults import (
    DEMO_AGENT_ID,
    DEMO_CALLBACK_AES_KEY,
    DEMO_CALLBACK_TOKEN,
    DEMO_CONTACT_SECRET,
    DEMO_CORP_ID,
)
from wecom.simulator import create_simulator_app

CHINA = timezone(timedelta(hours=8))
# Wednesday 11 March 2026, noon in China: mid-week and mid-month, so quota periods don't roll.
START = datetime(2026, 3, 11, 12, 0, tzinfo=CHINA).timestamp()


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Receiver:
    """Collects callback POSTs; answers each with the next status in ``statuses`` (then 200)."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        self.server = LiveServer(self)

    def __call__(self, environ, start_response):
        from urllib.parse import parse_qs

        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length).decode()
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        with self.lock:
            self.posts.append({"query": query, "body": body})
            status = self.statuses.pop(0) if self.statuses else 200
        start_response(f"{status} X", [("Content-Type", "text/plain")])
        return [b""]

    def events(self) -> list[dict[str, str]]:
        """Decrypt every received post (signature checked) into a flat dict of fields."""
        crypto = WeComCrypto(DEMO_CALLBACK_TOKEN, DEMO_CALLBACK_AES_KEY, DEMO_CORP_ID)
        result = []
        for post in self.posts:
            envelope = ElementTree.fromstring(post["body"])
            assert envelope.findtext("ToUserName") == DEMO_CORP_ID
            assert envelope.findtext("AgentID") == DEMO_AGENT_ID
            q = post["query"]
            plain = crypto.decrypt_message(q["msg_signature"], q["timestamp"], q["nonce"],
                                           envelope.findtext("Encrypt"))
            root = ElementTree.fromstring(plain)
            result.append({child.tag: (child.text or "") for child in root})
        return result


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.server.stop()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sim_app(tmp_path, clock, receiver):
    receiver.posts.clear()
    receiver.statuses.clear()
    app = create_simulator_app({
        "INSTANCE_PATH": str(tmp_path),
        "WECOM_SIM_DATABASE_URL": f"sqlite:///{tmp_path / 'sim.db'}",
        "WECOM_SIM_PUBLIC_URL": "http://sim.test",
        "WECOM_SIM_CALLBACK_URL": f"{receiver.server.url}/wecom/callback",
        "WECOM_SIM_AUTO_CONFIRM_SECONDS": 0,
        "WECOM_SIM_CALLBACK_TIMEOUT": 2,
        "WECOM_SIM_CALLBACK_RETRY_DELAY": 0.05,
        "CLOCK": clock,
    })
    yield app
    app.extensions["wecom_sim"].dispatcher.stop()


class Api:
    def __init__(self, app) -> None:
        self.app = app
        self.client = app.test_client()
        self.refresh()

    def refresh(self) -> None:
        self.token = self.get("gettoken", corpid=DEMO_CORP_ID, corpsecret=DEMO_CONTACT_SECRET)["access_token"]

    def get(self, path, **params):
        if path != "gettoken":
            params.setdefault("access_token", self.token)
        response = self.client.get(f"/cgi-bin/{path}", query_string=params)
        assert response.status_code == 200
        return response.get_json()

    def post(self, path, body=None, token=None):
        response = self.client.post(f"/cgi-bin/{path}", query_string={"access_token": token or self.token}, json=body or {})
        assert response.status_code == 200
        return response.get_json()

    def ok(self, path, body=None):
        data = self.post(path, body)
        assert data["errcode"] == 0, data
        return data

    def admin(self, path, body=None, method="POST"):
        response = self.client.open(f"/sim/admin/{path}", method=method, json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def external(self, wechat_user):
        users = self.admin("wechat_users", method="GET")["wechat_users"]
        return next(u["external_userid"] for u in users if u["id"] == wechat_user)

    def contact_way(self, user="zhangwei", state="ch-1"):
        return self.ok("externalcontact/add_contact_way", {"type": 1, "scene": 2, "user": [user], "state": state})

    def callbacks(self):
        return self.admin("callbacks", method="GET")["callbacks"]


@pytest.fixture
def api(sim_app):
    return Api(sim_app)


def wait_delivered(app, timeout=10.0):
    assert app.extensions["wecom_sim"].dispatcher.wait_idle(timeout)


# ---------------------------------------------------------------- tokens

def test_gettoken_errors_and_reuse(api):
    def token_call(**params):
        return api.get("gettoken", **params)

    assert token_call(corpid="wwnope", corpsecret=DEMO_CONTACT_SECRET)["errcode"] == 40013
    assert token_call(corpid=DEMO_CORP_ID, corpsecret="wrong")["errcode"] == 40001
    first = token_call(corpid=DEMO_CORP_ID, corpsecret=DEMO_CONTACT_SECRET)
    assert first["expires_in"] == 7200 and first["access_token"] == api.token  # same token while valid
    bad = api.post("externalcontact/get_follow_user_list", token="nope")
    assert bad["errcode"] == 40014
    assert bad["errmsg"].startswith("invalid access_token, hint: [")
    assert "from ip: " in bad["errmsg"]
    assert bad["errmsg"].endswith("more info at https://open.work.weixin.qq.com/devtool/query?e=40014")
    missing = api.client.get("/cgi-bin/externalcontact/get_follow_user_list").get_json()
    assert missing["errcode"] == 41001


def test_tokens_expire_by_clock_and_by_knob(api, clock):
    assert api.get("externalcontact/get_follow_user_list")["errcode"] == 0
    clock.advance(7201)
    assert api.get("externalcontact/get_follow_user_list")["errcode"] == 42001
    api.token = api.get("gettoken", corpid=DEMO_CORP_ID, corpsecret=DEMO_CONTACT_SECRET)["access_token"]
    assert api.get("externalcontact/get_follow_user_list")["errcode"] == 0
    assert api.admin("tokens/expire")["expired"] == 1
    assert api.get("externalcontact/get_follow_user_list")["errcode"] == 42001


# ---------------------------------------------------------------- contact ways

@pytest.mark.parametrize("body, errcode", [
    ({"scene": 2, "user": ["zhangwei"]}, 41037),
    ({"type": 1, "user": ["zhangwei"]}, 41038),
    ({"type": 3, "scene": 2, "user": ["zhangwei"]}, 41039),
    ({"type": 1, "scene": 5, "user": ["zhangwei"]}, 41040),
    ({"type": 1, "scene": 2, "style": 1, "user": ["zhangwei"]}, 41042),
    ({"type": 1, "scene": 2, "user": ["zhangwei"], "state": "x" * 31}, 40058),
    ({"type": 1, "scene": 2, "user": ["zhangwei"], "remark": "备" * 31}, 40058),
    ({"type": 1, "scene": 2, "user": ["zhangwei", "lina"]}, 40058),
    ({"type": 1, "scene": 2, "user": ["nobody"]}, 40003),
    ({"type": 1, "scene": 2, "user": ["zhaolei"]}, 84074),
    ({"type": 2, "scene": 2, "user": [f"u{i}" for i in range(101)]}, 41041),
])
def test_contact_way_validation(api, body, errcode):
    assert api.post("externalcontact/add_contact_way", body)["errcode"] == errcode


def test_contact_way_round_trip(api):
    created = api.ok("externalcontact/add_contact_way",
                     {"type": 2, "scene": 2, "user": ["zhangwei", "lina"], "state": "store-7", "remark": "门店7"})
    config_id = created["config_id"]
    assert len(config_id) == 32 and created["qr_code"] == f"http://sim.test/qr/{config_id}.png"
    way = api.ok("externalcontact/get_contact_way", {"config_id": config_id})["contact_way"]
    assert way["state"] == "store-7" and way["user"] == ["zhangwei", "lina"] and way["skip_verify"] is True
    api.ok("externalcontact/update_contact_way", {"config_id": config_id, "state": "store-8", "user": ["lina"]})
    way = api.ok("externalcontact/get_contact_way", {"config_id": config_id})["contact_way"]
    assert way["state"] == "store-8" and way["user"] == ["lina"]
    listed = api.ok("externalcontact/list_contact_way", {})["contact_way"]
    assert {"config_id": config_id} in listed
    assert api.post("externalcontact/get_contact_way", {})["errcode"] == 41043
    api.ok("externalcontact/del_contact_way", {"config_id": config_id})
    assert api.post("externalcontact/get_contact_way", {"config_id": config_id})["errcode"] == 41044
    qr = api.client.get(f"/qr/{created['config_id']}.png")
    assert qr.status_code == 404  # deleted


def test_qr_png_encodes_scan_url(api):
    config_id = api.contact_way()["config_id"]
    response = api.client.get(f"/qr/{config_id}.png")
    assert response.status_code == 200 and response.data.startswith(b"\x89PNG")


# ---------------------------------------------------------------- scan, callbacks, welcome

def test_scan_posts_encrypted_callback_with_fresh_welcome_code(api, sim_app, receiver):
    config_id = api.contact_way(state="ch-42")["config_id"]
    result = api.admin("scan", {"wechat_user": "xiaomei", "url": f"http://sim.test/phone/scan/{config_id}"})
    assert result["added"] and result["userid"] == "zhangwei"
    wait_delivered(sim_app)
    (event,) = receiver.events()
    external = api.external("xiaomei")
    assert event["ToUserName"] == DEMO_CORP_ID and event["FromUserName"] == "sys"
    assert event["MsgType"] == "event" and event["Event"] == "change_external_contact"
    assert event["ChangeType"] == "add_external_contact"
    assert event["UserID"] == "zhangwei" and event["ExternalUserID"] == external
    assert event["State"] == "ch-42" and event["WelcomeCode"] == result["welcome_code"]
    # The API sees the new customer with the contact way's state.
    customer = api.get("externalcontact/get", external_userid=external)
    assert customer["follow_user"][0]["state"] == "ch-42"
    assert external in api.get("externalcontact/list", userid="zhangwei")["external_userid"]
    # The welcome code works once.
    welcome = {"welcome_code": event["WelcomeCode"], "text": {"content": "欢迎光临！"},
               "attachments": [{"msgtype": "link", "link": {"title": "领券", "url": "http://app.test/c/1"}}]}
    api.ok("externalcontact/send_welcome_msg", welcome)
    assert api.post("externalcontact/send_welcome_msg", welcome)["errcode"] == 41051
    inbox = api.admin("inbox/xiaomei", method="GET")["messages"]
    assert [m["msgtype"] for m in inbox] == ["text", "link"]
    assert inbox[1]["link"]["url"] == "http://app.test/c/1" and inbox[0]["from"] == "zhangwei"
    # Scanning again while already friends changes nothing.
    assert api.admin("scan", {"wechat_user": "xiaomei", "config_id": config_id})["added"] is False


def test_welcome_code_expires(api, clock):
    config_id = api.contact_way()["config_id"]
    code = api.admin("scan", {"wechat_user": "xiaomei", "config_id": config_id})["welcome_code"]
    clock.advance(21)
    result = api.post("externalcontact/send_welcome_msg", {"welcome_code": code, "text": {"content": "hi"}})
    assert result["errcode"] == 41050
    assert api.post("externalcontact/send_welcome_msg", {"text": {"content": "hi"}})["errcode"] == 41049


def test_a_crowd_of_new_diners_and_the_welcome_codes_record(api, clock):
    """Load tests make diners by the hundred and read WeCom's side of the 20 s window."""
    made = api.admin("wechat_users", {"handles": ["crowd-1", "crowd-2", "xiaomei"]})
    assert made["created"] == 2 and set(made["external_userids"]) == {"crowd-1", "crowd-2", "xiaomei"}
    assert api.external("crowd-1") == made["external_userids"]["crowd-1"]
    assert api.admin("wechat_users", {"handles": ["crowd-1"]})["created"] == 0  # idempotent
    config_id = api.contact_way()["config_id"]
    start = clock.now
    used = api.admin("scan", {"wechat_user": "crowd-1", "config_id": config_id})["welcome_code"]
    clock.advance(2.5)
    api.ok("externalcontact/send_welcome_msg", {"welcome_code": used, "text": {"content": "hi"}})
    unused = api.admin("scan", {"wechat_user": "crowd-2", "config_id": config_id})["welcome_code"]
    codes = {c["code"]: c for c in api.admin(f"welcome_codes?since={start}", method="GET")["welcome_codes"]}
    assert codes[used]["used_at"] - codes[used]["created_at"] == pytest.approx(2.5)
    assert codes[unused]["used_at"] is None and codes[unused]["external_userid"] == api.external("crowd-2")
    for bad in ({}, {"handles": []}, {"handles": ["x" * 65]}, {"handles": ["a"] * 10_001}):
        response = api.client.post("/sim/admin/wechat_users", json=bad)
        assert response.status_code == 400 and response.get_json()["ok"] is False


def test_console_welcome_means_no_welcome_code(api, sim_app, receiver):
    config_id = api.contact_way()["config_id"]
    api.admin(f"contact_ways/{config_id}/welcome", {"text": "店里配置的欢迎语"})
    assert api.admin("scan", {"wechat_user": "qiqi", "config_id": config_id})["welcome_code"] is None
    wait_delivered(sim_app)
    assert "WelcomeCode" not in receiver.events()[0]
    assert api.admin("inbox/qiqi", method="GET")["messages"][0]["text"]["content"] == "店里配置的欢迎语"


def test_user_actions_emit_callbacks(api, sim_app, receiver):
    external = api.external("wangxiaoming")
    api.admin("delete_contact", {"wechat_user": "wangxiaoming", "userid": "zhangwei"})
    api.admin("delete_contact", {"wechat_user": "lixue", "userid": "zhangwei", "by": "member"})
    api.admin("edit_contact", {"wechat_user": "zhoujie", "userid": "zhangwei", "remark": "老顾客"})
    chat_id = api.ok("externalcontact/groupchat/list", {"owner_filter": {"userid_list": ["lina"]}})[
        "group_chat_list"][0]["chat_id"]
    api.admin(f"groups/{chat_id}/join", {"wechat_user": "wangxiaoming"})
    api.admin(f"groups/{chat_id}/leave", {"wechat_user": "wangxiaoming"})
    created = api.admin("console_tags", {"action": "create", "group_name": "口味", "tag": [{"name": "辣"}]})
    wait_delivered(sim_app)
    events = receiver.events()
    assert [(e["Event"], e["ChangeType"]) for e in events] == [
        ("change_external_contact", "del_follow_user"),
        ("change_external_contact", "del_external_contact"),
        ("change_external_contact", "edit_external_contact"),
        ("change_external_chat", "update"),
        ("change_external_chat", "update"),
        ("change_external_tag", "create"),
    ]
    assert events[0]["ExternalUserID"] == external
    assert events[3]["UpdateDetail"] == "add_member" and events[3]["ChatId"] == chat_id
    assert events[4]["UpdateDetail"] == "del_member" and events[4]["MemChangeCnt"] == "1"
    assert events[5]["Id"] == created["result"]["tag"][0]["id"] and events[5]["TagType"] == "tag"
    # One-way deletion still answers; a member deletion does not.
    assert api.get("externalcontact/get", external_userid=external)["errcode"] == 0
    assert api.get("externalcontact/get", external_userid=api.external("lixue"))["errcode"] == 84061


def test_callback_retried_until_200(api, sim_app, receiver):
    receiver.statuses[:] = [500, 502]
    config_id = api.contact_way()["config_id"]
    api.admin("scan", {"wechat_user": "beibei", "config_id": config_id})
    wait_delivered(sim_app)
    assert len(receiver.posts) == 3
    assert receiver.posts[0]["body"] == receiver.posts[2]["body"]  # the same request, re-sent
    (logged,) = api.callbacks()
    assert logged["status"] == "delivered" and logged["attempts"] == 3


def test_api_writes_emit_no_callbacks(api, sim_app, receiver):
    external = api.external("wangxiaoming")
    api.contact_way()
    group = api.ok("externalcontact/add_corp_tag", {"group_name": "偏好", "tag": [{"name": "火锅"}, "烧烤"]})
    tag_id = group["tag_group"]["tag"][0]["id"]
    api.ok("externalcontact/edit_corp_tag", {"id": tag_id, "name": "川味火锅"})
    api.ok("externalcontact/mark_tag", {"userid": "zhangwei", "external_userid": external, "add_tag": [tag_id]})
    api.ok("externalcontact/add_msg_template", {"external_userid": [external], "text": {"content": "周末特惠"}})
    api.ok("externalcontact/transfer_customer", {"handover_userid": "zhangwei", "takeover_userid": "lina",
                                                 "external_userid": [api.external("lixue")]})
    api.ok("externalcontact/del_corp_tag", {"tag_id": [tag_id]})
    time.sleep(0.2)
    assert api.callbacks() == [] and receiver.posts == []


# ---------------------------------------------------------------- tags

def test_tags_and_mark_tag_errors(api):
    external = api.external("wangxiaoming")
    group = api.ok("externalcontact/add_corp_tag", {"group_name": "偏好", "tag": [{"name": "火锅"}]})["tag_group"]
    tag_id = group["tag"][0]["id"]
    assert tag_id.startswith("et") and group["group_id"].startswith("et")
    assert api.post("externalcontact/mark_tag", {"userid": "zhangwei", "external_userid": external,
                                                 "add_tag": ["etnope"]})["errcode"] == 40068
    assert api.post("externalcontact/mark_tag", {"userid": "lina", "external_userid": external,
                                                 "add_tag": [tag_id]})["errcode"] == 84061
    api.ok("externalcontact/mark_tag", {"userid": "zhangwei", "external_userid": external, "add_tag": [tag_id]})
    tags = api.get("externalcontact/get", external_userid=external)["follow_user"][0]["tags"]
    assert tags == [{"group_name": "偏好", "tag_name": "火锅", "type": 1, "tag_id": tag_id}]
    batch = api.ok("externalcontact/batch/get_by_user", {"userid_list": ["zhangwei"], "limit": 2})
    assert len(batch["external_contact_list"]) == 2 and batch["next_cursor"]
    rest = api.ok("externalcontact/batch/get_by_user", {"userid_list": ["zhangwei"], "cursor": batch["next_cursor"]})
    assert len(rest["external_contact_list"]) == 1 and rest["next_cursor"] == ""
    assert api.post("externalcontact/batch/get_by_user", {"userid_list": ["zhangwei"], "limit": 101})["errcode"] == 40058


# ---------------------------------------------------------------- mass messages

def test_mass_message_lifecycle(api):
    customers = api.get("externalcontact/list", userid="zhangwei")["external_userid"]
    stranger = api.external("huahua")
    sent = api.ok("externalcontact/add_msg_template",
                  {"external_userid": [*customers, stranger], "text": {"content": "新店开业"}})
    msgid = sent["msgid"]
    assert msgid.startswith("msg") and sent["fail_list"] == [stranger]
    assert api.ok("externalcontact/get_groupmsg_task", {"msgid": msgid})["task_list"] == [
        {"userid": "zhangwei", "status": 0}]
    for _ in range(3):
        api.ok("externalcontact/remind_groupmsg_send", {"msgid": msgid})
    assert api.post("externalcontact/remind_groupmsg_send", {"msgid": msgid})["errcode"] == 41094
    api.admin("delete_contact", {"wechat_user": "zhoujie", "userid": "zhangwei"})  # one is no longer a contact
    api.admin(f"confirm/{msgid}")
    task = api.ok("externalcontact/get_groupmsg_task", {"msgid": msgid})["task_list"][0]
    assert task["status"] == 2 and task["send_time"] == int(START)
    results = api.ok("externalcontact/get_groupmsg_send_result", {"msgid": msgid, "userid": "zhangwei"})["send_list"]
    status = {r["external_userid"]: r["status"] for r in results}
    assert status[api.external("zhoujie")] == 2 and status[api.external("wangxiaoming")] == 1
    assert api.admin("inbox/wangxiaoming", method="GET")["messages"][-1]["text"]["content"] == "新店开业"
    listed = api.ok("externalcontact/get_groupmsg_list_v2",
                    {"chat_type": "single", "start_time": int(START) - 10, "end_time": int(START) + 10})
    assert [m["msgid"] for m in listed["group_msg_list"]] == [msgid]
    other = api.ok("externalcontact/add_msg_template", {"sender": "lina", "text": {"content": "x"}})["msgid"]
    api.ok("externalcontact/cancel_groupmsg_send", {"msgid": other})
    assert api.post("externalcontact/cancel_groupmsg_send", {"msgid": other})["errcode"] == 41093
    assert api.post("externalcontact/add_msg_template", {"external_userid": [stranger],
                                                         "text": {"content": "x"}})["errcode"] == 41048


def test_mass_message_auto_confirm_and_group_chat(api, clock):
    api.admin("config", {"auto_confirm_seconds": 30})
    chat_id = api.ok("externalcontact/groupchat/get", {"chat_id": api.ok(
        "externalcontact/groupchat/list", {"owner_filter": {"userid_list": ["zhangwei"]}})["group_chat_list"][0][
        "chat_id"]})["group_chat"]["chat_id"]
    msgid = api.ok("externalcontact/add_msg_template", {"chat_type": "group", "sender": "zhangwei",
                                                        "text": {"content": "群福利"}})["msgid"]
    assert api.ok("externalcontact/get_groupmsg_task", {"msgid": msgid})["task_list"][0]["status"] == 0
    clock.advance(31)
    assert api.ok("externalcontact/get_groupmsg_task", {"msgid": msgid})["task_list"][0]["status"] == 2
    result = api.ok("externalcontact/get_groupmsg_send_result", {"msgid": msgid, "userid": "zhangwei"})["send_list"]
    assert result == [{"userid": "zhangwei", "status": 1, "chat_id": chat_id, "send_time": int(clock.now)}]
    assert api.admin("inbox/maomao", method="GET")["messages"][-1]["chat_id"] == chat_id


@pytest.mark.parametrize("rule, limit", [("days/month", 31), ("7/week", 7), ("1/day", 1), ("4/month", 4)])
def test_mass_message_quota_rules(api, clock, rule, limit):
    api.admin("config", {"quota_rule": rule})
    external = api.external("wangxiaoming")

    def send_once():
        msgid = api.ok("externalcontact/add_msg_template",
                       {"external_userid": [external], "text": {"content": "券"}})["msgid"]
        api.admin(f"confirm/{msgid}")
        result = api.ok("externalcontact/get_groupmsg_send_result", {"msgid": msgid, "userid": "zhangwei"})
        return result["send_list"][0]["status"]

    assert [send_once() for _ in range(limit)] == [1] * limit
    assert send_once() == 3
    # The next period starts afresh.
    clock.advance({"days/month": 21, "7/week": 6, "1/day": 1, "4/month": 21}[rule] * 86400)
    api.refresh()
    assert send_once() == 1


# ---------------------------------------------------------------- transfers and groups

def test_onjob_transfer_waits_then_completes(api, clock, sim_app, receiver):
    api.admin("config", {"transfer_seconds": 3600})
    moving, refusing = api.external("wangxiaoming"), api.external("lixue")
    started = api.ok("externalcontact/transfer_customer", {
        "handover_userid": "zhangwei", "takeover_userid": "lina", "external_userid": [moving, refusing, "wmnope"]})
    assert started["customer"] == [{"external_userid": moving, "errcode": 0},
                                   {"external_userid": refusing, "errcode": 0},
                                   {"external_userid": "wmnope", "errcode": 40096}]
    query = {"handover_userid": "zhangwei", "takeover_userid": "lina"}
    assert [c["status"] for c in api.ok("externalcontact/transfer_result", query)["customer"]] == [2, 2]
    api.admin("transfers/refuse", {"external_userid": refusing})
    clock.advance(3601)
    result = api.ok("externalcontact/transfer_result", query)["customer"]
    assert [c["status"] for c in result] == [1, 3] and result[0]["takeover_time"] == int(clock.now)
    assert moving in api.get("externalcontact/list", userid="lina")["external_userid"]
    assert moving not in api.get("externalcontact/list", userid="zhangwei")["external_userid"]
    wait_delivered(sim_app)
    changes = [(e["ChangeType"], e.get("FailReason") or e.get("Source", "")) for e in receiver.events()]
    assert changes == [("transfer_fail", "customer_refused"), ("del_external_contact", "DELETE_BY_TRANSFER"),
                       ("add_external_contact", "")]


def test_resigned_member_customers_and_groups(api, clock):
    assert api.post("externalcontact/resigned/transfer_customer", {
        "handover_userid": "wangfang", "takeover_userid": "lina",
        "external_userid": [api.external("sunhao")]})["errcode"] == 40097
    api.admin("members/wangfang/resign")
    api.admin("members/zhangwei/resign")
    info = api.ok("externalcontact/get_unassigned_list", {})["info"]
    assert {i["handover_userid"] for i in info} == {"wangfang", "zhangwei"} and len(info) == 4
    api.ok("externalcontact/resigned/transfer_customer", {
        "handover_userid": "wangfang", "takeover_userid": "lina", "external_userid": [api.external("sunhao")]})
    assert len(api.ok("externalcontact/get_unassigned_list", {})["info"]) == 3
    groups = api.ok("externalcontact/groupchat/list", {"status_filter": 1})["group_chat_list"]
    assert len(groups) == 1
    moved = api.ok("externalcontact/groupchat/transfer", {"chat_id_list": [groups[0]["chat_id"], "wrnope"],
                                                          "new_owner": "lina"})
    assert [f["chat_id"] for f in moved["failed_chat_list"]] == ["wrnope"]
    assert api.ok("externalcontact/groupchat/get", {"chat_id": groups[0]["chat_id"]})["group_chat"]["owner"] == "lina"


# ---------------------------------------------------------------- faults and admin

def test_fault_knobs(api):
    api.admin("faults", {"errcode": 45009, "times": 2, "path": "externalcontact/add_contact_way"})
    assert api.get("externalcontact/get_follow_user_list")["errcode"] == 0  # other paths unaffected
    codes = [api.post("externalcontact/add_contact_way", {"type": 1, "scene": 2, "user": ["lina"]})["errcode"]
             for _ in range(3)]
    assert codes == [45009, 45009, 0]
    api.admin("faults", {"http_status": 502, "times": 1})
    assert api.client.get("/cgi-bin/externalcontact/get_follow_user_list").status_code == 502
    api.admin("faults", {"latency_ms": 300, "times": 1})
    began = time.monotonic()
    assert api.get("externalcontact/get_follow_user_list")["errcode"] == 0
    assert time.monotonic() - began >= 0.3
    api.admin("faults", {"errcode": -1, "times": 5})
    assert api.get("externalcontact/get_follow_user_list")["errcode"] == -1
    api.admin("faults", method="DELETE")
    assert api.get("externalcontact/get_follow_user_list")["errcode"] == 0


def test_faults_from_environment(tmp_path, clock):
    app = create_simulator_app({
        "WECOM_SIM_DATABASE_URL": f"sqlite:///{tmp_path / 'env.db'}",
        "INSTANCE_PATH": str(tmp_path),
        "WECOM_SIM_FAULTS": '{"errcode": 45033, "times": 1, "path": "gettoken"}',
        "WECOM_SIM_CALLBACK_URL": "",
        "CLOCK": clock,
    })
    client = app.test_client()
    params = {"corpid": DEMO_CORP_ID, "corpsecret": DEMO_CONTACT_SECRET}
    assert client.get("/cgi-bin/gettoken", query_string=params).get_json()["errcode"] == 45033
    assert client.get("/cgi-bin/gettoken", query_string=params).get_json()["errcode"] == 0


def test_reset_reseeds_and_config(api):
    api.contact_way()
    api.admin("config", {"token_ttl": 60, "quota_rule": "1/day"})
    config = api.admin("config", method="GET")
    assert config["token_ttl"] == 60 and config["quota_rule"] == "1/day"
    assert api.client.post("/sim/admin/config", json={"quota_rule": "9/year"}).status_code == 400
    before = api.admin("wechat_users", method="GET")
    api.admin("reset")
    assert api.admin("wechat_users", method="GET") == before  # same seed ids
    assert api.get("externalcontact/get_follow_user_list")["errcode"] == 40014  # tokens are gone too
    api.refresh()
    assert api.ok("externalcontact/list_contact_way", {})["contact_way"] == []


def test_pages_render(api):
    config_id = api.contact_way()["config_id"]
    api.admin("scan", {"wechat_user": "xiaomei", "config_id": config_id})
    for path in ["/", "/phone/", "/phone/xiaomei", f"/phone/scan/{config_id}", "/console/", "/console/zhangwei",
                 "/avatar/wechat/xiaomei.svg"]:
        response = api.client.get(path)
        assert response.status_code == 200, path
    assert "小美" in api.client.get("/phone/xiaomei").get_data(as_text=True)
    response = api.client.post(f"/phone/scan/{config_id}", data={"as": "ningning"})
    assert response.status_code == 302
    assert api.external("ningning") in api.get("externalcontact/list", userid="zhangwei")["external_userid"]
    html = api.client.get("/sim/admin/callbacks", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "add_external_contact" in html


# ---------------------------------------------------------------- the phone for new users (issue 10)


def test_phone_tiles_name_the_store_and_the_flash_names_the_member(api):
    api.ok("externalcontact/add_contact_way",
           {"type": 1, "scene": 2, "user": ["zhangwei"], "state": "s1-c2", "remark": "渝见老火锅·门口海报"})
    page = api.client.get("/phone/xiaomei").get_data(as_text=True)
    assert '<span class="tile-name">渝见老火锅·门口海报</span>' in page
    config_id = api.ok("externalcontact/list_contact_way", {})["contact_way"][0]["config_id"]
    response = api.client.post("/phone/xiaomei/scan", data={"code": config_id}, follow_redirects=True)
    members = {m["userid"]: m["name"] for m in api.admin("members", method="GET")["members"]}
    text = response.get_data(as_text=True)
    assert f"已添加 {members['zhangwei']} 为好友" in text and "已添加 zhangwei" not in text


def test_phone_chat_updates_without_a_reload(api, clock):
    config_id = api.contact_way()["config_id"]
    code = api.admin("scan", {"wechat_user": "xiaomei", "config_id": config_id})["welcome_code"]
    page = api.client.get("/phone/xiaomei").get_data(as_text=True)
    assert 'data-src="/phone/xiaomei/live"' in page and "setInterval(tick" in page  # the page polls
    before = api.client.get("/phone/xiaomei/live")
    assert before.status_code == 200 and "欢迎光临渝见" not in before.get_data(as_text=True)
    api.ok("externalcontact/send_welcome_msg", {"welcome_code": code, "text": {"content": "欢迎光临渝见"}})
    after = api.client.get("/phone/xiaomei/live").get_data(as_text=True)
    assert "欢迎光临渝见" in after and 'data-key="m-zhangwei"' in after
    assert api.client.get("/phone/nobody/live").status_code == 404
