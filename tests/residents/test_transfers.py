"""Staff leaving (离职继承) and moving (在职继承).

The first half runs on both databases without WeCom: tenant scope, the rules of a handover
request, the transfer_fail handler. The second half runs over real HTTP against the WeCom
simulator (``stack``: the live app and simulator pointed at each other, real RQ jobs): a
resigned member's 250 customers in three batches, an on-job transfer a diner refuses, and a
resigned transfer sent before the member had left, then retried.
"""
from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from accounts.models import User
from core.db import db
from core.extensions import QUEUE_DEFAULT, get_queue
from core.txn import transaction
from marketplace.cli import main
from merchants.models import Member, ReviewStatus, Store, StoreMember
from residents import transfers as svc
from residents.models import (
    ContactRelationship,
    MemberTransfer,
    RelationshipStatus,
    Resident,
    TransferItem,
    TransferItemStatus,
    TransferKind,
    TransferStatus,
)
from tests.support.merchants import (  # noqa: F401  (fixtures)
    FreshContextClient,
    client,
    csrf_token,
    fast_hashing,
    login,
    make_manager,
    make_merchant,
    make_regions,
    post_form,
)
from wecom.events import registry

# --------------------------------------------------------------------------- helpers


def add_member(userid: str, name: str = "", *, can_hold: bool = True) -> int:
    with transaction(db.session):
        member = Member(userid=userid, name=name or userid, can_hold_customers=can_hold, active=True)
        db.session.add(member)
        db.session.flush()
        return member.id


def serve(store_id: int, member_id: int, **kw) -> None:
    with transaction(db.session):
        db.session.add(StoreMember(store_id=store_id, member_id=member_id, **kw))


def add_customers(member_id: int, store_id: int | None, people: list[tuple[str, str]], channel_id: int | None = None) -> list[int]:
    """Residents (external_userid, name) with an open relationship to the member: what the
    add events left behind."""
    with transaction(db.session):
        ids = []
        for ext, name in people:
            resident = Resident(external_userid=ext, name=name)
            db.session.add(resident)
            db.session.flush()
            db.session.add(
                ContactRelationship(resident_id=resident.id, member_id=member_id, store_id=store_id, channel_id=channel_id)
            )
            ids.append(resident.id)
        return ids


def start(owner_username: str, store_id: int, member_id: int, takeover_id: int, kind=TransferKind.on_job,
          wecom_customers=None) -> int:
    """A transfer created through the service (what the view does after asking WeCom)."""
    with transaction(db.session):
        user = db.session.scalar(select(User).where(User.username == owner_username))
        store, member = svc.get_staff_for(db.session, user, store_id, member_id)
        started = svc.start_transfer(
            db.session, user, store=store, member=member, takeover_id=takeover_id, kind=kind,
            wecom_customers=wecom_customers or [],
        )
        return started.transfer.id


def number(page: str, testid: str) -> int:
    match = re.search(rf'data-testid="{re.escape(testid)}">(\d+)<', page)
    assert match, f"no {testid} on the page"
    return int(match.group(1))


@pytest.fixture
def two_owners(app):
    ids = make_regions()
    _, mine_merchant, mine = make_merchant("mine_owner", ids["徐家汇"], name="我的小馆")
    _, their_merchant, theirs = make_merchant("their_owner", ids["南京西路"], name="别家秘制牛蛙")
    m = {
        "a1": add_member("a1", "张店员"), "a2": add_member("a2", "李店员"), "a3": add_member("a3", "王店员"),
        "b1": add_member("b1", "赵别家"), "b2": add_member("b2", "钱别家"),
        "nocontact": add_member("nocontact", "孙厨师", can_hold=False),
    }
    for key in ("a1", "a2", "a3", "nocontact"):
        serve(mine, m[key])
    for key in ("b1", "b2"):
        serve(theirs, m[key])
    return {"ids": ids, "mine": mine, "theirs": theirs, "m": m, "mine_merchant": mine_merchant}


# --------------------------------------------------------------------------- without WeCom


def test_another_owners_members_and_transfers_answer_404(client, two_owners):
    t = two_owners
    add_customers(t["m"]["b1"], t["theirs"], [("wm_their_1", "别家顾客")])
    theirs_transfer = start("their_owner", t["theirs"], t["m"]["b1"], t["m"]["b2"])

    login(client, "mine_owner")
    token = csrf_token(client, "/portal/transfers/")
    form = {"csrf_token": token, "kind": "on_job", "takeover": str(t["m"]["a2"])}
    for url in (
        f"/portal/transfers/new/{t['theirs']}/{t['m']['b1']}",  # their store, their member
        f"/portal/transfers/new/{t['mine']}/{t['m']['b1']}",  # my store, a member who does not serve it
    ):
        assert client.get(url).status_code == 404, url
        assert client.post(url, data=form).status_code == 404, url
    for method, url in (
        ("GET", f"/portal/transfers/{theirs_transfer}"),
        ("POST", f"/portal/transfers/{theirs_transfer}/refresh"),
        ("POST", f"/portal/transfers/{theirs_transfer}/retry"),
    ):
        resp = client.open(url, method=method, data={"csrf_token": token} if method == "POST" else None)
        assert resp.status_code == 404, url
        assert "赵别家" not in resp.get_data(as_text=True)
    index = client.get("/portal/transfers/").get_data(as_text=True)
    assert "张店员" in index and "赵别家" not in index and "钱别家" not in index
    assert client.get(f"/portal/transfers/?store_id={t['theirs']}").status_code == 404
    assert db.session.scalar(select(func.count()).select_from(MemberTransfer)) == 1  # only theirs
    assert db.session.get(MemberTransfer, theirs_transfer).status == TransferStatus.running


def test_cashiers_and_other_regions_cannot_see_transfers(client, two_owners):
    t = two_owners
    start("their_owner", t["theirs"], t["m"]["b1"], t["m"]["b2"])
    make_manager("xuhui_manager", [t["ids"]["徐汇区"]])  # 徐家汇 is mine; 南京西路 is theirs
    login(client, "xuhui_manager")
    index = client.get("/portal/transfers/")
    assert index.status_code == 200
    page = index.get_data(as_text=True)
    assert "张店员" in page and "赵别家" not in page
    their = db.session.scalar(select(MemberTransfer.id))
    assert client.get(f"/portal/transfers/{their}").status_code == 404


def test_the_colleague_must_serve_the_same_merchant_and_hold_customers(client, two_owners):
    t, m = two_owners, two_owners["m"]
    serve(t["mine"], add_member("leaving_too", "周要走"), leaving=True)
    login(client, "mine_owner")
    url = f"/portal/transfers/new/{t['mine']}/{m['a1']}"
    page = client.get(url).get_data(as_text=True)
    assert "李店员" in page and "王店员" in page
    for name in ("赵别家", "孙厨师", "周要走", "张店员（a1）"):  # other merchant, no customer contact, leaving, self
        assert name not in page
    for takeover in (m["b1"], m["nocontact"], m["a1"], 0):
        resp = post_form(client, url, {"kind": "on_job", "takeover": str(takeover)})
        assert resp.status_code == 400, takeover
    long_message = post_form(client, url, {"kind": "on_job", "takeover": str(m["a2"]), "success_msg": "好" * 201})
    assert long_message.status_code == 400 and "200" in long_message.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(MemberTransfer)) == 0
    assert not db.session.scalar(select(StoreMember.leaving).where(StoreMember.member_id == m["a1"]))


def test_start_collects_the_merchants_customers_in_batches_and_marks_the_member_leaving(app, two_owners):
    t, m = two_owners, two_owners["m"]
    with transaction(db.session):  # a second store of mine, and a store of theirs the member also serves
        second = Store(merchant_id=t["mine_merchant"], name="我的小馆二店", address="x", circle_id=t["ids"]["田林"],
                       cuisines=["sichuan"], status=ReviewStatus.approved)
        db.session.add(second)
        db.session.flush()
        second_id = second.id
    serve(second_id, m["a1"])
    serve(t["theirs"], m["a1"])
    people = [(f"wm_mine_{n:03d}", f"顾客{n}") for n in range(150)]
    add_customers(m["a1"], t["mine"], people[:120])
    add_customers(m["a1"], second_id, people[120:])
    add_customers(m["a1"], t["theirs"], [("wm_theirs_1", "别家的顾客")])
    # a1 also serves theirs, so only customers known at my stores move: WeCom still lists
    # one whose relationship at my second store we closed (a lost event)
    [lost] = add_customers(m["a1"], second_id, [("wm_only_in_wecom", "失联顾客")])
    with transaction(db.session):
        db.session.scalar(select(ContactRelationship).where(ContactRelationship.resident_id == lost)).status = (
            RelationshipStatus.closed
        )
    # WeCom lists that one and the other merchant's customer
    transfer_id = start("mine_owner", t["mine"], m["a1"], m["a2"], kind=TransferKind.resigned,
                        wecom_customers=["wm_only_in_wecom", "wm_theirs_1", people[0][0]])
    transfer = db.session.get(MemberTransfer, transfer_id)
    items = db.session.scalars(select(TransferItem).where(TransferItem.transfer_id == transfer_id)).all()
    assert transfer.total == len(items) == 151
    assert {i.external_userid for i in items} == {p[0] for p in people} | {"wm_only_in_wecom"}
    assert sorted(func_count(items).items()) == [(1, 100), (2, 51)]
    assert transfer.merchant_id == t["mine_merchant"] and transfer.status == TransferStatus.running
    leaving = dict(db.session.execute(
        select(StoreMember.store_id, StoreMember.leaving).where(StoreMember.member_id == m["a1"])
    ).all())
    assert leaving == {t["mine"]: True, second_id: True, t["theirs"]: False}
    with pytest.raises(svc.TransferError):  # one running transfer per member
        start("mine_owner", t["mine"], m["a1"], m["a3"])


def func_count(items) -> dict[int, int]:
    counts: dict[int, int] = {}
    for item in items:
        counts[item.batch] = counts.get(item.batch, 0) + 1
    return counts


def test_transfer_fail_callback_marks_the_item_refused(app, two_owners):
    t, m = two_owners, two_owners["m"]
    add_customers(m["a1"], t["mine"], [("wm_refuser", "张三"), ("wm_limited", "李四")])
    transfer_id = start("mine_owner", t["mine"], m["a1"], m["a2"])
    with transaction(db.session):
        for item in db.session.scalars(select(TransferItem).where(TransferItem.transfer_id == transfer_id)):
            item.status = TransferItemStatus.waiting
        db.session.get(MemberTransfer, transfer_id).groups_sent_at = db.session.get(MemberTransfer, transfer_id).created_at
    base = {"Event": "change_external_contact", "ChangeType": "transfer_fail", "UserID": "a2"}
    assert registry.dispatch({**base, "ExternalUserID": "wm_refuser", "FailReason": "customer_refused"})
    registry.dispatch({**base, "ExternalUserID": "wm_refuser", "FailReason": "customer_refused"})  # redelivered
    registry.dispatch({**base, "ExternalUserID": "wm_limited", "UserID": "someone_else", "FailReason": "customer_refused"})
    db.session.expire_all()
    items = {i.external_userid: i for i in db.session.scalars(select(TransferItem))}
    assert (items["wm_refuser"].status, items["wm_refuser"].errcode) == (TransferItemStatus.refused, None)
    assert items["wm_limited"].status == TransferItemStatus.waiting  # not this takeover's item
    registry.dispatch({**base, "ExternalUserID": "wm_limited", "FailReason": "customer_limit_exceed"})
    db.session.expire_all()
    assert (db.session.get(TransferItem, items["wm_limited"].id).status,
            db.session.get(TransferItem, items["wm_limited"].id).errcode) == (TransferItemStatus.refused, 40099)
    # every item answered and no groups left: the transfer is over, refusals are not failures
    assert db.session.get(MemberTransfer, transfer_id).status == TransferStatus.done
    # the refusing diners still belong to the member who was leaving
    open_with = db.session.scalars(
        select(ContactRelationship.member_id).where(ContactRelationship.status == RelationshipStatus.open)
    ).all()
    assert open_with == [m["a1"], m["a1"]]


def test_a_storeless_add_event_that_came_first_takes_the_old_store(app, two_owners):
    t, m = two_owners, two_owners["m"]
    [resident] = add_customers(m["a1"], t["mine"], [("wm_early", "早到")])
    transfer_id = start("mine_owner", t["mine"], m["a1"], m["a2"], kind=TransferKind.resigned)
    with transaction(db.session):
        db.session.scalar(select(TransferItem)).status = TransferItemStatus.waiting
        db.session.get(MemberTransfer, transfer_id).groups_sent_at = db.session.get(MemberTransfer, transfer_id).created_at
    # WeCom's add event for the colleague (no state) was handled before our poll saw "done"
    with transaction(db.session):
        db.session.add(ContactRelationship(resident_id=resident, member_id=m["a2"], store_id=None))
    for _ in range(2):  # a second poll with the same answer changes nothing
        with transaction(db.session):
            transfer = db.session.get(MemberTransfer, transfer_id)
            svc.apply_results(db.session, transfer, {"wm_early": {"external_userid": "wm_early", "status": 1}})
            svc.maybe_finish(db.session, transfer)
    db.session.expire_all()
    rows = db.session.execute(
        select(ContactRelationship.member_id, ContactRelationship.store_id, ContactRelationship.status,
               ContactRelationship.close_reason).order_by(ContactRelationship.id)
    ).all()
    assert rows == [
        (m["a1"], t["mine"], RelationshipStatus.closed, "transfer"),
        (m["a2"], t["mine"], RelationshipStatus.open, None),
    ]
    assert db.session.get(MemberTransfer, transfer_id).status == TransferStatus.done


def test_the_sweep_leaves_a_fresh_send_to_its_job(app, two_owners):
    t, m = two_owners, two_owners["m"]
    add_customers(m["a1"], t["mine"], [("wm_fresh", "顾客")])
    start("mine_owner", t["mine"], m["a1"], m["a2"])
    # queued a moment ago: the send job is on its way, the periodic sweep does not race it
    assert svc.poll_running(db.session) == []
    assert svc.poll_running_transfers() == "0 running transfer(s) checked"


def test_items_wecom_never_settles_fail_after_the_give_up_time(client, two_owners):
    t, m = two_owners, two_owners["m"]
    add_customers(m["a1"], t["mine"], [("wm_stuck", "赵六")])
    transfer_id = start("mine_owner", t["mine"], m["a1"], m["a2"])
    with transaction(db.session):
        transfer = db.session.get(MemberTransfer, transfer_id)
        db.session.scalar(select(TransferItem)).status = TransferItemStatus.waiting
        transfer.groups_sent_at = transfer.created_at
        assert svc.give_up_waiting(db.session, transfer) == 1
        assert svc.maybe_finish(db.session, transfer)
    assert db.session.get(MemberTransfer, transfer_id).status == TransferStatus.failed
    login(client, "mine_owner")
    page = client.get(f"/portal/transfers/{transfer_id}").get_data(as_text=True)
    assert number(page, "count-failed") == 1 and "赵*" in page and "企业微信未返回结果" in page
    assert 'data-testid="autorefresh"' not in page and "重试失败项" in page


def test_mask_name():
    assert svc.mask_name("张三") == "张*"
    assert svc.mask_name("王小明") == "王**"
    assert svc.mask_name("", "wmAbCdEfGh") == "wm***Gh"
    assert svc.mask_name(None) == "***"


# --------------------------------------------------------------------------- live: app + simulator


@dataclass
class LiveShop:
    owner: str
    store_id: int
    channel_id: int
    state: str
    members: dict[str, int]


@pytest.fixture(scope="module")
def live(stack):
    """Members synced from the simulator's corp; regions once per module (the stack's
    database lives as long as the module)."""
    from core.wecom import get_wecom
    from merchants import services

    stack.app.config["PASSWORD_HASH_METHOD"] = "scrypt:1024:8:1"
    stack.app.test_client_class = FreshContextClient
    regions = make_regions()
    users, holders = services.fetch_corp_members(get_wecom())
    with transaction(db.session):
        services.upsert_members(db.session, users, holders)
    return {"stack": stack, "regions": regions}


def sim(stack, method: str, path: str, body=None) -> dict:
    resp = stack.http.request(method, f"{stack.sim_url}/sim/admin/{path}", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def make_live_shop(live, owner: str, userids: list[str]) -> LiveShop:
    """An approved store served by ``userids``, with a real channel code in the simulator."""
    from core.wecom import get_wecom
    from merchants.services import channels

    _, _, store_id = make_merchant(owner, live["regions"]["徐家汇"], name=f"{owner}的馆子")
    members = {u: db.session.scalar(select(Member.id).where(Member.userid == u)) for u in userids}
    with transaction(db.session):
        store = db.session.get(Store, store_id)
        store.status = ReviewStatus.approved
        for member_id in members.values():
            db.session.add(StoreMember(store_id=store_id, member_id=member_id))
        db.session.flush()
        channel = channels.create_channel(db.session, get_wecom(), store, name="门口海报", kind="door")
        channel_id, state = channel.id, channel.state
    return LiveShop(owner, store_id, channel_id, state, members)


def seed_sim_customers(stack, userid: str, people: list[tuple[str, str]], state: str) -> list[str]:
    """Diners who added ``userid`` through the store's code, straight into the simulator's
    state (scanning 250 times through the phone pages would only be slower)."""
    from wecom.simulator import ids
    from wecom.simulator.models import Follow, WechatUser

    state_obj = stack.sim.extensions["wecom_sim"]
    corp = state_obj.settings.corp_id
    exts = [ids.external_userid(corp, handle) for handle, _ in people]
    with state_obj.transaction() as session:
        for (handle, nickname), ext in zip(people, exts):
            session.add(WechatUser(id=handle, nickname=nickname, gender=0, unionid=ids.unionid(handle),
                                   external_userid=ext))
        session.flush()
        now = state_obj.now()
        for n, ext in enumerate(exts):
            session.add(Follow(userid=userid, external_userid=ext, createtime=now - 3600 + n, add_way=1,
                               oper_userid=ext, state=state))
    return exts


def seed_sim_group(stack, owner: str, name: str) -> str:
    from wecom.simulator import ids
    from wecom.simulator.models import GroupChat, GroupMember

    state_obj = stack.sim.extensions["wecom_sim"]
    chat_id = ids.chat_id()
    with state_obj.transaction() as session:
        session.add(GroupChat(chat_id=chat_id, name=name, owner=owner, notice="", create_time=state_obj.now()))
        session.flush()
        session.add(GroupMember(chat_id=chat_id, member_id=owner, type=1, join_time=state_obj.now(), join_scene=1))
    return chat_id


@contextmanager
def wecom_calls():
    """Observe the app's WeCom requests (path, JSON body) as they go out over HTTP."""
    from core.wecom import get_wecom

    http = get_wecom()._http
    calls: list[tuple[str, dict]] = []

    def hook(request):
        calls.append((request.url.path, json.loads(request.content or b"{}")))

    http.event_hooks["request"].append(hook)
    try:
        yield calls
    finally:
        http.event_hooks["request"].remove(hook)


@contextmanager
def transfer_seconds(stack, seconds: float):
    sim(stack, "POST", "config", {"transfer_seconds": seconds})
    try:
        yield
    finally:
        sim(stack, "POST", "config", {"transfer_seconds": 86400})


def portal(stack, username: str):
    client = stack.app.test_client()
    login(client, username)
    return client


def begin(client, shop: LiveShop, leaving: str, takeover: str, kind: str, **extra) -> int:
    url = f"/portal/transfers/new/{shop.store_id}/{shop.members[leaving]}"
    resp = post_form(client, url, {"kind": kind, "takeover": str(shop.members[takeover]), **extra})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return int(resp.headers["Location"].rstrip("/").rsplit("/", 1)[-1])


def refresh(client, transfer_id: int) -> None:
    url = f"/portal/transfers/{transfer_id}"
    assert post_form(client, f"{url}/refresh", {}, token_url=url).status_code == 302


def open_relationships(resident_ids: list[int]) -> list[tuple[int, int, int | None, int | None]]:
    db.session.remove()
    return db.session.execute(
        select(ContactRelationship.resident_id, ContactRelationship.member_id, ContactRelationship.store_id,
               ContactRelationship.channel_id)
        .where(ContactRelationship.resident_id.in_(resident_ids), ContactRelationship.status == RelationshipStatus.open)
        .order_by(ContactRelationship.resident_id, ContactRelationship.id)
    ).all()


@pytest.mark.slow  # the 250 add events WeCom sends the colleague run every diner's jobs
def test_resigned_member_with_250_customers_moves_in_three_batches(live):
    stack = live["stack"]
    shop = make_live_shop(live, "owner_250", ["liuyang", "chenjing"])
    people = [(f"t250_{n:03d}", f"街坊{n:03d}") for n in range(250)]
    exts = seed_sim_customers(stack, "liuyang", people, shop.state)
    # 248 came in through the add events; two are only known to WeCom
    residents = add_customers(shop.members["liuyang"], shop.store_id,
                              [(e, p[1]) for e, p in zip(exts[:248], people)], shop.channel_id)
    chat_id = seed_sim_group(stack, "liuyang", "刘洋的饭友群")
    sim(stack, "POST", "members/liuyang/resign")
    client = portal(stack, "owner_250")

    with transfer_seconds(stack, 3600), wecom_calls() as calls:
        transfer_id = begin(client, shop, "liuyang", "chenjing", "resigned")
        stack.drain()
        sent = [body for path, body in calls if path.endswith("/externalcontact/resigned/transfer_customer")]
        assert [len(body["external_userid"]) for body in sent] == [100, 100, 50]
        assert {e for body in sent for e in body["external_userid"]} == set(exts)
        assert all((b["handover_userid"], b["takeover_userid"]) == ("liuyang", "chenjing") for b in sent)

        page = client.get(f"/portal/transfers/{transfer_id}").get_data(as_text=True)
        assert number(page, "total") == 250 and number(page, "count-waiting") == 250
        assert re.findall(r'data-batch="(\d+)"><td>[^<]*</td><td>(\d+)</td>', page) == [
            ("1", "100"), ("2", "100"), ("3", "50")]
        assert 'data-testid="autorefresh"' in page and "1 / 1" in page  # the group went too
        groups = {g["chat_id"]: g for g in sim(stack, "GET", "groups")["groups"]}
        assert groups[chat_id]["owner"] == "chenjing"

    with transfer_seconds(stack, 0):
        refresh(client, transfer_id)  # the button on the page: poll WeCom now
        stack.drain()
    page = client.get(f"/portal/transfers/{transfer_id}").get_data(as_text=True)
    assert number(page, "count-done") == 250 and number(page, "count-waiting") == 0
    assert "已完成" in page and 'data-testid="autorefresh"' not in page
    db.session.remove()
    assert db.session.get(MemberTransfer, transfer_id).status == TransferStatus.done

    # every resident now has exactly one open relationship: with the colleague, same store and channel
    moved = open_relationships(residents)
    assert moved == [(r, shop.members["chenjing"], shop.store_id, shop.channel_id) for r in residents]
    closed = db.session.scalars(select(ContactRelationship.close_reason).where(
        ContactRelationship.member_id == shop.members["liuyang"])).all()
    assert closed == ["transfer"] * 248
    contacts = sim(stack, "GET", "contacts")["contacts"]
    assert {c["external_userid"] for c in contacts if c["userid"] == "chenjing" and c["status"] == "active"} == set(exts)
    assert db.session.scalar(select(StoreMember.leaving).where(StoreMember.member_id == shop.members["liuyang"]))


def test_on_job_transfer_a_diner_refuses_is_reported(live):
    stack = live["stack"]
    shop = make_live_shop(live, "owner_onjob", ["wangfang", "yangmin"])
    people = [("onjob_zhang", "张三"), ("onjob_li", "李四"), ("onjob_wang", "王五")]
    exts = seed_sim_customers(stack, "wangfang", people, shop.state)
    residents = add_customers(shop.members["wangfang"], shop.store_id, list(zip(exts, [p[1] for p in people])),
                              shop.channel_id)
    seed_sim_group(stack, "wangfang", "王芳的老客群")
    client = portal(stack, "owner_onjob")

    with transfer_seconds(stack, 3600), wecom_calls() as calls:
        transfer_id = begin(client, shop, "wangfang", "yangmin", "on_job", success_msg="您好，之后由杨敏为您服务。")
        stack.drain()
        sent = [body for path, body in calls if path.endswith("/externalcontact/transfer_customer")]
        assert len(sent) == 1 and sent[0]["transfer_success_msg"] == "您好，之后由杨敏为您服务。"
        # wangfang's seeded customer (sunhao) came from WeCom's list: four in all
        assert len(sent[0]["external_userid"]) == 4
        assert any(p.endswith("/groupchat/onjob_transfer") for p, _ in calls)

        sim(stack, "POST", "transfers/refuse", {"external_userid": exts[0]})  # 张三 says no, in WeChat

        def refused():
            db.session.remove()
            item = db.session.scalar(select(TransferItem).where(TransferItem.external_userid == exts[0]))
            return item.status == TransferItemStatus.refused

        stack.wait_for(refused)  # the transfer_fail callback came over HTTP and ran as a job
        page = client.get(f"/portal/transfers/{transfer_id}").get_data(as_text=True)
        assert number(page, "count-refused") == 1 and number(page, "count-waiting") == 3
        refused_table = page.split('data-testid="refused"')[1].split("</table>")[0]
        assert "张*" in refused_table and "张三" not in page and "顾客拒绝转接" in refused_table

        with wecom_calls() as polls:
            # what `linli cron` enqueues every two minutes: WeCom is asked once per
            # TRANSFER_POLL_SECONDS, not on every sweep
            for _ in range(2):
                get_queue(QUEUE_DEFAULT).enqueue("residents.transfers.jobs.poll_running_transfers")
                stack.drain()
        assert [p for p, _ in polls if "transfer" in p] == ["/cgi-bin/externalcontact/transfer_result"]

    with transfer_seconds(stack, 0):
        refresh(client, transfer_id)  # the page's button asks at once
        stack.drain()
    page = client.get(f"/portal/transfers/{transfer_id}").get_data(as_text=True)
    assert number(page, "count-done") == 3 and number(page, "count-refused") == 1
    assert "已完成" in page  # a refusal is the diner's answer, not a failure
    # 张三 stays with wangfang; the others moved to yangmin; nobody is left without a member
    assert open_relationships(residents) == [
        (residents[0], shop.members["wangfang"], shop.store_id, shop.channel_id),
        (residents[1], shop.members["yangmin"], shop.store_id, shop.channel_id),
        (residents[2], shop.members["yangmin"], shop.store_id, shop.channel_id),
    ]


def test_resigned_transfer_before_the_member_left_fails_in_plain_words_then_retries(live):
    stack = live["stack"]
    shop = make_live_shop(live, "owner_retry", ["zhangwei", "lina"])
    seeded = {c["external_userid"] for c in sim(stack, "GET", "contacts")["contacts"] if c["userid"] == "zhangwei"}
    names = dict(zip(sorted(seeded), ["王小明", "李雪", "周杰"]))
    # the seed's customers added zhangwei without a contact-way state: attributed to no store
    residents = add_customers(shop.members["zhangwei"], None, sorted(names.items()))
    client = portal(stack, "owner_retry")

    with transfer_seconds(stack, 3600):
        transfer_id = begin(client, shop, "zhangwei", "lina", "resigned")
        stack.drain()
        page = client.get(f"/portal/transfers/{transfer_id}").get_data(as_text=True)
        assert number(page, "count-failed") == 3 and "有失败" in page
        assert "尚未在企业微信办理离职" in page and "40097" in page
        assert "王**" in page and "王小明" not in page
        assert "0 / 1" in page and "重试失败项" in page  # zhangwei's group could not move either

        sim(stack, "POST", "members/zhangwei/resign")  # the admin completes the leaving in WeCom
        url = f"/portal/transfers/{transfer_id}"
        assert post_form(client, f"{url}/retry", {}, token_url=url).status_code == 302
        stack.drain()
        page = client.get(url).get_data(as_text=True)
        assert number(page, "count-waiting") == 3 and number(page, "count-failed") == 0 and "1 / 1" in page

    with transfer_seconds(stack, 0):
        result = stack.app.test_cli_runner().invoke(main, ["transfers", "poll"], catch_exceptions=False)
        assert result.exit_code == 0 and "1 running transfer(s) checked" in result.output
    db.session.remove()
    assert db.session.get(MemberTransfer, transfer_id).status == TransferStatus.done
    assert open_relationships(residents) == [(r, shop.members["lina"], None, None) for r in residents]
