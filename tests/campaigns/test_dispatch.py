"""Campaigns end to end over real HTTP with the WeCom simulator: the clock opens a round,
the plan job decides, the send job creates one task per (member, card set), members confirm,
tracking stores each recipient's result and the campaigns finish. Overlapping audiences get
one digest with both merchants' cards; opted-out, unreachable and capped diners get nothing,
and the ledger says why. Lost answers (HTTP 502 after WeCom did the work) and refusals change
no outcome: the task is found again, never created twice."""
from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from campaigns import jobs
from campaigns.models import Campaign, CampaignState, ChunkState, Decision, Delivery, DeliveryStatus, Push, SendChunk
from campaigns.services import CampaignInput, claims, create_campaign, dispatch, launch
from coupons.services.redemption import redeem
from core.db import db, utcnow
from core.localtime import local
from core.txn import transaction
from marketplace.cli import main
from residents import taste
from residents.models import ContactRelationship, RelationshipStatus, Resident, SignalSource
from residents.services import refresh_reachable
from residents.tokens import make_sign_in_token
from tests.support.campaigns import sent_before
from tests.support.coupons import login, logout, make_shop, make_template
from tests.support.residents import add_staff, make_circle, make_member, make_resident, open_contact

_batch = itertools.count(1)


@pytest.fixture(autouse=True)
def quiet_simulator(stack):
    """Members confirm by hand (no auto-confirm); faults cleared after each test."""
    stack.http.post(f"{stack.sim_url}/sim/admin/config", json={"auto_confirm_seconds": 0}).raise_for_status()
    yield
    stack.http.delete(f"{stack.sim_url}/sim/admin/faults")


class Hood:
    """Two merchants' stores in one circle; diners who like Sichuan food, contacts of the
    first store's member, and the last ``overlap`` of them of the second's too."""

    def __init__(self, stack, diners: int = 12, overlap: int = 6):
        self.stack = stack
        n = next(_batch)
        handles = [f"cp{n}d{i}" for i in range(diners)]
        ext = stack.http.post(f"{stack.sim_url}/sim/admin/wechat_users",
                              json={"handles": handles, "nickname": "川菜迷"}).json()["external_userids"]
        self.ext = [ext[h] for h in handles]
        self.handles = handles
        for userid, group in (("zhangwei", handles), ("lina", handles[diners - overlap:])):
            if group:
                stack.http.post(f"{stack.sim_url}/sim/admin/contacts",
                                json={"userid": userid, "wechat_users": group}).raise_for_status()
        with transaction(db.session) as session:
            circle = make_circle(session)
            self.a = make_shop(session, circle, name="川味小馆")
            self.b = make_shop(session, circle, name="蜀香园")
            self.owners = {"a": self.a.owner.username, "b": self.b.owner.username}
            self.till_b = (self.b.store.id, self.b.cashier.id, self.b.merchant.id)
            add_staff(session, self.a.store, "zhangwei")
            add_staff(session, self.b.store, "lina")
            zhangwei, lina = make_member(session, "zhangwei"), make_member(session, "lina")
            self.residents = []
            for i, e in enumerate(self.ext):
                r = make_resident(session, e, name=f"川菜迷{i}")
                open_contact(session, r, zhangwei, self.a.store)
                if i >= diners - overlap:
                    open_contact(session, r, lina, self.b.store)
                taste.record_signal(session, r.id, "sichuan", SignalSource.survey, ref="survey")
                self.residents.append(r.id)
        self.ta = make_template(self.a, valid_from=None, valid_until=None, valid_days=30).id
        self.tb = make_template(self.b, valid_from=None, valid_until=None, valid_days=30, name="8.8折").id

    def campaign(self, shop, template_id: int, **kw) -> int:
        start = utcnow() - timedelta(minutes=1)
        data = CampaignInput(name=kw.pop("name", "川菜周"), message=kw.pop("message", "本周川菜券"),
                             reason=kw.pop("reason", "你喜欢川菜"), template_ids=[template_id], send_from=start,
                             send_until=start + timedelta(days=2), quiet_start=0, quiet_end=0,
                             audience={"cuisines": ["sichuan"]}, **kw)
        with transaction(db.session) as session:
            owner = session.merge(shop.owner)
            campaign_id = create_campaign(session, owner, data).id
            launch(session, owner, campaign_id)
        return campaign_id

    def run(self) -> None:
        """One tick of the clock and every job it leads to."""
        db.session.remove()
        jobs.tick()
        self.stack.drain()
        db.session.remove()

    def masses(self) -> list[dict]:
        mine = set(self.ext)
        return [m for m in self.stack.http.get(f"{self.stack.sim_url}/sim/admin/mass_messages").json()["mass_messages"]
                if any(t["external_userid"] in mine for task in m["tasks"] for t in task["targets"])]

    def confirm_all(self) -> None:
        for m in self.masses():
            self.stack.http.post(f"{self.stack.sim_url}/sim/admin/confirm/{m['msgid']}").raise_for_status()

    def inbox(self, i: int) -> list[dict]:
        url = f"{self.stack.sim_url}/sim/admin/inbox/{self.handles[i]}"
        return [m for m in self.stack.http.get(url).json()["messages"] if m["source"] == "mass"]


def sent_pairs(masses: list[dict]) -> Counter:
    """(member, recipient) pairs in WeCom's record of live (not cancelled) tasks."""
    return Counter((task["userid"], t["external_userid"]) for m in masses for task in m["tasks"]
                   if not task["cancelled"] for t in task["targets"])


def personal_link(resident_id: int, path: str) -> str:
    return f"{path}?t={make_sign_in_token(resident_id)}"


def state_of(campaign_id: int) -> CampaignState:
    db.session.remove()
    return db.session.get(Campaign, campaign_id).state


def decisions(campaign_id: int) -> dict[int, Decision]:
    db.session.remove()
    return dict(db.session.execute(select(Push.resident_id, Push.decision).where(Push.campaign_id == campaign_id)).all())


def test_two_merchants_overlapping_audiences_get_one_digest_each_once(stack):
    hood = Hood(stack)
    first, second = hood.campaign(hood.a, hood.ta), hood.campaign(hood.b, hood.tb, name="蜀香周")
    hood.run()  # the tick opens one round for both; the plan job plans it and queues the chunks
    assert state_of(first) == CampaignState.sending and state_of(second) == CampaignState.sending
    masses = hood.masses()
    # residents 0-5 get A's card from zhangwei; 6-11 one digest with both cards, from zhangwei
    # (A's card is first: equal interest, lower id) — two tasks, the minimum
    assert len(masses) == 2
    by_size = sorted(masses, key=lambda m: len(m["attachments"]))
    assert [len(m["attachments"]) for m in by_size] == [1, 2]
    assert "k=" in by_size[1]["attachments"][0]["link"]["url"] and "/m/o/" in by_size[1]["attachments"][1]["link"]["url"]
    assert "为什么收到" in by_size[0]["text"]["content"] and "/m/quiet" in by_size[0]["text"]["content"]
    pairs = sent_pairs(masses)
    assert max(pairs.values()) == 1 and len(pairs) == 12
    assert {member for member, _ in pairs} == {"zhangwei"}

    hood.confirm_all()  # the members press send in WeCom
    hood.run()  # tracking reads each recipient's result
    hood.run()  # and the campaigns finish
    assert state_of(first) == CampaignState.done and state_of(second) == CampaignState.done
    assert len(hood.inbox(0)) == 1 + 1  # text + one card
    assert len(hood.inbox(11)) == 1 + 2  # text + both cards: one message
    db.session.remove()
    chunks = db.session.scalars(select(SendChunk).where(SendChunk.msgid.in_([m["msgid"] for m in masses]))).all()
    assert {c.state for c in chunks} == {ChunkState.confirmed} and sum(c.calls for c in chunks) == 2
    statuses = db.session.scalars(select(Delivery.status).where(Delivery.chunk_id.in_([c.id for c in chunks]))).all()
    assert Counter(statuses) == {DeliveryStatus.sent: 12}
    with transaction(db.session) as session:
        p = dispatch.progress(session, session.get(Campaign, second))
    assert (p.planned, p.tasks, p.confirmed, p.delivered) == (6, 1, 1, 6)
    hood.run()  # nothing more happens: no task twice
    assert len(hood.masses()) == 2
    # two diners claim from the card, one redeems at the store's till
    with transaction(db.session) as session:
        coupons = [claims.claim(session, second, hood.tb, session.get(Resident, r), "tok", utcnow())
                   for r in hood.residents[6:8]]
        store_id, cashier_id, merchant_id = hood.till_b
        redeem(session, coupons[0].short_code, store_id, cashier_id, 20000, "till-1", merchant_id=merchant_id)
    # the same numbers in the CLI and on the owner's progress bar; another merchant sees nothing
    out = stack.app.test_cli_runner().invoke(main, ["campaign", "status", str(second)]).output
    assert "progress planned 6, tasks 1, confirmed 1, delivered 6, claimed 2, redeemed 1" in out
    assert "1 task(s) (fewest possible in its round 2), 1 call(s)" in out
    web = stack.app.test_client()
    login(web, SimpleNamespace(username=hood.owners["b"]))
    page = web.get(f"/campaigns/{second}").get_data(as_text=True)
    assert 'data-testid="stage-delivered">6<' in page
    assert web.get(f"/campaigns/{second}/progress.json").get_json()["stages"]["delivered"] == 6
    listing = web.get("/campaigns/").get_data(as_text=True)  # this month's messages against the caps
    assert 'data-testid="quota-sent">6<' in listing and 'data-testid="quota-room">6<' in listing
    logout(web)
    login(web, SimpleNamespace(username=hood.owners["a"]))
    assert web.get(f"/campaigns/{second}/progress.json").status_code == 404


def test_opted_out_unreachable_and_capped_diners_get_nothing_and_the_ledger_says_why(stack):
    hood = Hood(stack, diners=5, overlap=0)
    quiet, lost, capped, *_ = hood.residents
    other = hood.campaign(hood.a, hood.ta, name="上周的活动")
    with transaction(db.session) as session:
        session.get(Resident, quiet).opted_out = True
        session.get(Resident, capped).monthly_cap = 1
        sent_before(session, other, capped, local(utcnow()).date(), DeliveryStatus.sent)
        for rel in session.scalars(select(ContactRelationship).where(ContactRelationship.resident_id == lost)):
            rel.status = RelationshipStatus.closed
        refresh_reachable(session, lost)
        session.get(Campaign, other).state = CampaignState.cancelled  # out of the way
    campaign_id = hood.campaign(hood.a, hood.ta)
    hood.run()
    why = decisions(campaign_id)
    assert why[quiet] == Decision.opted_out and why[lost] == Decision.unreachable and why[capped] == Decision.capped
    assert sum(1 for d in why.values() if d == Decision.matched) == 2
    got = {t["external_userid"] for m in hood.masses() for task in m["tasks"] for t in task["targets"]}
    assert got == {hood.ext[3], hood.ext[4]}
    # the portal counts them by reason; each diner's own page says why, in words
    with transaction(db.session) as session:
        p = dispatch.progress(session, session.get(Campaign, campaign_id))
    assert (p.planned, p.capped, p.excluded) == (2, 1, 2)
    phone = stack.app.test_client()
    for resident_id, code, words in ((quiet, "opted_out", "你关闭了推送"), (capped, "capped", "本月可收的推送已用完"),
                                     (lost, "unreachable", "你已不是店员的联系人")):
        phone.get(personal_link(resident_id, "/m/o/why"))
        page = phone.get("/m/o/why").get_data(as_text=True)
        assert f'data-code="{code}"' in page and words in page, page[-1500:]
    phone.get(personal_link(hood.residents[3], "/m/o/why"))
    assert 'data-code="pending"' in phone.get("/m/o/why").get_data(as_text=True)


def test_an_answer_lost_after_wecom_created_the_task_is_found_not_repeated(stack):
    hood = Hood(stack, diners=4, overlap=0)
    # WeCom creates the task, the gateway answers 502: the outcome is unknown to us
    stack.http.post(f"{stack.sim_url}/sim/admin/faults",
                    json={"http_status": 502, "after": True, "path": "externalcontact/add_msg_template"})
    campaign_id = hood.campaign(hood.a, hood.ta)
    hood.run()
    db.session.remove()
    chunk = db.session.scalars(select(SendChunk).where(SendChunk.card_set == str(campaign_id))).one()
    assert chunk.state == ChunkState.claimed and chunk.calls == 1 and chunk.errcode == -1
    assert len(hood.masses()) == 1  # it exists in WeCom
    with transaction(db.session) as session:  # the backoff passes
        session.get(SendChunk, chunk.id).lease_until = utcnow() - timedelta(seconds=1)
    hood.run()
    db.session.remove()
    chunk = db.session.get(SendChunk, chunk.id)
    assert chunk.state == ChunkState.submitted and chunk.calls == 1  # found by its token, not created again
    assert [m["msgid"] for m in hood.masses()] == [chunk.msgid]


def test_refusals_fail_the_chunk_and_pause_the_campaign(stack, monkeypatch):
    monkeypatch.setitem(stack.app.config, "CAMPAIGN_MAX_SEND_ERRORS", 1)
    hood = Hood(stack, diners=3, overlap=0)
    stack.http.post(f"{stack.sim_url}/sim/admin/faults",
                    json={"errcode": 40003, "path": "externalcontact/add_msg_template"})
    campaign_id = hood.campaign(hood.a, hood.ta)
    hood.run()
    db.session.remove()
    chunk = db.session.scalars(select(SendChunk).where(SendChunk.card_set == str(campaign_id))).one()
    assert chunk.state == ChunkState.failed and chunk.errcode == 40003
    assert state_of(campaign_id) == CampaignState.paused
    assert hood.masses() == []


def test_rate_limits_slow_a_send_down_and_change_nothing(stack):
    hood = Hood(stack, diners=3, overlap=0)
    stack.http.post(f"{stack.sim_url}/sim/admin/faults",
                    json={"errcode": 45009, "times": 2, "path": "externalcontact/add_msg_template"})
    campaign_id = hood.campaign(hood.a, hood.ta)
    hood.run()  # the client's own backoff absorbs two 45009s
    db.session.remove()
    chunk = db.session.scalars(select(SendChunk).where(SendChunk.card_set == str(campaign_id))).one()
    assert chunk.state == ChunkState.submitted
    assert len(hood.masses()) == 1 and max(sent_pairs(hood.masses()).values()) == 1


def test_quiet_hours_wrap_past_midnight():
    class C:
        quiet_start, quiet_end = 21 * 60, 9 * 60

    at = lambda h: datetime(2026, 12, 2, h, 30, tzinfo=timezone.utc) - timedelta(hours=8)  # noqa: E731 (local h:30)
    assert [dispatch.in_quiet_hours(C, at(h)) for h in (8, 9, 20, 21, 23, 0)] == [True, False, False, True, True, True]
    C.quiet_start = C.quiet_end = 0
    assert not dispatch.in_quiet_hours(C, at(3))


def test_cards_name_the_brand_diners_know_not_the_company():
    """The card's title starts with who runs the campaign: a diner knows 蜀味小馆, not
    蜀味餐饮管理有限公司."""
    assert dispatch.brand(["蜀味小馆（徐家汇店）", "蜀味小馆（静安店）"], "蜀味餐饮管理有限公司") == "蜀味小馆"
    assert dispatch.brand(["粤来粤好茶餐厅"], "粤来粤好餐饮有限公司") == "粤来粤好茶餐厅"
    assert dispatch.brand(["东门面馆", "西门饺子"], "某某餐饮有限公司") == "某某餐饮有限公司"  # nothing shared
    assert dispatch.brand([], "某某餐饮有限公司") == "某某餐饮有限公司"


def test_owner_names_use_the_approved_stores(app):
    with transaction(db.session) as session:
        shop = make_shop(session, make_circle(session), name="蜀味小馆")
        shop.merchant.name = "蜀味餐饮管理有限公司"
        campaign = SimpleNamespace(id=1, merchant_id=shop.merchant.id, region_id=None)
        assert dispatch.owner_names(session, [campaign]) == {1: "蜀味小馆"}
