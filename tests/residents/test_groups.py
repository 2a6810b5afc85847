"""Customer groups follow WeCom over real HTTP: the hourly sweep reads every group, a
``change_external_chat`` event re-reads the one it names, diners are matched to residents,
and a group whose owner serves one store belongs to that store (and its circle)."""
from __future__ import annotations

import time

from sqlalchemy import select

from core.db import db
from core.txn import transaction
from residents import groups, jobs
from residents.models import CustomerGroup, GroupStatus
from residents.privacy import erase_resident
from tests.support.coupons import make_shop
from tests.support.residents import add_staff, make_circle, make_resident
from wecom.events import registry


def group_named(name: str) -> CustomerGroup:
    db.session.remove()
    return db.session.scalar(select(CustomerGroup).where(CustomerGroup.name == name))


def sim_groups(stack) -> dict[str, dict]:
    return {g["name"]: g for g in stack.http.get(f"{stack.sim_url}/sim/admin/groups").json()["groups"]}


def test_the_sweep_reads_every_group_links_stores_and_matches_residents(stack):
    users = stack.http.get(f"{stack.sim_url}/sim/admin/wechat_users").json()["wechat_users"]
    wangxiaoming = next(u for u in users if u["id"] == "wangxiaoming")
    with transaction(db.session) as session:
        resident_id = make_resident(session, wangxiaoming["external_userid"]).id
        shop = make_shop(session, make_circle(session), name="群主小馆")
        add_staff(session, shop.store, "zhangwei")  # zhangwei owns 邻里美食群 and serves one store
        store_id, circle_id = shop.store.id, shop.store.circle_id
    db.session.remove()
    assert jobs.sync_all_groups().startswith("2 group(s)")
    food = group_named("邻里美食群")
    assert (food.owner_userid, food.customer_count, food.status) == ("zhangwei", 4, GroupStatus.active)
    assert (food.store_id, food.circle_id) == (store_id, circle_id)
    by_user = {m.userid: m for m in food.members}
    assert by_user[wangxiaoming["external_userid"]].resident_id == resident_id
    assert by_user["zhangwei"].type == 1 and len(food.members) == 5
    other = group_named("幸福里吃货群")
    assert other.customer_count == 3 and other.store_id is None  # lina serves no store here
    jobs.sync_all_groups()  # a second sweep changes nothing
    assert len(group_named("邻里美食群").members) == 5
    with transaction(db.session) as session:  # erasing the diner forgets their memberships too
        erase_resident(session, resident_id)
    assert wangxiaoming["external_userid"] not in {m.userid for m in group_named("邻里美食群").members}


def test_a_diner_joining_is_an_event_that_updates_the_group(stack):
    jobs.sync_all_groups()
    chat_id = sim_groups(stack)["邻里美食群"]["chat_id"]
    before = group_named("邻里美食群").customer_count
    response = stack.http.post(f"{stack.sim_url}/sim/admin/groups/{chat_id}/join", json={"wechat_user": "huahua"})
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 20
    while group_named("邻里美食群").customer_count != before + 1:
        assert time.monotonic() < deadline, "the change_external_chat event never updated the group"
        db.session.remove()
        stack.drain()
        time.sleep(0.1)
    stack.http.post(f"{stack.sim_url}/sim/admin/groups/{chat_id}/leave", json={"wechat_user": "huahua"})
    deadline = time.monotonic() + 20
    while group_named("邻里美食群").customer_count != before:
        assert time.monotonic() < deadline
        db.session.remove()
        stack.drain()
        time.sleep(0.1)


def test_dismissed_and_unknown_groups(stack):
    jobs.sync_all_groups()
    chat_id = group_named("幸福里吃货群").chat_id
    registry.dispatch({"Event": "change_external_chat", "ChangeType": "dismiss", "ChatId": chat_id})
    assert group_named("幸福里吃货群").status == GroupStatus.dismissed
    assert jobs.sync_group("wrNOSUCHCHAT000000000000000000") == "gone"
    with transaction(db.session) as session:
        session.add(CustomerGroup(chat_id="wrLEFTOVER", name="旧群"))
    with transaction(db.session) as session:
        assert groups.dismiss_unlisted(session, {chat_id}) >= 1
    assert group_named("旧群").status == GroupStatus.dismissed
    jobs.sync_all_groups()  # WeCom still lists it: active again
    assert group_named("幸福里吃货群").status == GroupStatus.active
