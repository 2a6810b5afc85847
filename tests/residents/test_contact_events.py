"""WeCom contact events → residents, relationships, scan signals, the welcome coupon and the
welcome message, on the live stack: a simulated diner scans a channel code the app created
in the simulator, the simulator posts the encrypted callback to /wecom/callback over HTTP, a
real RQ worker runs the high-queue job, and the app calls the simulator back."""
from __future__ import annotations

import hashlib
import secrets
import threading
import time
from datetime import date, datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from core.db import db, utcnow
from core.extensions import QUEUE_DEFAULT, QUEUE_HIGH, enqueue, get_queue
from core.inbox.jobs import accept_callback, process_event, retry_failed
from core.inbox.models import WeComEvent
from core.inbox.services import list_events
from core.txn import transaction
from core.wecom import get_wecom
from coupons.models import Coupon, CouponStatus, CouponTemplate
from marketplace import welcome
from marketplace.worker import make_worker
from merchants.models import ChannelAdd
from merchants.services import channel_counts
from residents import services, taste
from residents.models import (
    ContactRelationship,
    RelationshipStatus,
    Resident,
    ResidentTag,
    TasteSignal,
)
from residents.tokens import load_token
from tests.support.residents import (
    make_member,
    resident_with_contact,
    template_issued,
    welcome_store,
)
from wecom.crypto import WeComCrypto
from wecom.defaults import DEMO_AGENT_ID
from wecom.events import registry
from wecom.simulator.callbacks import envelope

ADD = "add_external_contact"


# --- helpers ------------------------------------------------------------------------------


def drain(stack) -> None:
    """Run queued jobs here; they share this thread's scoped session, so end ours first."""
    db.session.remove()
    stack.drain()


def wait_for(stack, predicate, timeout: float = 20.0):
    """``stack.wait_for`` with the test's session ended before each round of jobs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        drain(stack)
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout}s")


def admin(stack, path: str, body: dict | None = None) -> dict:
    response = stack.http.post(f"{stack.sim_url}/sim/admin/{path}", json=body or {})
    assert response.status_code == 200, response.text
    return response.json()


def wechat_user(stack, handle: str) -> dict:
    users = stack.http.get(f"{stack.sim_url}/sim/admin/wechat_users").json()["wechat_users"]
    return next(u for u in users if u["id"] == handle)


def welcomes(stack, diner: str) -> list[dict]:
    inbox = stack.http.get(f"{stack.sim_url}/sim/admin/inbox/{diner}").json()["messages"]
    return [m for m in inbox if m["source"] == "welcome"]


def scan(stack, diner: str, ws) -> dict:
    result = admin(stack, "scan", {"wechat_user": diner, "config_id": ws.config_id})
    assert result["added"] and result["welcome_code"], result
    return result


def event_rows(change_type: str, external_userid: str) -> list[WeComEvent]:
    db.session.remove()
    rows = db.session.scalars(select(WeComEvent).where(WeComEvent.change_type == change_type).order_by(WeComEvent.id))
    return [r for r in rows if r.payload.get("ExternalUserID") == external_userid]


def processed(stack, change_type: str, external_userid: str, count: int = 1) -> list[WeComEvent]:
    """Run jobs until ``count`` such events were handled (callbacks arrive asynchronously)."""
    def done():
        rows = [r for r in event_rows(change_type, external_userid) if r.status == "done"]
        return rows if len(rows) >= count else None

    return wait_for(stack, done)


def resident_of(external_userid: str) -> Resident:
    db.session.remove()
    return db.session.scalar(select(Resident).where(Resident.external_userid == external_userid))


def count_residents(external_userid: str) -> int:
    return db.session.scalar(select(func.count()).where(Resident.external_userid == external_userid))


def relationships(resident_id: int) -> list[ContactRelationship]:
    db.session.remove()
    return list(db.session.scalars(
        select(ContactRelationship)
        .where(ContactRelationship.resident_id == resident_id)
        .order_by(ContactRelationship.id)
    ))


def coupons(resident_id: int) -> list[Coupon]:
    """What the diner's coupon list shows: every coupon held by the resident."""
    db.session.remove()
    return list(db.session.scalars(select(Coupon).where(Coupon.resident_id == resident_id).order_by(Coupon.id)))


def scan_signals(resident_id: int) -> set[tuple[str, str]]:
    db.session.remove()
    rows = db.session.scalars(select(TasteSignal).where(TasteSignal.resident_id == resident_id))
    return {(s.cuisine, s.ref) for s in rows if s.source.value == "scan"}


def channel_adds(channel_id: int) -> int:
    return db.session.scalar(select(func.count()).where(ChannelAdd.channel_id == channel_id))


def reachable(resident_id: int) -> bool:
    db.session.remove()
    return services.is_reachable(db.session, resident_id)


def links(messages: list[dict]) -> list[dict]:
    return [m["link"] for m in messages if m["msgtype"] == "link"]


def texts(messages: list[dict]) -> list[str]:
    return [m["text"]["content"] for m in messages if m["msgtype"] == "text"]


# --- the add event ------------------------------------------------------------------------


def test_there_is_one_add_handler_and_it_is_ours(stack):
    found = registry.handlers_for({"Event": "change_external_contact", "ChangeType": ADD})
    assert welcome.on_add_external_contact in found
    # one add flow: the roof's (marketplace.welcome) spans contact → coupon → welcome; the
    # residents domain registers no second one
    assert not [h for h in found if h.__module__.startswith("residents")]


def test_scan_makes_resident_relationship_signals_coupon_and_welcome_card(stack, signal_log):
    ws = welcome_store(get_wecom(), ["lina"], cuisines=["sichuan", "hotpot"], welcome_text="欢迎光临！")
    missed = welcome.missed_count()

    result = scan(stack, "tiantian", ws)
    assert (result["userid"], result["state"]) == ("lina", ws.state)
    messages = wait_for(stack, lambda: len(welcomes(stack, "tiantian")) >= 2 and welcomes(stack, "tiantian"))

    # the resident, with what externalcontact/get said about the diner
    diner = wechat_user(stack, "tiantian")
    resident = resident_of(result["external_userid"])
    assert (resident.name, resident.unionid) == ("甜甜", diner["unionid"])
    assert resident.avatar.startswith("http")

    # one open relationship: member, store and channel from the State
    (rel,) = relationships(resident.id)
    assert rel.member_id == make_member(db.session, "lina").id
    assert (rel.store_id, rel.channel_id, rel.status) == (ws.store_id, ws.channel_id, RelationshipStatus.open)
    assert channel_counts(db.session, ws.store_id) == {ws.channel_id: 1}

    # a scan signal per cuisine of the store
    assert scan_signals(resident.id) == {("sichuan", f"store:{ws.store_id}"), ("hotpot", f"store:{ws.store_id}")}
    assert set(taste.profile(db.session, resident.id)) == {"sichuan", "hotpot"}

    # the welcome coupon, held by the resident
    (coupon,) = coupons(resident.id)
    assert (coupon.template_id, coupon.holder_ref, coupon.status) == (ws.template_id, f"r:{resident.id}",
                                                                      CouponStatus.issued)
    assert rel.welcome_coupon_id == coupon.id

    # the welcome: the store's text, then a link card to the coupon page signed for the diner
    assert {m["from"] for m in messages} == {"lina"}
    assert texts(messages) == ["欢迎光临！"]
    (card,) = links(messages)
    url = urlsplit(card["url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{stack.app_url}/m/c/{coupon.short_code}"
    assert load_token(parse_qs(url.query)["t"][0]) == resident.id
    assert "新客立减10元" in card["title"] and "满50减10" in card["desc"]
    assert welcome.missed_count() == missed

    (added,) = signal_log.of("contact_added")
    assert added == {"resident_id": resident.id, "member_id": rel.member_id, "store_id": ws.store_id,
                     "first_time": True, "scan": {"state": ws.state, "at": added["scan"]["at"]}}
    assert datetime.fromisoformat(added["scan"]["at"]) == rel.added_at.replace(tzinfo=timezone.utc)
    assert signal_log.of("taste_changed") == [{"resident_id": resident.id}]


def test_the_welcome_job_does_only_what_the_welcome_needs(stack, signal_log):
    """The high queue carries the welcome alone: the resident, the relationship, the coupon
    and the message. The scan's taste signals, the channel's count and the tags come after,
    from one job on ``default``."""
    ws = welcome_store(get_wecom(), ["wangfang"], cuisines=["cantonese"])
    made = admin(stack, "wechat_users", {"handles": ["first-in-line"]})  # a diner new to the corp
    assert made["created"] == 1
    external_userid = scan(stack, "first-in-line", ws)["external_userid"]
    assert made["external_userids"] == {"first-in-line": external_userid}

    def welcomed_from_high_alone():
        db.session.remove()
        make_worker(stack.app, simple=True, queues=(QUEUE_HIGH,)).work(burst=True)
        rows = [r for r in event_rows(ADD, external_userid) if r.status == "done"]
        return rows or None

    deadline = time.monotonic() + 20
    while not welcomed_from_high_alone():
        assert time.monotonic() < deadline, "the add event was never handled"
        time.sleep(0.1)
    resident = resident_of(external_userid)
    (rel,) = relationships(resident.id)
    assert rel.status == RelationshipStatus.open and len(coupons(resident.id)) == 1
    assert [m["msgtype"] for m in welcomes(stack, "first-in-line")] == ["text", "link"]
    assert scan_signals(resident.id) == set() and channel_adds(ws.channel_id) == 0
    queued = get_queue(QUEUE_DEFAULT).get_jobs()
    assert [j.func_name for j in queued if j.args and j.args[0] == resident.id] == ["residents.jobs.record_add_evidence"]

    drain(stack)
    assert scan_signals(resident.id) == {("cantonese", f"store:{ws.store_id}")}
    assert channel_adds(ws.channel_id) == 1
    assert signal_log.of("taste_changed") == [{"resident_id": resident.id}]
    db.session.remove()
    assert db.session.scalar(select(func.count()).where(ResidentTag.resident_id == resident.id)) >= 1


def test_the_same_event_three_times_gives_one_of_each(stack, signal_log):
    ws = welcome_store(get_wecom(), ["wangfang"], cuisines=["cantonese"])
    missed = welcome.missed_count()
    external_userid = scan(stack, "haohao", ws)["external_userid"]
    (row,) = processed(stack, ADD, external_userid)
    wait_for(stack, lambda: len(welcomes(stack, "haohao")) >= 2)

    # 1. WeCom's retry: the same event, freshly encrypted, over HTTP — dropped as a duplicate
    cfg = stack.app.config
    crypto = WeComCrypto(cfg["WECOM_CALLBACK_TOKEN"], cfg["WECOM_CALLBACK_AES_KEY"], cfg["WECOM_CORP_ID"])
    sent = stack.http.get(f"{stack.sim_url}/sim/admin/callbacks").json()["callbacks"]
    plaintext = next(c["xml"] for c in sent if c["change_type"] == ADD and external_userid in c["xml"])
    timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**9))
    encrypt, signature = crypto.encrypt_message(plaintext, timestamp, nonce)
    response = stack.http.post(
        f"{stack.app_url}/wecom/callback", params={"msg_signature": signature, "timestamp": timestamp, "nonce": nonce},
        content=envelope(cfg["WECOM_CORP_ID"], encrypt, DEMO_AGENT_ID).encode(),
    )
    assert response.status_code == 200
    # 2. the stored event's job runs again (as requeue_pending does after a Redis loss)
    with transaction(db.session) as session:
        session.get(WeComEvent, row.id).status = "pending"
    enqueue(QUEUE_HIGH, process_event, row.id, job_id=f"wecom-event-{row.id}-replay")
    # 3. the same payload reaches the sink under another digest (dedupe keys long expired)
    accept_callback(dict(row.payload), hashlib.sha256(f"{row.digest}:again".encode()).hexdigest())
    drain(stack)

    assert [r.status for r in event_rows(ADD, external_userid)] == ["done", "done"]
    resident = resident_of(external_userid)
    assert count_residents(external_userid) == 1
    assert len(relationships(resident.id)) == 1
    assert len(coupons(resident.id)) == 1 and template_issued(ws.template_id) == 1
    assert channel_adds(ws.channel_id) == 1
    assert scan_signals(resident.id) == {("cantonese", f"store:{ws.store_id}")}
    messages = welcomes(stack, "haohao")
    assert (len(texts(messages)), len(links(messages))) == (1, 1)
    assert welcome.missed_count() == missed  # replays are not misses: the code was used once
    assert len(signal_log.of("contact_added", resident_id=resident.id)) == 1
    assert len(signal_log.of("taste_changed", resident_id=resident.id)) == 1


def test_concurrent_jobs_for_one_add_give_one_of_each(stack, signal_log):
    ws = welcome_store(get_wecom(), ["chenjing"], cuisines=["bbq"])
    missed = welcome.missed_count()
    external_userid = scan(stack, "dagang", ws)["external_userid"]
    deadline = time.monotonic() + 15
    while not event_rows(ADD, external_userid):  # stored and queued, not yet run
        assert time.monotonic() < deadline, "callback never arrived"
        time.sleep(0.05)
    payload = dict(event_rows(ADD, external_userid)[0].payload)

    barrier, errors = threading.Barrier(3), []

    def run() -> None:
        with stack.app.app_context():
            try:
                barrier.wait()
                welcome.on_add_external_contact(payload)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    processed(stack, ADD, external_userid)  # and the queued job, a fourth run

    resident = resident_of(external_userid)
    assert count_residents(external_userid) == 1
    assert len(relationships(resident.id)) == 1
    assert len(coupons(resident.id)) == 1 and template_issued(ws.template_id) == 1
    assert channel_adds(ws.channel_id) == 1
    messages = welcomes(stack, "dagang")
    assert (len(texts(messages)), len(links(messages))) == (1, 1)
    assert welcome.missed_count() == missed  # one run sent it; the others saw the code taken
    assert len(signal_log.of("contact_added", resident_id=resident.id)) == 1


def test_welcome_code_past_its_window_still_leaves_the_coupon(stack, signal_log):
    ws = welcome_store(get_wecom(), ["liuyang"], cuisines=["noodles"])
    missed = welcome.missed_count()
    # the simulator refuses codes older than welcome_code_ttl: 0 s = the job ran too late
    admin(stack, "config", {"welcome_code_ttl": 0})
    try:
        external_userid = scan(stack, "laozhang", ws)["external_userid"]
        (row,) = processed(stack, ADD, external_userid)
    finally:
        admin(stack, "config", {"welcome_code_ttl": 20})

    assert row.error is None
    assert welcome.missed_count() == missed + 1
    assert welcomes(stack, "laozhang") == []
    resident = resident_of(external_userid)
    (coupon,) = coupons(resident.id)
    assert coupon.template_id == ws.template_id and coupon.status == CouponStatus.issued
    assert [r.status for r in relationships(resident.id)] == [RelationshipStatus.open]
    assert len(signal_log.of("contact_added", resident_id=resident.id)) == 1


def test_diner_scanning_two_stores(stack, signal_log):
    noodles = welcome_store(get_wecom(), ["yangmin"], cuisines=["noodles"], welcome_text="面馆欢迎你")
    sushi = welcome_store(get_wecom(), ["zhangwei"], cuisines=["japanese", "dessert"], name="日料满100减30",
                          value=3000, min_spend_fen=10000)
    external_userid = scan(stack, "xiaoyu", noodles)["external_userid"]
    processed(stack, ADD, external_userid)
    scan(stack, "xiaoyu", sushi)
    processed(stack, ADD, external_userid, count=2)

    resident = resident_of(external_userid)
    assert count_residents(external_userid) == 1
    rels = relationships(resident.id)
    assert [(r.store_id, r.member_id) for r in rels] == [
        (noodles.store_id, make_member(db.session, "yangmin").id),
        (sushi.store_id, make_member(db.session, "zhangwei").id),
    ]
    assert {c.template_id for c in coupons(resident.id)} == {noodles.template_id, sushi.template_id}
    assert scan_signals(resident.id) == {
        ("noodles", f"store:{noodles.store_id}"), ("japanese", f"store:{sushi.store_id}"),
        ("dessert", f"store:{sushi.store_id}"),
    }
    messages = wait_for(stack, lambda: len(welcomes(stack, "xiaoyu")) >= 4 and welcomes(stack, "xiaoyu"))
    assert texts(messages) == ["面馆欢迎你", welcome.DEFAULT_WELCOME]  # no text of its own: the default
    assert [("日料" in card["title"]) for card in links(messages)] == [False, True]
    assert [kw["first_time"] for kw in signal_log.of("contact_added", resident_id=resident.id)] == [True, False]


def test_two_stores_sharing_a_template_hand_out_one_coupon(stack):
    first = welcome_store(get_wecom(), ["wangfang"], cuisines=["xibei"], per_diner_limit=1)
    second = welcome_store(get_wecom(), ["liuyang"], shop=first.shop, template_id=first.template_id)
    external_userid = scan(stack, "fangfang", first)["external_userid"]
    processed(stack, ADD, external_userid)
    scan(stack, "fangfang", second)
    processed(stack, ADD, external_userid, count=2)

    resident = resident_of(external_userid)
    (coupon,) = coupons(resident.id)  # the per-diner limit holds across the merchant's stores
    assert [r.welcome_coupon_id for r in relationships(resident.id)] == [coupon.id, coupon.id]
    messages = wait_for(stack, lambda: len(links(welcomes(stack, "fangfang"))) >= 2 and welcomes(stack, "fangfang"))
    assert {urlsplit(card["url"]).path for card in links(messages)} == {f"/m/c/{coupon.short_code}"}


def test_code_without_our_state_still_records_the_contact(stack, signal_log):
    way = get_wecom().contact_way.add(type=1, scene=2, user=["lina"], state="promo-2024", skip_verify=True)
    result = admin(stack, "scan", {"wechat_user": "mengmeng", "config_id": way["config_id"]})
    processed(stack, ADD, result["external_userid"])
    messages = wait_for(stack, lambda: welcomes(stack, "mengmeng"))

    resident = resident_of(result["external_userid"])
    (rel,) = relationships(resident.id)
    assert (rel.store_id, rel.channel_id, rel.status) == (None, None, RelationshipStatus.open)
    assert coupons(resident.id) == [] and scan_signals(resident.id) == set()
    assert texts(messages) == [welcome.DEFAULT_WELCOME] and links(messages) == []
    assert signal_log.of("contact_added", resident_id=resident.id)[0]["store_id"] is None
    assert signal_log.of("taste_changed", resident_id=resident.id) == []


# --- lost contacts ------------------------------------------------------------------------


def test_deleted_contacts_close_relationships_and_make_the_resident_unreachable(stack, signal_log):
    a = welcome_store(get_wecom(), ["lina"], cuisines=["hunan"])
    b = welcome_store(get_wecom(), ["chenjing"], cuisines=["korean"])
    external_userid = scan(stack, "yueyue", a)["external_userid"]
    processed(stack, ADD, external_userid)
    scan(stack, "yueyue", b)
    processed(stack, ADD, external_userid, count=2)
    resident = resident_of(external_userid)
    lina, chenjing = make_member(db.session, "lina").id, make_member(db.session, "chenjing").id
    assert reachable(resident.id)

    # the diner deletes lina: that relationship closes, chenjing can still reach them
    admin(stack, "delete_contact", {"wechat_user": "yueyue", "userid": "lina", "by": "customer"})
    processed(stack, "del_follow_user", external_userid)
    by_store = {r.store_id: r for r in relationships(resident.id)}
    assert by_store[a.store_id].status == RelationshipStatus.closed
    assert by_store[a.store_id].close_reason == "del_follow_user" and by_store[a.store_id].closed_at is not None
    assert by_store[b.store_id].status == RelationshipStatus.open
    assert reachable(resident.id)

    # chenjing deletes the diner: nobody can reach them any more
    admin(stack, "delete_contact", {"wechat_user": "yueyue", "userid": "chenjing", "by": "member"})
    processed(stack, "del_external_contact", external_userid)
    by_store = {r.store_id: r for r in relationships(resident.id)}
    assert (by_store[b.store_id].status, by_store[b.store_id].close_reason) == (RelationshipStatus.closed,
                                                                                "del_external_contact")
    assert not reachable(resident.id)
    reachable_ids = db.session.scalars(services.reachable_residents_query().with_only_columns(Resident.id)).all()
    assert resident.id not in reachable_ids
    assert db.session.scalar(services.pushable(select(Resident.id)).where(Resident.id == resident.id)) is None
    assert signal_log.of("contact_closed", resident_id=resident.id) == [
        {"resident_id": resident.id, "member_id": lina, "reason": "del_follow_user"},
        {"resident_id": resident.id, "member_id": chenjing, "reason": "del_external_contact"},
    ]

    # scanning store A again reopens the same relationship; the welcome coupon is not given twice
    scan(stack, "yueyue", a)
    processed(stack, ADD, external_userid, count=3)
    by_store = {r.store_id: r for r in relationships(resident.id)}
    assert len(by_store) == 2
    assert (by_store[a.store_id].status, by_store[a.store_id].closed_at) == (RelationshipStatus.open, None)
    assert reachable(resident.id)
    assert len([c for c in coupons(resident.id) if c.template_id == a.template_id]) == 1
    assert template_issued(a.template_id) == 1
    assert signal_log.of("contact_added", resident_id=resident.id)[-1]["first_time"] is False


def test_pushable_excludes_opted_out_and_erased_residents(stack):
    with transaction(db.session) as session:
        plain, _ = resident_with_contact(session, userid="lina")
        quiet, _ = resident_with_contact(session, userid="lina", opted_out=True)
        erased, _ = resident_with_contact(session, userid="lina", name="", erased_at=utcnow())
        gone, rel = resident_with_contact(session, userid="wangfang")
        rel.status = RelationshipStatus.closed
        services.refresh_reachable(session, gone.id)
        ids = {plain.id, quiet.id, erased.id, gone.id}
    db.session.remove()
    reach = set(db.session.scalars(services.reachable_residents_query().with_only_columns(Resident.id))) & ids
    push = set(db.session.scalars(services.pushable(select(Resident.id)))) & ids
    assert reach == {plain.id, quiet.id, erased.id}
    assert push == {plain.id}
    assert services.is_pushable(db.session, plain.id) and not services.is_pushable(db.session, quiet.id)
    assert not services.is_reachable(db.session, gone.id)


@pytest.mark.parametrize("payload", [
    {"ChangeType": "del_follow_user", "UserID": "lina", "ExternalUserID": "wmNOBODY"},
    {"ChangeType": "del_external_contact", "UserID": "nobody", "ExternalUserID": "wmNOBODY"},
])
def test_deletes_for_unknown_contacts_are_harmless(stack, signal_log, payload):
    registry.dispatch({"Event": "change_external_contact", **payload})
    assert signal_log.of("contact_closed") == []


# --- a bad welcome coupon never costs the diner the welcome -------------------------------


def test_a_template_stored_with_an_absurd_date_still_sends_the_welcome(stack, signal_log):
    ws = welcome_store(get_wecom(), ["liuyang"], cuisines=["bbq"], welcome_text="烧烤欢迎你",
                       valid_days=None, valid_from=date(2025, 1, 1), valid_until=date(2025, 12, 31))
    with transaction(db.session) as session:  # written before the bounds existed
        session.get(CouponTemplate, ws.template_id).valid_until = date(9999, 12, 31)
    missed, coupon_missed = welcome.missed_count(), welcome.coupon_missed_count()

    external_userid = scan(stack, "kaikai", ws)["external_userid"]
    (row,) = processed(stack, ADD, external_userid)
    messages = wait_for(stack, lambda: welcomes(stack, "kaikai"))

    assert row.error is None
    assert texts(messages) == ["烧烤欢迎你"] and links(messages) == []
    resident = resident_of(external_userid)
    assert coupons(resident.id) == [] and template_issued(ws.template_id) == 0
    assert [r.status for r in relationships(resident.id)] == [RelationshipStatus.open]
    assert welcome.coupon_missed_count() == coupon_missed + 1
    assert welcome.missed_count() == missed  # the code itself was used
    assert len(signal_log.of("contact_added", resident_id=resident.id)) == 1


def test_a_failed_add_still_welcomes_and_a_retry_finishes_it(stack, signal_log, monkeypatch):
    ws = welcome_store(get_wecom(), ["chenjing"], cuisines=["dessert"], welcome_text="甜品店欢迎你")
    coupon_missed = welcome.coupon_missed_count()

    def broken(*args, **kwargs):
        raise OverflowError("date value out of range")

    monkeypatch.setattr(welcome.residents, "contact_added", broken)
    external_userid = scan(stack, "beibei", ws)["external_userid"]
    (row,) = wait_for(stack, lambda: [r for r in event_rows(ADD, external_userid) if r.status == "failed"])
    assert "OverflowError" in row.error
    assert texts(welcomes(stack, "beibei")) == ["甜品店欢迎你"]  # the text went out anyway
    assert welcome.coupon_missed_count() == coupon_missed + 1
    assert [r.id for r in list_events(db.session)][:1] == [row.id]  # listed for the operator
    db.session.remove()

    monkeypatch.undo()
    assert retry_failed([row.id], now=True) == {row.id: "handled by 1"}
    (done,) = event_rows(ADD, external_userid)
    assert done.status == "done" and done.error is None
    resident = resident_of(external_userid)
    (coupon,) = coupons(resident.id)  # in the diner's coupon list
    assert coupon.template_id == ws.template_id
    messages = welcomes(stack, "beibei")
    assert (len(texts(messages)), len(links(messages))) == (1, 0)  # the code was used once
    assert len(signal_log.of("contact_added", resident_id=resident.id)) == 1
