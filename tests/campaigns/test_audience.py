"""Who a campaign reaches and why not: the audience rule, every exclusion and every cap, decided
in one SQL statement (on SQLite and PostgreSQL); the taste profile kept in SQL agrees with the
one computed from the signals."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from accounts.models import Role, User
from campaigns.models import Campaign, CampaignState, Delivery, DeliveryStatus
from campaigns.services import AudienceRule, CampaignInput, audience, budget, create_campaign, preview
from core.db import db, utcnow
from core.errors import Invalid, NotFound
from coupons.models import FundedBy, TemplateStatus
from merchants.models import Region
from residents import taste
from residents.models import ContactRelationship, RelationshipStatus, Resident, ResidentTaste, SignalSource
from residents.services import refresh_reachable
from tests.support.campaigns import sent_before
from tests.support.coupons import make_shop, make_template, tx
from tests.support.residents import make_circle, make_member, open_contact, resident_with_contact


@pytest.fixture
def shop(app):
    with tx() as session:
        return make_shop(session, make_circle(session))


def window(days: int = 3):
    start = utcnow() - timedelta(minutes=1)
    return start, start + timedelta(days=days)


def campaign_for(shop, template_id: int, **audience_rule) -> int:
    start, end = window()
    data = CampaignInput(name="川菜周", message="本周川菜券", reason="你常去川菜馆", template_ids=[template_id],
                         send_from=start, send_until=end, audience=audience_rule)
    with tx() as session:
        owner = session.merge(shop.owner)
        return create_campaign(session, owner, data).id


def diner(shop, *cuisines: str, store=None, **fields):
    with tx() as session:
        resident, rel = resident_with_contact(session, store=store or shop.store, **fields)
        for cuisine in cuisines:
            taste.record_signal(session, resident.id, cuisine, SignalSource.survey, ref="survey")
        return resident.id


def look(campaign_id: int):
    db.session.remove()
    with tx() as session:
        return preview(session, session.get(Campaign, campaign_id))


def test_every_exclusion_is_counted_by_its_reason(app, shop):
    template = make_template(shop, valid_from=None, valid_until=None, valid_days=30)
    eligible = diner(shop, "sichuan", name="张小花")
    quiet = diner(shop, "sichuan", opted_out=True)
    gone = diner(shop, "sichuan", erased_at=utcnow())
    lost = diner(shop, "sichuan")
    with tx() as session:
        for rel in session.scalars(select(ContactRelationship).where(ContactRelationship.resident_id == lost)):
            rel.status = RelationshipStatus.closed
        refresh_reachable(session, lost)
    campaign_id = campaign_for(shop, template.id, cuisines=["sichuan"])
    result = look(campaign_id)
    assert result.eligible == 1 and result.sample == ["张**"]
    assert result.excluded == {"erased": 1, "opted_out": 1, "unreachable": 1, "capped": 0}
    assert result.matched == 4
    assert eligible and quiet and gone


def test_caps_count_planned_pushes_of_other_campaigns(app, shop):
    template = make_template(shop, valid_from=None, valid_until=None, valid_days=30)
    busy, own_cap, fresh = diner(shop, "sichuan"), diner(shop, "sichuan", monthly_cap=1), diner(shop, "sichuan")
    today = budget.local_day(utcnow())
    others = [campaign_for(shop, template.id) for _ in range(4)]
    with tx() as session:
        # four this month (the marketing cap): planned, sent and WeCom's "over quota" all count
        for campaign_id, status in zip(others, [DeliveryStatus.planned, DeliveryStatus.sent,
                                                DeliveryStatus.over_quota, DeliveryStatus.planned]):
            sent_before(session, campaign_id, busy, today, status)
        sent_before(session, others[0], own_cap, today)  # the diner allows one
    campaign_id = campaign_for(shop, template.id, cuisines=["sichuan"])
    assert look(campaign_id).excluded["capped"] == 2 and look(campaign_id).eligible == 1
    # unsent messages (cancelled, never confirmed) give the slot back; the campaign's own never count
    with tx() as session:
        for delivery in session.scalars(select(Delivery).where(Delivery.resident_id == own_cap)):
            delivery.status = DeliveryStatus.unsent
        sent_before(session, campaign_id, fresh, today)
    assert look(campaign_id).excluded["capped"] == 1 and look(campaign_id).eligible == 2
    # last month's messages are last month's
    with tx() as session:
        for delivery in session.scalars(select(Delivery).where(Delivery.resident_id == busy)):
            delivery.local_day = today.replace(day=1) - timedelta(days=1)
    assert look(campaign_id).eligible == 3


def test_wecom_quota_rule_is_a_setting(app, shop):
    template = make_template(shop, valid_from=None, valid_until=None, valid_days=30)
    resident_id = diner(shop, "sichuan")
    other = campaign_for(shop, template.id)
    with tx() as session:
        sent_before(session, other, resident_id, budget.local_day(utcnow()))
    campaign_id = campaign_for(shop, template.id)
    assert look(campaign_id).eligible == 1  # days/month: one push today leaves room
    app.config["WECOM_PUSH_QUOTA_RULE"] = "1/day"
    assert look(campaign_id).excluded["capped"] == 1
    app.config["WECOM_PUSH_QUOTA_RULE"] = "days/month"
    app.config["CAMPAIGN_MONTHLY_CAP"] = 1
    assert look(campaign_id).excluded["capped"] == 1


def test_taste_rule_any_all_and_weight(app, shop):
    template = make_template(shop, valid_from=None, valid_until=None, valid_days=30)
    both = diner(shop, "sichuan", "hunan")
    sichuan = diner(shop, "sichuan")
    diner(shop, "cantonese")
    with tx() as session:  # one scan is 1.0 today: below a minimum of 2, above 0.75
        resident, _ = resident_with_contact(session, store=shop.store)
        taste.record_signal(session, resident.id, "sichuan", SignalSource.scan, ref="store:1")
        scanned = resident.id
    any_ = campaign_for(shop, template.id, cuisines=["sichuan", "hunan"], match="any")
    all_ = campaign_for(shop, template.id, cuisines=["sichuan", "hunan"], match="all")
    strong = campaign_for(shop, template.id, cuisines=["sichuan"], min_weight=2.0)
    everyone = campaign_for(shop, template.id)

    def ids(campaign_id):
        db.session.remove()
        with tx() as session:
            q = audience.classified(session, session.get(Campaign, campaign_id))
            return {row.resident_id for row in session.execute(q)}

    assert ids(any_) == {both, sichuan, scanned}
    assert ids(all_) == {both}
    assert ids(strong) == {both, sichuan}  # survey answers weigh 3.0
    assert len(ids(everyone)) == 4


def test_sql_profile_matches_the_signals_and_decays(app, shop):
    with tx() as session:
        resident, _ = resident_with_contact(session, store=shop.store)
        long_ago = utcnow() - timedelta(days=180)
        taste.record_signal(session, resident.id, "sichuan", SignalSource.survey, ref="survey", at=long_ago)
        taste.record_signal(session, resident.id, "sichuan", SignalSource.scan, ref="store:9")
        taste.record_signal(session, resident.id, "hunan", SignalSource.redeem, ref="coupon:3")
        resident_id = resident.id
    db.session.remove()
    with tx() as session:
        now = utcnow()
        expected = taste.profile(session, resident_id, now)
        rows = {r.cuisine: r.score for r in session.scalars(select(ResidentTaste).where(
            ResidentTaste.resident_id == resident_id))}
        assert set(rows) == set(expected)
        factor = taste.score_threshold(1.0, now)
        for cuisine, score in expected.items():
            assert rows[cuisine] / factor == pytest.approx(score, rel=1e-6)
        assert expected["sichuan"] == pytest.approx(3.0 * 0.25 + 1.0, rel=1e-3)
        taste.clear_signals(session, resident_id, SignalSource.redeem)
    with tx() as session:
        assert session.get(ResidentTaste, (resident_id, "hunan")) is None


def test_other_tenants_and_absurd_rules(app, shop):
    template = make_template(shop, valid_from=None, valid_until=None, valid_days=30)
    with tx() as session:
        other = make_shop(session, make_circle(session), name="湘味")
    start, end = window()

    def attempt(owner, **kw):
        data = dict(name="x", message="m", reason="r", template_ids=[template.id], send_from=start, send_until=end)
        data.update(kw)
        with tx() as session:
            return create_campaign(session, session.merge(owner), CampaignInput(**data))

    with pytest.raises(NotFound):
        attempt(other.owner)  # another merchant's template
    with pytest.raises(NotFound):
        attempt(shop.owner, audience={"store_ids": [other.store.id]})
    for bad in ({"cuisines": ["martian"]}, {"match": "some"}, {"min_weight": 1e9}, {"added_within_days": 0},
                {"store_ids": list(range(1, 60))}, {"nonsense": 1}, {"claimed_template_id": True}):
        with pytest.raises(Invalid):
            attempt(shop.owner, audience=bad)
    with pytest.raises(Invalid):
        attempt(shop.owner, send_until=start)
    with pytest.raises(Invalid):
        attempt(shop.owner, reason=" ")
    paused = make_template(shop, name="停用", valid_from=None, valid_until=None, valid_days=30,
                           status=TemplateStatus.paused)
    with pytest.raises(Invalid):
        attempt(shop.owner, template_ids=[paused.id])
    campaign = attempt(shop.owner, audience={"cuisines": ["sichuan", "sichuan"], "store_ids": [shop.store.id]})
    assert campaign.audience["cuisines"] == ["sichuan"] and campaign.state == CampaignState.draft
    assert AudienceRule.from_dict(campaign.audience).store_ids == [shop.store.id]


def test_contacts_of_chosen_stores_and_recent_adds(app, shop):
    template = make_template(shop, valid_from=None, valid_until=None, valid_days=30)
    here = diner(shop)
    there = diner(shop, store=shop.other_store)
    with tx() as session:
        resident, rel = resident_with_contact(session, store=shop.store)
        rel.added_at = utcnow() - timedelta(days=40)
        old = resident.id
        open_contact(session, session.get(Resident, there), make_member(session, "lina"), shop.store)
    only_other = campaign_for(shop, template.id, store_ids=[shop.other_store.id])
    recent = campaign_for(shop, template.id, added_within_days=30)

    def ids(campaign_id):
        db.session.remove()
        with tx() as session:
            return {r.resident_id for r in session.execute(audience.classified(session, session.get(Campaign, campaign_id)))}

    assert ids(only_other) == {there}
    assert ids(recent) == {here, there}
    assert old not in ids(recent)


def test_a_regional_campaign_hands_out_platform_coupons_redeemable_in_its_region(app, shop):
    platform = make_template(shop, name="平台券", valid_from=None, valid_until=None, valid_days=30,
                             funded_by=FundedBy.platform)
    own = make_template(shop, name="商户券", valid_from=None, valid_until=None, valid_days=30)
    with tx() as session:
        here = session.get(Region, shop.store.circle_id).parent_id
        elsewhere = make_circle(session).parent_id  # another city: the shop has no store there
        manager = User(username="mgr-audience", password_hash="x", role=Role.manager)
        manager.regions = [session.get(Region, here), session.get(Region, elsewhere)]
        session.add(manager)
        session.flush()
        manager_id = manager.id
    start, end = window()

    def attempt(template_id, region_id):
        with tx() as session:
            data = CampaignInput(name="区域", message="m", reason="r", template_ids=[template_id],
                                 send_from=start, send_until=end)
            return create_campaign(session, session.get(User, manager_id), data, region_id=region_id)

    assert attempt(platform.id, here).region_id == here
    with pytest.raises(Invalid):
        attempt(own.id, here)  # the merchant pays for its own coupons, not the platform
    with pytest.raises(NotFound):
        attempt(platform.id, elsewhere)  # not redeemable anywhere in that region
