"""Campaign pages over the test client: an owner's draft through the form, the list, the
audience preview, the state buttons (each recorded), other tenants' campaigns out of reach,
service errors on the form with nothing typed lost, wrong roles refused, and a list whose
statements do not grow with its rows."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from accounts.models import Role, User
from campaigns.models import Campaign, CampaignState, CampaignTransition
from campaigns.services import CampaignInput, create_campaign
from core.db import db, utcnow
from core.localtime import local
from coupons.models import CouponTemplate, FundedBy
from merchants.models import Region
from tests.support.coupons import _password_hash, login, make_shop, make_template, post_form, tx
from tests.support.merchants import client, fast_hashing  # noqa: F401  (fixtures)
from tests.support.querycount import count_queries
from tests.support.residents import make_circle, resident_with_contact

S = CampaignState


@pytest.fixture
def shop(app):
    with tx() as session:
        return make_shop(session, make_circle(session))


@pytest.fixture
def rival(app):
    with tx() as session:
        return make_shop(session, make_circle(session), name="湘里人家")


def live_template(shop, **kw):
    base = dict(valid_from=None, valid_until=None, valid_days=30)
    base.update(kw)
    return make_template(shop, **base)


def local_input(at) -> str:
    return local(at).strftime("%Y-%m-%dT%H:%M")


def form_data(template_id: int, **kw) -> dict:
    start = utcnow() + timedelta(hours=1)
    data = {
        "name": "周末川菜", "message": "周末来吃川菜，凭券立减", "reason": "你常来我们店吃川菜",
        "template_ids": [str(template_id)], "channels": "private",
        "send_from": local_input(start), "send_until": local_input(start + timedelta(days=2)),
        "quiet_start": "21:00", "quiet_end": "09:00", "match": "any", "min_weight": "0.75",
        "added_within_days": "", "no_redemption_days": "",
    }
    data.update(kw)
    return data


def only_campaign() -> Campaign:
    db.session.remove()
    return db.session.scalar(select(Campaign))


def new_campaign(shop, template_id: int, name: str = "周末川菜") -> int:
    start = utcnow() + timedelta(hours=1)
    with tx() as session:
        return create_campaign(session, session.merge(shop.owner), CampaignInput(
            name=name, message="周末来吃川菜", reason="你常来我们店", template_ids=[template_id],
            send_from=start, send_until=start + timedelta(days=2),
        )).id


def test_owner_creates_lists_previews_and_moves_a_campaign(client, shop):
    template = live_template(shop, name="川菜满100减20")
    with tx() as session:
        resident_with_contact(session, store=shop.store, name="张小花")
        resident_with_contact(session, store=shop.store, name="李四", opted_out=True)
    login(client, shop.owner)
    form = client.get("/campaigns/new").get_data(as_text=True)
    assert "川菜满100减20" in form and 'value="21:00"' in form and 'value="09:00"' in form and 'value="0.75"' in form
    assert shop.store.name in form  # the owner's approved stores to narrow to

    resp = post_form(client, "/campaigns/new", form_data(template.id, store_ids=[str(shop.store.id)]))
    assert resp.status_code == 302, resp.get_data(as_text=True)[:2000]
    campaign = only_campaign()
    assert (campaign.merchant_id, campaign.name, campaign.reason, campaign.state) == (
        shop.merchant.id, "周末川菜", "你常来我们店吃川菜", S.draft)
    assert (campaign.quiet_start, campaign.quiet_end) == (21 * 60, 9 * 60)
    assert campaign.audience["store_ids"] == [shop.store.id] and campaign.audience["min_weight"] == 0.75
    assert [t.template_id for t in campaign.templates] == [template.id]
    # the window was typed in Shanghai time: shown back as typed
    start = form_data(template.id)["send_from"]
    assert abs(local(campaign.send_from).replace(tzinfo=None) - local(utcnow() + timedelta(hours=1)).replace(
        tzinfo=None)) < timedelta(minutes=2)

    listing = client.get("/campaigns/").get_data(as_text=True)
    assert "周末川菜" in listing and "草稿" in listing and "新建活动" in listing and "1 张" in listing
    assert start.replace("T", " ") in listing

    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert 'data-testid="preview-eligible">1<' in page
    assert "已关闭推送</td><td>1<" in page and "已注销</td><td>0<" in page
    assert "张**" in page and "李四" not in page and "川菜满100减20" in page

    url = f"/campaigns/{campaign.id}"
    assert post_form(client, f"{url}/launch", {}, token_url=url).status_code == 302
    assert only_campaign().state == S.scheduled
    page = client.get(url).get_data(as_text=True)
    assert "活动已排期" in page and "待发送" in page and shop.owner.username in page
    assert post_form(client, f"{url}/pause", {}, token_url=url).status_code == 302
    assert only_campaign().state == S.paused
    assert post_form(client, f"{url}/resume", {}, token_url=url).status_code == 302
    assert only_campaign().state == S.scheduled
    assert post_form(client, f"{url}/cancel", {}, token_url=url).status_code == 302
    assert only_campaign().state == S.cancelled
    rows = db.session.scalars(select(CampaignTransition).order_by(CampaignTransition.id)).all()
    assert [(r.from_state, r.to_state, r.user_id) for r in rows] == [
        (None, S.draft, shop.owner.id), (S.draft, S.scheduled, shop.owner.id), (S.scheduled, S.paused, shop.owner.id),
        (S.paused, S.scheduled, shop.owner.id), (S.scheduled, S.cancelled, shop.owner.id),
    ]

    # a move the state machine refuses is a flash, not a 500
    resp = post_form(client, f"{url}/pause", {}, token_url=url)
    assert resp.status_code == 302
    assert "活动状态已经变化" in client.get(url).get_data(as_text=True)
    assert only_campaign().state == S.cancelled


def test_edit_a_draft_and_not_after_launch(client, shop):
    template = live_template(shop)
    campaign_id = new_campaign(shop, template.id)
    login(client, shop.owner)
    edit = f"/campaigns/{campaign_id}/edit"
    page = client.get(edit).get_data(as_text=True)
    assert 'value="周末川菜"' in page
    resp = post_form(client, edit, form_data(template.id, name="周末川菜·改", cuisines=["sichuan"], match="all"))
    assert resp.status_code == 302, resp.get_data(as_text=True)[:2000]
    campaign = only_campaign()
    assert campaign.name == "周末川菜·改" and campaign.audience["cuisines"] == ["sichuan"]
    url = f"/campaigns/{campaign_id}"
    post_form(client, f"{url}/launch", {}, token_url=url)
    assert client.get(edit).status_code == 302  # not a draft any more: back to the detail page
    assert "只有草稿可以修改" in client.get(url).get_data(as_text=True)


def test_a_bad_window_stays_on_the_form_with_what_was_typed(client, shop):
    template = live_template(shop)
    login(client, shop.owner)
    start = utcnow() + timedelta(days=1)
    resp = post_form(client, "/campaigns/new", form_data(
        template.id, name="我刚打的名字", send_from=local_input(start), send_until=local_input(start - timedelta(hours=2)),
    ))
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert "结束时间须晚于开始时间" in html and 'value="我刚打的名字"' in html and "你常来我们店吃川菜" in html
    assert only_campaign() is None

    resp = post_form(client, "/campaigns/new", form_data(template.id, reason="  "))
    assert resp.status_code == 400 and "请写明推送理由" in resp.get_data(as_text=True)
    resp = post_form(client, "/campaigns/new", form_data(template.id, quiet_start="25:00"))
    assert resp.status_code == 400 and "11:00 的格式" in resp.get_data(as_text=True)


def test_another_merchants_owner_gets_404(client, shop, rival):
    template = live_template(shop)
    campaign_id = new_campaign(shop, template.id)
    login(client, rival.owner)
    url = f"/campaigns/{campaign_id}"
    assert client.get(url).status_code == 404
    assert client.get(f"{url}/edit").status_code == 404
    for action in ("launch", "pause", "resume", "cancel"):
        assert post_form(client, f"{url}/{action}", {}, token_url="/campaigns/").status_code == 404, action
    assert "周末川菜" not in client.get("/campaigns/").get_data(as_text=True)
    # nor can the rival hand out the shop's template
    resp = post_form(client, "/campaigns/new", form_data(template.id))
    assert resp.status_code == 400
    assert only_campaign().state == S.draft


def test_actions_need_csrf(client, shop):
    template = live_template(shop)
    campaign_id = new_campaign(shop, template.id)
    login(client, shop.owner)
    assert client.post(f"/campaigns/{campaign_id}/launch").status_code == 400
    assert only_campaign().state == S.draft


def test_cashiers_and_strangers_are_refused(client, shop):
    login(client, shop.cashier)
    assert client.get("/campaigns/").status_code == 403
    assert client.get("/campaigns/new").status_code == 403


def test_anonymous_goes_to_login(client, shop):
    resp = client.get("/campaigns/")
    assert resp.status_code == 302 and "/auth/login" in resp.headers["Location"]


def test_manager_runs_a_regional_campaign(client, shop):
    template = live_template(shop, name="平台补贴券")
    merchant_only = live_template(shop, name="商户自己的券")
    with tx() as session:
        session.get(CouponTemplate, template.id).funded_by = FundedBy.platform
        circle = session.get(Region, shop.store.circle_id)
        city_id, circle_id, circle_name = circle.parent_id, circle.id, circle.name  # make_circle: city → circle
        manager = User(username="mgr-campaigns", password_hash=_password_hash(), role=Role.manager)
        manager.regions = [session.get(Region, city_id)]
        session.add(manager)
    login(client, manager)
    assert "营销活动" in client.get("/campaigns/").get_data(as_text=True)
    form = client.get("/campaigns/new").get_data(as_text=True)
    assert "平台补贴券" in form and "商户自己的券" not in form and circle_name in form
    resp = post_form(client, "/campaigns/new", form_data(template.id, circle_ids=[str(circle_id)]))
    assert resp.status_code == 302, resp.get_data(as_text=True)[:2000]
    campaign = only_campaign()
    assert (campaign.region_id, campaign.merchant_id, campaign.audience["circle_ids"]) == (city_id, None, [circle_id])
    assert client.get(f"/campaigns/{campaign.id}").status_code == 200
    assert post_form(client, "/campaigns/new", form_data(merchant_only.id)).status_code == 400  # not offered
    # the shop's owner does not see the region's campaign
    assert post_form(client, "/auth/logout", {}, token_url="/campaigns/").status_code == 302
    login(client, shop.owner)
    assert client.get(f"/campaigns/{campaign.id}").status_code == 404


def test_list_statements_do_not_grow_with_rows(client, shop):
    login(client, shop.owner)

    def render() -> tuple[str, int]:
        client.get("/campaigns/")
        with count_queries() as log:
            resp = client.get("/campaigns/")
        assert resp.status_code == 200
        return resp.get_data(as_text=True), log.count

    def add(n: int) -> list[str]:
        names = []
        for i in range(n):
            template = live_template(shop, name=f"券{len(names)}-{i}")
            other = live_template(shop, name=f"另一张{len(names)}-{i}")
            name = f"活动{template.id}"
            start = utcnow() + timedelta(hours=1)
            with tx() as session:
                create_campaign(session, session.merge(shop.owner), CampaignInput(
                    name=name, message="文案", reason="理由", template_ids=[template.id, other.id],
                    send_from=start, send_until=start + timedelta(days=1)))
            names.append(name)
        return names

    add(2)
    _few_html, few = render()
    names = add(15)
    many_html, many = render()
    assert all(n in many_html for n in names) and "2 张" in many_html
    assert many <= few, f"statements grew with the rows: {few} -> {many}"
