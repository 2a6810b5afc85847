"""Privacy requests through the ``linli`` CLI: export everything held about a diner, erase it
(coupons and redemptions stay for the merchant's accounts, detached), erase again (no-op)."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from core.db import db
from core.inbox.models import WeComEvent
from coupons.models import Coupon, Redemption
from coupons.services import issue_coupon, redeem
from marketplace.all_models import metadata
from marketplace.cli import main
from merchants.models import Channel, ChannelAdd, Member, Region, RegionLevel
from merchants.services import make_state
from residents import tokens
from residents.models import (
    ContactRelationship,
    CorpTag,
    RelationshipStatus,
    Resident,
    ResidentTag,
    SignalSource,
    TasteSignal,
)
from tests.support.coupons import NOW, make_shop, make_template, tx

EXT = "wmPrivacyTestDinerExternalUserid01"
UNIONID = "oPrivacyTestUnionid000000001"


@dataclass
class Diner:
    resident_id: int
    coupon_ids: list[int]
    redemption_id: int
    event_ids: list[int]


@pytest.fixture
def diner(app) -> Diner:
    with tx():
        circle = Region(name="幸福里", level=RegionLevel.circle)
        db.session.add(circle)
        db.session.flush()
        shop = make_shop(db.session, circle)
        shop_ids = (shop.merchant.id, shop.store.id, shop.cashier.id)
    merchant_id, store_id, cashier_id = shop_ids
    template = make_template(shop, per_diner_limit=2)
    with tx():
        member = Member(userid="liuyang", name="刘洋", can_hold_customers=True)
        resident = Resident(external_userid=EXT, unionid=UNIONID, name="王小明", avatar="https://wx.example/a.png",
                            spice_level=2, budget_fen=8000, monthly_cap=4)
        channel = Channel(store_id=store_id, name="门口海报", kind="door")
        db.session.add_all([member, resident, channel])
        db.session.flush()
        channel.state, channel.config_id = make_state(store_id, channel.id), f"cfg-{channel.id}"
        db.session.add_all([
            ContactRelationship(resident_id=resident.id, member_id=member.id, store_id=store_id, channel_id=channel.id),
            ChannelAdd(channel_id=channel.id, external_userid=EXT, member_userid="liuyang", added_at=NOW),
            TasteSignal(resident_id=resident.id, cuisine="sichuan", source=SignalSource.scan, ref=f"store:{store_id}"),
            TasteSignal(resident_id=resident.id, cuisine="hotpot", source=SignalSource.survey, ref="survey"),
        ])
        tag = CorpTag(key="cuisine:sichuan", group_name="口味", name="川菜", tag_id="etSichuan")
        db.session.add(tag)
        db.session.flush()
        db.session.add(ResidentTag(resident_id=resident.id, member_id=member.id, corp_tag_id=tag.id))
        # the same template under both holder refs a diner can have (old and new style)
        first = issue_coupon(db.session, template.id, f"r:{resident.id}", resident_id=resident.id, now=NOW)
        second = issue_coupon(db.session, template.id, EXT, now=NOW)
        events = [
            WeComEvent(digest="d1", event="change_external_contact", change_type="add_external_contact",
                       payload={"Event": "change_external_contact", "UserID": "liuyang", "ExternalUserID": EXT}),
            WeComEvent(digest="d2", event="change_external_chat", change_type="update",
                       payload={"Event": "change_external_chat", "MemChangeList": ["wmSomeoneElse", EXT]}),
            WeComEvent(digest="d3", event="change_external_contact", change_type="add_external_contact",
                       payload={"Event": "change_external_contact", "ExternalUserID": "wmSomeoneElse"}),
        ]
        db.session.add_all(events)
        db.session.flush()
        ids = Diner(resident.id, [first.id, second.id], 0, [e.id for e in events])
    with tx():
        coupon = db.session.get(Coupon, ids.coupon_ids[0])
        result = redeem(db.session, coupon.short_code, store_id, cashier_id, 12000, "till-1", now=NOW,
                        merchant_id=merchant_id)
        ids.redemption_id = result.redemption_id
    db.session.remove()
    return ids


def run(runner, *args: str):
    return runner.invoke(main, list(args), catch_exceptions=False)


def test_export_holds_everything_about_the_diner(runner, diner):
    result = run(runner, "resident", "export", EXT)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["resident"]["name"] == "王小明" and data["resident"]["unionid"] == UNIONID
    assert data["resident"]["spice_level"] == 2 and data["resident"]["erased_at"] is None
    assert data["phone_numbers"] == "none collected"
    [rel] = data["relationships"]
    assert rel["member"] == {"userid": "liuyang", "name": "刘洋"} and rel["status"] == "open"
    assert rel["channel"]["name"] == "门口海报"
    assert sorted(s["cuisine"] for s in data["taste_signals"]) == ["hotpot", "sichuan"]
    assert [t["name"] for t in data["tags"]] == ["川菜"]
    assert sorted(c["id"] for c in data["coupons"]) == sorted(diner.coupon_ids)
    [redemption] = data["redemptions"]
    assert redemption["bill_fen"] == 12000 and redemption["coupon_id"] == diner.coupon_ids[0]
    assert [s["channel"] for s in data["channel_scans"]] == ["门口海报"]
    assert sorted(e["id"] for e in data["wecom_events"]) == diner.event_ids[:2]  # not the other diner's
    by_id = run(runner, "resident", "export", str(diner.resident_id))
    assert json.loads(by_id.output) == data


def test_erase_forgets_the_person_and_keeps_the_accounts(runner, diner):
    result = run(runner, "resident", "erase", EXT, "--yes")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["already_erased"] is False and summary["tombstone"] == f"erased:{diner.resident_id}"
    assert (summary["taste_signals_deleted"], summary["tags_deleted"], summary["coupons_detached"]) == (2, 1, 2)

    db.session.remove()
    resident = db.session.get(Resident, diner.resident_id)
    assert resident.external_userid == f"erased:{diner.resident_id}" and resident.erased_at is not None
    assert (resident.name, resident.avatar, resident.unionid) == ("", "", None)
    assert (resident.spice_level, resident.budget_fen, resident.opted_out) == (None, None, True)
    assert db.session.scalars(select(TasteSignal)).all() == []
    assert db.session.scalars(select(ResidentTag)).all() == []
    [rel] = db.session.scalars(select(ContactRelationship)).all()
    assert (rel.status, rel.close_reason) == (RelationshipStatus.closed, "erased")
    # coupons and the redemption stay for the merchant, with nothing that leads to the person
    coupons = db.session.scalars(select(Coupon).order_by(Coupon.id)).all()
    assert [c.id for c in coupons] == diner.coupon_ids
    assert all(c.resident_id is None and c.holder_ref.startswith("erased:") for c in coupons)
    assert db.session.get(Redemption, diner.redemption_id).bill_fen == 12000
    assert db.session.scalar(select(ChannelAdd.external_userid)) == f"erased:{diner.resident_id}"
    payloads = [db.session.get(WeComEvent, i).payload for i in diner.event_ids]
    assert EXT not in json.dumps(payloads) and "wmSomeoneElse" in json.dumps(payloads)

    export = run(runner, "resident", "export", str(diner.resident_id)).output
    for secret in (EXT, UNIONID, "王小明", "https://wx.example/a.png"):
        assert secret not in export
    assert json.loads(export)["resident"]["erased_at"]


def test_erase_revokes_the_diners_links_and_sessions(app, runner, diner):
    """Issue item 7: a forwarded welcome card, an open session and an unspent sign-in all stop
    working once the diner is erased."""
    with tx():
        held = [db.session.get(Coupon, i) for i in diner.coupon_ids]
        codes = [c.short_code for c in held if c.resident_id == diner.resident_id]  # the pages' coupons
    assert codes
    with app.test_request_context():
        links = [tokens.make_link_token(diner.resident_id, code) for code in codes]
        spare_sign_in = tokens.make_sign_in_token(diner.resident_id)
        first_sign_in = tokens.make_sign_in_token(diner.resident_id)
    forwardee, own_phone = app.test_client(), app.test_client()
    for code, link in zip(codes, links):
        forwardee.get(f"/m/c/{code}?t={link}")
        assert forwardee.get(f"/m/c/{code}").status_code == 200
    own_phone.get(f"/m/?t={first_sign_in}")
    assert own_phone.get("/m/").status_code == 200

    assert run(runner, "resident", "erase", EXT, "--yes").exit_code == 0
    db.session.remove()

    for code, link in zip(codes, links):
        assert forwardee.get(f"/m/c/{code}").status_code == 302  # no longer shown: off to WeChat
        assert forwardee.get(f"/m/c/{code}/status").status_code == 401
        forwardee.get(f"/m/c/{code}?t={link}")  # opened afresh
        assert forwardee.get(f"/m/c/{code}").status_code == 302
    assert own_phone.get("/m/").status_code == 302
    latecomer = app.test_client()
    latecomer.get(f"/m/?t={spare_sign_in}")
    assert latecomer.get("/m/").status_code == 302


def test_erase_twice_changes_nothing(runner, diner):
    assert run(runner, "resident", "erase", str(diner.resident_id), "--yes").exit_code == 0
    db.session.remove()
    before = run(runner, "resident", "export", str(diner.resident_id)).output
    again = run(runner, "resident", "erase", f"erased:{diner.resident_id}", "--yes")
    assert again.exit_code == 0 and json.loads(again.output)["already_erased"] is True
    db.session.remove()
    assert run(runner, "resident", "export", str(diner.resident_id)).output == before


def test_erase_asks_first_and_unknown_diners_are_an_error(runner, diner):
    declined = runner.invoke(main, ["resident", "erase", EXT], input="n\n")
    assert declined.exit_code != 0
    db.session.remove()
    assert db.session.get(Resident, diner.resident_id).erased_at is None
    missing = runner.invoke(main, ["resident", "export", "wmNobody"])
    assert missing.exit_code != 0 and "no resident" in missing.output


def test_no_phone_numbers_are_collected():
    """The schema has exactly one mobile number: the merchant's business contact."""
    phoneish = {
        (table.name, column.name)
        for table in metadata.sorted_tables
        for column in table.columns
        if any(word in column.name.lower() for word in ("mobile", "phone", "tel"))
    }
    assert phoneish == {("merchants", "contact_mobile")}
