"""Taste profile ↔ WeCom corp tags on the live stack (app + simulator over HTTP, real Redis,
real RQ worker in burst mode), and the Redis semaphore that throttles tag writes.

Each stack test starts from a reset simulator (its seed: zhangwei already has the customers
wangxiaoming, lixue, zhoujie; lina has chenxi, liuli; wangfang has sunhao), an empty
database and an empty Redis.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid

import pytest
import redis as redis_lib
from sqlalchemy import delete, func, select

from accounts.models import Role, User
from core import signals
from core.db import db, utcnow
from core.extensions import get_queue
from core.semaphore import Semaphore, SemaphoreTimeout
from core.wecom import get_wecom
from coupons import services as coupon_services
from coupons.models import CouponKind, TemplateStatus
from merchants.models import CUISINES, Region, RegionLevel, Store
from residents import jobs, tags, taste
from residents.models import (
    ContactRelationship,
    CorpTag,
    RelationshipStatus,
    ResidentTag,
    SignalSource,
    TasteSignal,
)
from tests.support.coupons import make_shop, make_template, tx
from tests.support.residents import make_member, make_resident, open_contact, welcome_store
from tests.support.servers import truncate_all

SEED_CONTACTS = [("zhangwei", "wangxiaoming"), ("zhangwei", "lixue"), ("zhangwei", "zhoujie"),
                 ("lina", "chenxi"), ("lina", "liuli"), ("wangfang", "sunhao")]


# --- fixtures and helpers -----------------------------------------------------------------


def sim(stack, path: str, body: dict | None = None) -> dict:
    response = stack.http.post(f"{stack.sim_url}/sim/admin/{path}", json=body or {})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def live(stack):
    """The module's stack, reset: simulator state and knobs, database, Redis; WeCom client
    retries cut to one (45033 surfaces fast) and the app's throttle at its default."""
    sim(stack, "reset")
    sim(stack, "config", {"tag_concurrency": 3})
    db.session.remove()
    truncate_all(stack.app.config["DATABASE_URL"])
    stack.app.extensions["redis"].flushdb()
    client = get_wecom()
    retries = client.max_retries
    client.max_retries = 1
    stack.app.config["WECOM_TAG_CONCURRENCY"] = 2
    yield stack
    client.max_retries = retries
    stack.app.config["WECOM_TAG_CONCURRENCY"] = 2
    sim(stack, "config", {"tag_concurrency": 3})
    stack.http.delete(f"{stack.sim_url}/sim/admin/faults")


def external_ids(stack) -> dict[str, str]:
    users = stack.http.get(f"{stack.sim_url}/sim/admin/wechat_users").json()["wechat_users"]
    return {u["id"]: u["external_userid"] for u in users}


def tag_groups() -> dict[str, dict[str, str]]:
    """WeCom's corp tags: group name -> {tag name: tag id}."""
    return {g["group_name"]: {t["name"]: t["id"] for t in g["tag"]} for g in get_wecom().tags.list()}


def contact_tags(external_userid: str, userid: str) -> set[tuple[str, str]]:
    """(group, tag) on the diner as ``externalcontact/get`` shows them for that member."""
    data = get_wecom().customers.get(external_userid)
    (follow,) = [f for f in data["follow_user"] if f["userid"] == userid]
    return {(t["group_name"], t["tag_name"]) for t in follow["tags"]}


def make_circle_tree(session, circle: str = "徐家汇") -> Region:
    city = Region(name="上海", level=RegionLevel.city)
    session.add(city)
    session.flush()
    district = Region(name="徐汇区", level=RegionLevel.district, parent_id=city.id)
    session.add(district)
    session.flush()
    region = Region(name=circle, level=RegionLevel.circle, parent_id=district.id)
    session.add(region)
    session.flush()
    return region


def diner(stack, handle: str = "wangxiaoming", userid: str = "zhangwei", cuisines=("sichuan",),
          circle: Region | None = None) -> dict:
    """A seeded simulator contact as our resident: an open relationship with the member at a
    store of ``cuisines`` (one scan signal each). Returns ids."""
    external = external_ids(stack)[handle]
    with tx():
        circle = circle or make_circle_tree(db.session)
        shop = make_shop(db.session, circle, name=f"{handle}的店")
        shop.store.cuisines = list(cuisines)
        member = make_member(db.session, userid)
        resident = make_resident(db.session, external)
        open_contact(db.session, resident, member, shop.store)
        for code in cuisines:  # seeded evidence, rows only: each test sends the signals it means
            db.session.add(TasteSignal(
                resident_id=resident.id, cuisine=code, source=SignalSource.scan, ref=f"store:{shop.store.id}",
                weight=taste.SOURCE_WEIGHTS[SignalSource.scan], observed_at=utcnow(),
            ))
        ids = dict(resident_id=resident.id, member_id=member.id, store_id=shop.store.id, circle=circle.name,
                   circle_id=circle.id, external=external, userid=userid, shop=shop)
    return ids


def rows(resident_id: int) -> dict[str, ResidentTag]:
    """The resident's tag rows by our key (one member)."""
    db.session.remove()
    found = db.session.scalars(select(ResidentTag).where(ResidentTag.resident_id == resident_id)).all()
    return {r.corp_tag.key: r for r in found}


def all_synced(resident_id: int) -> bool:
    current = rows(resident_id)
    return bool(current) and all(r.synced_at is not None for r in current.values())


def staff_signals(resident_id: int) -> set[tuple[str, str]]:
    db.session.remove()
    found = db.session.scalars(
        select(TasteSignal).where(TasteSignal.resident_id == resident_id, TasteSignal.source == SignalSource.staff_tag)
    )
    return {(s.cuisine, s.ref) for s in found}


def until(stack, predicate, timeout: float = 30.0):
    """``stack.wait_for`` with a clean session around every check: jobs run in this thread
    and share its scoped session, so no read may leave a transaction open for them."""
    def check():
        try:
            return predicate()
        finally:
            db.session.remove()

    db.session.remove()
    return stack.wait_for(check, timeout=timeout)


def in_thread(app, fn, *args):
    """Run ``fn`` in its own app context (its own scoped session), as another worker would."""
    with app.app_context():
        try:
            return fn(*args)
        finally:
            db.session.remove()


# --- corp tags ----------------------------------------------------------------------------


def test_tag_groups_are_created_once_across_processes_and_restarts(live):
    d = diner(live)
    with tx():
        keys = [tags.circle_key(d["circle_id"]), tags.cuisine_key("sichuan")]
        wanted = [row.id for row in tags.corp_tag_rows(db.session, keys).values()]
    client = get_wecom()

    # two workers at once (they serialise on a Redis lock): one group of each, no duplicates
    errors: list[BaseException] = []

    def run():
        try:
            in_thread(live.app, tags.ensure_corp_tags, client, wanted)
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    groups = tag_groups()
    assert set(groups[tags.CUISINE_GROUP]) == set(CUISINES.values())  # the whole cuisine group
    assert set(groups[tags.CIRCLE_GROUP]) == {"徐家汇"}
    assert [g["group_name"] for g in client.tags.list()].count(tags.CUISINE_GROUP) == 1
    db.session.remove()
    local = {r.key: (r.group_id, r.tag_id) for r in db.session.scalars(select(CorpTag))}
    assert local[tags.cuisine_key("sichuan")][1] == groups[tags.CUISINE_GROUP]["川菜"]
    assert local[tags.circle_key(d["circle_id"])][1] == groups[tags.CIRCLE_GROUP]["徐家汇"]
    assert len(local) == len(CUISINES) + 1

    # a restart that lost our ids (or a second deployment): the existing tags are adopted
    with tx():
        for row in db.session.scalars(select(CorpTag)):
            row.tag_id = row.group_id = None
    assert tags.ensure_corp_tags(client) == len(CUISINES) + 1
    assert tag_groups() == groups
    db.session.remove()
    assert {r.key: (r.group_id, r.tag_id) for r in db.session.scalars(select(CorpTag))} == local
    assert tags.ensure_corp_tags(client) == 0  # nothing left to do


def test_same_circle_names_get_their_district(live):
    with tx():
        a = make_circle_tree(db.session, "万达广场")
        other_district = Region(name="静安区", level=RegionLevel.district, parent_id=a.parent.parent_id)
        db.session.add(other_district)
        db.session.flush()
        b = Region(name="万达广场", level=RegionLevel.circle, parent_id=other_district.id)
        db.session.add(b)
        db.session.flush()
        made = tags.corp_tag_rows(db.session, [tags.circle_key(a.id), tags.circle_key(b.id)])
        names = {made[tags.circle_key(a.id)].name, made[tags.circle_key(b.id)].name}
    assert names == {"万达广场(徐汇区)", "万达广场(静安区)"}
    tags.ensure_corp_tags(get_wecom())
    assert set(tag_groups()[tags.CIRCLE_GROUP]) == names


# --- profile → WeCom ------------------------------------------------------------------------


def test_profile_and_circles_are_marked_on_the_contact(live):
    d = diner(live, cuisines=("sichuan",))
    signals.contact_added.send(resident_id=d["resident_id"], member_id=d["member_id"], store_id=d["store_id"],
                               first_time=True)
    until(live, lambda: all_synced(d["resident_id"]))

    assert contact_tags(d["external"], "zhangwei") == {("口味偏好", "川菜"), ("商圈", "徐家汇")}
    current = rows(d["resident_id"])
    assert set(current) == {tags.cuisine_key("sichuan"), tags.circle_key(d["circle_id"])}
    assert all(r.wanted and r.attempts == 0 and r.last_error is None for r in current.values())

    # the taste moves: a survey answer for 湘菜, the scan forgotten → 湘菜 on, 川菜 off
    with tx():
        db.session.execute(delete(TasteSignal).where(TasteSignal.resident_id == d["resident_id"]))
        taste.record_signal(db.session, d["resident_id"], "hunan", SignalSource.survey, ref="survey")
    signals.taste_changed.send(resident_id=d["resident_id"])
    until(live, lambda: all_synced(d["resident_id"]) and not rows(d["resident_id"])[tags.cuisine_key("sichuan")].wanted)
    assert contact_tags(d["external"], "zhangwei") == {("口味偏好", "湘菜"), ("商圈", "徐家汇")}
    current = rows(d["resident_id"])
    assert current[tags.cuisine_key("hunan")].wanted and not current[tags.cuisine_key("sichuan")].wanted

    # the member loses the diner: their rows go (nothing left to tag with that member)
    with tx():
        rel = db.session.scalar(select(ContactRelationship).where(ContactRelationship.resident_id == d["resident_id"]))
        rel.status = RelationshipStatus.closed
    signals.contact_closed.send(resident_id=d["resident_id"], member_id=d["member_id"], reason="del_follow_user")
    until(live, lambda: not rows(d["resident_id"]))


def test_a_scan_through_the_add_event_tags_the_diner(live):
    """The whole journey: the diner scans a store's code, the add event's handler (the
    residents' own) sends contact_added/taste_changed, and the tags reach WeCom."""
    ws = welcome_store(get_wecom(), ["liuyang"], cuisines=["korean"], template=False)
    result = sim(live, "scan", {"wechat_user": "xiaoyu", "config_id": ws.config_id})
    db.session.remove()
    expected = {("口味偏好", "韩料"), ("商圈", db.session.get(Store, ws.store_id).circle.name)}
    until(live, lambda: contact_tags(result["external_userid"], "liuyang") == expected)


def test_45033_leaves_rows_pending_and_the_sweep_finishes_them(live):
    d = diner(live, cuisines=("sichuan", "hotpot"))
    with tx():
        tags.corp_tag_rows(db.session, [tags.circle_key(d["circle_id"])])
    tags.ensure_corp_tags(get_wecom())
    sim(live, "config", {"tag_concurrency": 0})  # WeCom: every mark_tag is "api concurrent out of limit"

    signals.taste_changed.send(resident_id=d["resident_id"])
    until(live, lambda: rows(d["resident_id"]) and all(r.attempts for r in rows(d["resident_id"]).values()))
    current = rows(d["resident_id"])
    assert len(current) == 3
    for row in current.values():
        assert row.synced_at is None and row.wanted and row.attempts == 1
        assert row.last_error.startswith("45033 api concurrent out of limit")
    assert contact_tags(d["external"], "zhangwei") == set()

    # WeCom recovers; the sweep (a scheduler or the CLI) queues one job per waiting resident
    sim(live, "config", {"tag_concurrency": 3})
    assert jobs.sync_pending_tags() == 1
    assert jobs.sync_pending_tags() == 0  # already queued: not twice
    until(live, lambda: all_synced(d["resident_id"]))
    assert contact_tags(d["external"], "zhangwei") == {("口味偏好", "川菜"), ("口味偏好", "火锅"), ("商圈", "徐家汇")}
    assert all(r.attempts == 0 and r.last_error is None for r in rows(d["resident_id"]).values())
    assert jobs.sync_pending_tags() == 0


@pytest.mark.slow
def test_the_throttle_keeps_concurrent_tag_writes_under_wecom_limit(live):
    """Six syncs at once, each mark_tag held 1 s by the simulator, WeCom allowing 2 in flight:
    with the throttle at 2 none is refused; with it at 6 WeCom refuses some (45033)."""
    handles = external_ids(live)
    with tx():
        circle = make_circle_tree(db.session)
    resident_ids = [diner(live, handle, userid, ("sichuan",), circle)["resident_id"]
                    for userid, handle in SEED_CONTACTS]
    with tx():
        for rid in resident_ids:
            tags.plan_resident_tags(db.session, rid)
    client = get_wecom()
    tags.ensure_corp_tags(client)
    client.max_retries = 0  # any 45033 lands in last_error
    sim(live, "config", {"tag_concurrency": 2})

    def sync_all() -> list[BaseException]:
        live.http.post(f"{live.sim_url}/sim/admin/faults",
                       json={"latency_ms": 1000, "times": len(resident_ids), "path": "externalcontact/mark_tag"})
        barrier = threading.Barrier(len(resident_ids))
        errors: list[BaseException] = []

        def run(rid):
            barrier.wait()
            try:
                in_thread(live.app, jobs.sync_resident_tags, rid)
            except tags.TagSyncDeferred as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(rid,)) for rid in resident_ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        return errors

    live.app.config["WECOM_TAG_CONCURRENCY"] = 2
    assert sync_all() == []
    for rid in resident_ids:
        assert all_synced(rid)
        assert all(r.last_error is None for r in rows(rid).values())
    for userid, handle in SEED_CONTACTS:
        assert ("口味偏好", "川菜") in contact_tags(handles[handle], userid)

    # the control: a throttle wider than WeCom's limit gets refusals
    with tx():
        for rid in resident_ids:
            taste.record_signal(db.session, rid, "bbq", SignalSource.survey, ref="survey")
            tags.plan_resident_tags(db.session, rid)
    tags.ensure_corp_tags(client)
    live.app.config["WECOM_TAG_CONCURRENCY"] = len(resident_ids)
    errors = sync_all()
    assert errors and all("45033" in str(e) for e in errors)
    db.session.remove()
    refused = db.session.scalars(select(ResidentTag).where(ResidentTag.last_error.like("45033%"))).all()
    assert refused and all(r.synced_at is None for r in refused)


# --- staff edits back -----------------------------------------------------------------------


def test_staff_tags_flow_back_as_signals(live):
    d = diner(live, cuisines=("sichuan",))
    rid = d["resident_id"]
    signals.taste_changed.send(resident_id=rid)
    until(live, lambda: all_synced(rid))
    groups = tag_groups()
    sichuan, hunan = groups["口味偏好"]["川菜"], groups["口味偏好"]["湘菜"]
    vip = groups["客户等级"]["VIP"]  # not ours: ignored
    assert "hunan" not in taste.profile(db.session, rid)

    # zhangwei tags the diner 湘菜 (and VIP) in the WeCom app → edit_external_contact
    staff_edit(live, d["external"], add_tag=[hunan, vip])
    until(live, lambda: staff_signals(rid) == {("hunan", "tag:zhangwei")})
    db.session.remove()
    assert "hunan" in taste.preferred_cuisines(db.session, rid)
    until(live, lambda: all_synced(rid) and tags.cuisine_key("hunan") in rows(rid))
    assert rows(rid)[tags.cuisine_key("hunan")].wanted
    assert contact_tags(d["external"], "zhangwei") == {("口味偏好", "川菜"), ("口味偏好", "湘菜"), ("商圈", "徐家汇"),
                                                        ("客户等级", "VIP")}

    # a remark edit changes nothing (no signal refreshed, no new one for our own 川菜)
    before = db.session.scalar(select(func.count()).select_from(TasteSignal))
    staff_edit(live, d["external"], remark="常客")
    until(live, lambda: _events_done(live, "edit_external_contact") == 2)
    assert staff_signals(rid) == {("hunan", "tag:zhangwei")}
    assert db.session.scalar(select(func.count()).select_from(TasteSignal)) == before

    # zhangwei removes 湘菜 → the staff signal goes, the profile drops it, our row follows
    staff_edit(live, d["external"], remove_tag=[hunan])
    until(live, lambda: staff_signals(rid) == set())
    db.session.remove()
    assert "hunan" not in taste.profile(db.session, rid)
    until(live, lambda: all_synced(rid) and not rows(rid)[tags.cuisine_key("hunan")].wanted)
    assert ("口味偏好", "湘菜") not in contact_tags(d["external"], "zhangwei")

    # zhangwei removes our own 川菜: no signal; the local rows are the truth, so it comes back
    staff_edit(live, d["external"], remove_tag=[sichuan])
    until(live, lambda: _events_done(live, "edit_external_contact") == 4 and all_synced(rid))
    assert staff_signals(rid) == set()
    assert ("口味偏好", "川菜") in contact_tags(d["external"], "zhangwei")


_last_edit = [0]


def staff_edit(stack, external_userid: str, **change) -> None:
    """zhangwei edits the diner in the WeCom app. Two edit events of one pair within the same
    second are byte-identical (CreateTime is in seconds) and the receiver drops the second as
    WeCom's retry, so edits here land in distinct seconds, as a person's would."""
    while int(time.time()) <= _last_edit[0]:
        time.sleep(0.05)
    sim(stack, "edit_contact", {"external_userid": external_userid, "userid": "zhangwei", **change})
    _last_edit[0] = int(time.time())


def _events_done(stack, change_type: str) -> int:
    from core.inbox.models import WeComEvent

    db.session.remove()
    return db.session.scalar(
        select(func.count()).where(WeComEvent.change_type == change_type, WeComEvent.status == "done")
    )


def test_a_tag_deleted_in_the_console_is_recreated_and_remarked(live):
    d = diner(live, cuisines=("sichuan",))
    rid = d["resident_id"]
    signals.taste_changed.send(resident_id=rid)
    until(live, lambda: all_synced(rid))
    old = tag_groups()["口味偏好"]["川菜"]

    sim(live, "console_tags", {"action": "delete", "tag_id": [old]})  # → change_external_tag
    until(live, lambda: ("口味偏好", "川菜") in contact_tags(d["external"], "zhangwei") and all_synced(rid))
    new = tag_groups()["口味偏好"]["川菜"]
    assert new != old
    db.session.remove()
    assert db.session.scalar(select(CorpTag.tag_id).where(CorpTag.key == tags.cuisine_key("sichuan"))) == new


# --- redemptions ----------------------------------------------------------------------------


def _coupon_for(shop, resident_id: int):
    template = make_template(shop, name="午市立减10元", kind=CouponKind.amount_off, value=1000, min_spend_fen=5000,
                             valid_from=None, valid_until=None, valid_days=30, total_stock=None,
                             status=TemplateStatus.active)
    with tx():
        return coupon_services.issue_coupon(db.session, template.id, f"r:{resident_id}", resident_id=resident_id)


def test_a_redemption_becomes_a_redeem_signal(live):
    d = diner(live, cuisines=("sichuan",))
    rid, shop = d["resident_id"], d["shop"]
    with tx():
        store = db.session.get(Store, shop.other_store.id)
        store.cuisines = ["japanese", "dessert"]
    coupon = _coupon_for(shop, rid)

    # a redemption rolled back sends nothing
    with pytest.raises(RuntimeError), tx():
        coupon_services.redeem(db.session, coupon.short_code, shop.other_store.id, shop.cashier.id, 12000, "try-1")
        raise RuntimeError("till crashed")
    assert get_queue("default").count == 0

    with tx():
        coupon_services.redeem(db.session, coupon.short_code, shop.other_store.id, shop.cashier.id, 12000, "try-2")
    until(live, lambda: all_synced(rid) and tags.cuisine_key("japanese") in rows(rid))
    db.session.remove()
    redeem = db.session.scalars(
        select(TasteSignal).where(TasteSignal.resident_id == rid, TasteSignal.source == SignalSource.redeem)
    ).all()
    assert {(s.cuisine, s.ref, s.weight) for s in redeem} == {
        ("japanese", f"coupon:{coupon.id}", 2.0), ("dessert", f"coupon:{coupon.id}", 2.0)
    }
    assert set(taste.preferred_cuisines(db.session, rid)) == {"sichuan", "japanese", "dessert"}
    assert contact_tags(d["external"], "zhangwei") == {("口味偏好", "川菜"), ("口味偏好", "日料"), ("口味偏好", "甜品饮品"),
                                                        ("商圈", "徐家汇")}

    # a replayed confirm (same key) is the same redemption: no second signal job
    with tx():
        again = coupon_services.redeem(db.session, coupon.short_code, shop.other_store.id, shop.cashier.id, 12000,
                                       "try-2")
    assert again.replayed and get_queue("default").count == 0

    # the owner reverses it: no longer evidence of taste, and the WeCom tags follow
    with tx():
        merchant_id = db.session.get(Store, d["store_id"]).merchant_id
        owner = db.session.scalar(select(User).where(User.merchant_id == merchant_id, User.role == Role.owner))
        coupon_services.reverse(db.session, again.redemption_id, owner, reason="wrong table")

    def japanese_untagged():
        current = rows(rid)
        row = current.get(tags.cuisine_key("japanese"))
        return all_synced(rid) and (row is None or not row.wanted)

    until(live, japanese_untagged)
    db.session.remove()
    assert not db.session.scalars(
        select(TasteSignal).where(TasteSignal.resident_id == rid, TasteSignal.source == SignalSource.redeem)
    ).all()
    assert contact_tags(d["external"], "zhangwei") == {("口味偏好", "川菜"), ("商圈", "徐家汇")}


def test_coupons_do_not_import_residents():
    code = ("import sys, coupons.services, core.signals; "
            "bad = [m for m in sys.modules if m.startswith('residents')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- the semaphore --------------------------------------------------------------------------


@pytest.fixture
def semaphore_name(redis_url):
    name = f"test-{uuid.uuid4().hex}"
    yield name
    conn = redis_lib.Redis.from_url(redis_url)
    conn.delete(f"linli:semaphore:{name}")
    conn.close()


def test_semaphore_never_lets_more_than_limit_in(redis_url, semaphore_name):
    limit, workers, rounds = 3, 10, 15
    lock = threading.Lock()
    inside = [0]
    seen: list[int] = []
    errors: list[BaseException] = []

    def worker():
        conn = redis_lib.Redis.from_url(redis_url)  # one connection per "process"
        sem = Semaphore(conn, semaphore_name, limit, lease=30)
        try:
            for _ in range(rounds):
                with sem.hold(timeout=60):
                    with lock:
                        inside[0] += 1
                        seen.append(inside[0])
                    time.sleep(0.005)
                    with lock:
                        inside[0] -= 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert len(seen) == workers * rounds
    assert max(seen) == limit  # reached, never exceeded
    conn = redis_lib.Redis.from_url(redis_url)
    assert Semaphore(conn, semaphore_name, limit).holders() == 0
    conn.close()


def test_semaphore_lease_frees_a_crashed_holders_slot(redis_url, semaphore_name):
    conn = redis_lib.Redis.from_url(redis_url)
    sem = Semaphore(conn, semaphore_name, 1, lease=1.0)
    crashed = sem.try_acquire()  # never released, as if its worker died
    assert crashed is not None and sem.holders() == 1
    assert sem.try_acquire() is None
    with pytest.raises(SemaphoreTimeout):
        sem.acquire(timeout=0.2)
    lease = sem.acquire(timeout=10)  # the dead holder's lease runs out
    assert not crashed.renew()  # it lost the slot for good
    crashed.release()  # a late release does not free someone else's slot
    assert sem.holders() == 1 and sem.try_acquire() is None
    lease.release()
    assert sem.holders() == 0
    conn.close()


def test_semaphore_renew_keeps_a_long_holder_in(redis_url, semaphore_name):
    conn = redis_lib.Redis.from_url(redis_url)
    sem = Semaphore(conn, semaphore_name, 1, lease=1.0)
    lease = sem.try_acquire()
    for _ in range(3):  # 1.8 s in all, beyond the 1 s lease, renewed every 0.6 s
        time.sleep(0.6)
        assert lease.renew()
    assert sem.try_acquire() is None
    lease.release()
    assert sem.try_acquire() is not None
    conn.close()


def test_semaphore_rejects_nonsense(redis_url, semaphore_name):
    conn = redis_lib.Redis.from_url(redis_url)
    with pytest.raises(ValueError):
        Semaphore(conn, semaphore_name, 0)
    with pytest.raises(ValueError):
        Semaphore(conn, semaphore_name, 1, lease=0)
    conn.close()

