"""The campaign claim page (issue 10, item 8): ``/m/o/<campaign>?k=<chunk token>``, the link of
every card of a campaign's message. A contact claims a coupon (recorded with the token); a
template not in the campaign and a campaign that has not sent are 404; a visitor who is not our
contact (unknown to WeChat OAuth, or who removed the staff: a forwarded link) sees the store's
contact-me code and cannot claim until they add the staff; the per-diner limit is a clear 409."""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image
from sqlalchemy import select

from campaigns.models import CampaignClaim, CampaignState
from campaigns.services import CampaignInput, create_campaign, launch, move
from campaigns.services import claims as svc
from core.db import db, utcnow
from coupons.models import Coupon, CouponTemplate, TemplateStatus
from marketplace.cli import main
from merchants import posters
from merchants.models import Channel
from residents import identity
from residents.models import ContactRelationship, RelationshipStatus, Resident
from residents.services import refresh_reachable
from residents.tokens import make_token
from tests.support.coupons import make_shop, make_template, tx
from tests.support.merchants import FreshContextClient
from tests.support.residents import make_circle, make_member, make_resident, open_contact, resident_with_contact

S = CampaignState
TOKEN_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
CHUNK_TOKEN = "c12-m3_AbC"


@pytest.fixture
def client(app):
    app.test_client_class = FreshContextClient
    return app.test_client()


@pytest.fixture
def shop(app):
    with tx() as session:
        return make_shop(session, make_circle(session), name="川味小馆")


def live_template(shop, **kw) -> SimpleNamespace:
    """An active template (valid 30 days from the claim); its id, which outlives the session."""
    base = dict(name="周末满100减20", valid_from=None, valid_until=None, valid_days=30, total_stock=None,
                per_diner_limit=1)
    base.update(kw)
    return SimpleNamespace(id=make_template(shop, **base).id)


def new_campaign(shop, template_ids: list[int], *, to: tuple[CampaignState, ...] = (S.planning, S.sending)) -> int:
    """A campaign of ``shop``'s owner, launched and moved along ``to`` (the clock's moves)."""
    start = utcnow() + timedelta(hours=1)
    with tx() as session:
        owner = session.merge(shop.owner)
        campaign_id = create_campaign(session, owner, CampaignInput(
            name="周末川菜", message="周末来吃川菜，\n凭券立减", reason="你常来我们店吃川菜", template_ids=template_ids,
            send_from=start, send_until=start + timedelta(days=2),
        )).id
        if to:
            launch(session, owner, campaign_id)
        for state in to:
            move(session, campaign_id, state)
    return campaign_id


def contact(shop, **fields) -> Resident:
    with tx() as session:
        resident, _rel = resident_with_contact(session, store=shop.store, **fields)
        return resident


def stranger(**fields) -> Resident:
    with tx() as session:
        return make_resident(session, **fields)


def sign_in(client, resident: Resident, path: str) -> None:
    resp = client.get(f"{path}?t={make_token(resident.id)}")
    assert resp.status_code == 302 and resp.headers["Location"] == path


def csrf(client) -> str:
    return TOKEN_RE.search(client.get("/auth/login").get_data(as_text=True)).group(1)


def post_claim(client, campaign_id: int, template_id: int, k: str = CHUNK_TOKEN):
    return client.post(f"/m/o/{campaign_id}/claim/{template_id}", data={"csrf_token": csrf(client), "k": k})


def claims_rows() -> list[CampaignClaim]:
    db.session.remove()
    return list(db.session.scalars(select(CampaignClaim).order_by(CampaignClaim.id)))


def coupons() -> list[Coupon]:
    db.session.remove()
    return list(db.session.scalars(select(Coupon).order_by(Coupon.id)))


def add_channel(shop, qr: str = "https://wework.example/qr/abc.png") -> int:
    with tx() as session:
        channel = Channel(store_id=shop.store.id, name="门口海报", kind="door", config_id="cfg-claims-1", qr_code=qr,
                          state="s1.c1", users=["zhangwei"])
        session.add(channel)
        session.flush()
        return channel.id


# ---------------------------------------------------------------- a contact claims


def test_a_contact_claims_and_the_chunk_token_is_kept(app, client, shop):
    first, second = live_template(shop), live_template(shop, name="工作日8.8折", kind="percent_off", value=88,
                                                        cap_fen=3000, min_spend_fen=0)
    campaign_id = new_campaign(shop, [second.id, first.id])
    diner = contact(shop)
    url = f"/m/o/{campaign_id}"
    sign_in(client, diner, url)

    resp = client.get(f"{url}?k={CHUNK_TOKEN}")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert "周末来吃川菜" in page and "为什么收到：你常来我们店吃川菜" in page
    assert page.index("工作日8.8折") < page.index("周末满100减20")  # the campaign's card order
    assert f'action="/m/o/{campaign_id}/claim/{first.id}"' in page
    assert f'name="k" value="{CHUNK_TOKEN}"' in page  # the token rides along to the claim
    assert 'data-testid="contact-me"' not in page and 'data-testid="tabbar"' in page

    resp = post_claim(client, campaign_id, first.id)
    (coupon,) = coupons()
    assert resp.status_code == 302 and resp.headers["Location"] == f"/m/c/{coupon.short_code}"
    assert coupon.resident_id == diner.id and coupon.holder_ref == f"r:{diner.id}" and coupon.template_id == first.id
    (row,) = claims_rows()
    assert (row.campaign_id, row.coupon_id, row.template_id, row.resident_id, row.token) == (
        campaign_id, coupon.id, first.id, diner.id, CHUNK_TOKEN)
    assert "领取成功" in client.get(resp.headers["Location"]).get_data(as_text=True)  # the coupon's own page

    after = client.get(url).get_data(as_text=True)
    assert f'/claim/{first.id}"' not in after and f"/m/c/{coupon.short_code}" in after  # held: a link to it
    assert f'/claim/{second.id}"' in after


def test_claiming_twice_over_the_limit_is_a_clear_refusal(app, client, shop):
    template = live_template(shop, per_diner_limit=1)
    campaign_id = new_campaign(shop, [template.id])
    diner = contact(shop)
    sign_in(client, diner, f"/m/o/{campaign_id}")
    assert post_claim(client, campaign_id, template.id).status_code == 302
    resp = post_claim(client, campaign_id, template.id)
    assert resp.status_code == 409
    assert "每人限领 1 张，您已领过" in resp.get_data(as_text=True)
    assert len(coupons()) == 1 and len(claims_rows()) == 1


def test_a_forged_token_is_stored_as_nothing(app, client, shop):
    template = live_template(shop)
    campaign_id = new_campaign(shop, [template.id])
    sign_in(client, contact(shop), f"/m/o/{campaign_id}")
    assert post_claim(client, campaign_id, template.id, k="x" * 41).status_code == 302
    assert claims_rows()[0].token == ""
    assert svc.clean_token("<script>") == "" and svc.clean_token("a" * 40) == "a" * 40 and svc.clean_token(None) == ""


# ---------------------------------------------------------------- what a link does not open


def test_a_template_not_in_the_campaign_is_404(app, client, shop):
    template, other = live_template(shop), live_template(shop, name="不在活动里")
    campaign_id = new_campaign(shop, [template.id])
    sign_in(client, contact(shop), f"/m/o/{campaign_id}")
    assert post_claim(client, campaign_id, other.id).status_code == 404
    assert post_claim(client, campaign_id, 2_000_000_000).status_code == 404
    assert coupons() == []


@pytest.mark.parametrize("moves", [(), (S.planning,), (S.cancelled,), (S.planning, S.paused)],
                         ids=["draft", "planning", "cancelled", "paused-before-sending"])
def test_a_campaign_that_has_not_sent_is_404(app, client, shop, moves):
    template = live_template(shop)
    campaign_id = new_campaign(shop, [template.id], to=moves)
    sign_in(client, contact(shop), "/m/")
    assert client.get(f"/m/o/{campaign_id}").status_code == 404
    assert post_claim(client, campaign_id, template.id).status_code == 404
    assert client.get("/m/o/999999").status_code == 404
    assert coupons() == []


@pytest.mark.parametrize("moves", [(S.sending, S.paused), (S.sending, S.tracking), (S.sending, S.tracking, S.done)],
                         ids=["paused-while-sending", "tracking", "done"])
def test_cards_already_sent_keep_working(app, client, shop, moves):
    template = live_template(shop)
    campaign_id = new_campaign(shop, [template.id], to=(S.planning, *moves))
    sign_in(client, contact(shop), f"/m/o/{campaign_id}")
    assert post_claim(client, campaign_id, template.id).status_code == 302


def test_a_coupon_over_or_sold_out_shows_so(app, client, shop):
    ended, sold_out = live_template(shop, name="已停发"), live_template(shop, name="限量1张", total_stock=1)
    campaign_id = new_campaign(shop, [ended.id, sold_out.id])
    with tx() as session:
        session.get(CouponTemplate, ended.id).status = TemplateStatus.paused
        session.get(CouponTemplate, sold_out.id).issued_count = 1
    sign_in(client, contact(shop), f"/m/o/{campaign_id}")
    page = client.get(f"/m/o/{campaign_id}").get_data(as_text=True)
    assert f'data-template="{ended.id}" data-state="ended"' in page and "已结束" in page
    assert f'data-template="{sold_out.id}" data-state="sold_out"' in page and "已领完" in page
    assert post_claim(client, campaign_id, ended.id).status_code == 409
    assert "券已领完" in post_claim(client, campaign_id, sold_out.id).get_data(as_text=True)


# ---------------------------------------------------------------- visitors who are not our contact


def test_a_non_contact_sees_the_stores_code_and_cannot_claim(app, client, shop, monkeypatch):
    template = live_template(shop)
    campaign_id = new_campaign(shop, [template.id])
    add_channel(shop)
    gone = stranger()  # a resident we knew, who removed the staff: the forwarded link case
    url = f"/m/o/{campaign_id}"
    sign_in(client, gone, url)

    page = client.get(f"{url}?k={CHUNK_TOKEN}").get_data(as_text=True)
    assert 'data-testid="contact-me"' in page and "添加店员后即可领取" in page
    assert f'src="/m/o/{campaign_id}/qr.png"' in page and shop.store.name in page
    assert 'data-testid="claim"' not in page and "周末满100减20" in page  # the offer, without a button
    resp = post_claim(client, campaign_id, template.id)
    assert resp.status_code == 403 and 'data-testid="contact-me"' in resp.get_data(as_text=True)
    assert coupons() == [] and claims_rows() == []

    # the code is served from our origin (the page's CSP), fetched from WeCom once an hour
    fetched = []

    def fake_fetch(url, timeout=5.0):
        fetched.append(url)
        return Image.new("RGB", (43, 43), "white")

    monkeypatch.setattr(posters, "fetch_qr", fake_fetch)
    for _ in range(2):
        qr = client.get(f"{url}/qr.png")
        assert qr.status_code == 200 and qr.mimetype == "image/png"
        assert Image.open(io.BytesIO(qr.data)).size == (43, 43)
    assert fetched == ["https://wework.example/qr/abc.png"]

    # after the add (WeCom's add event opens a relationship), the same link claims
    with tx() as session:
        open_contact(session, session.get(Resident, gone.id), make_member(session, "zhangwei"), shop.store)
    assert 'data-testid="claim"' in client.get(url).get_data(as_text=True)
    assert post_claim(client, campaign_id, template.id).status_code == 302
    assert len(claims_rows()) == 1


def test_a_contact_who_removed_the_staff_is_no_contact(app, client, shop):
    template = live_template(shop)
    campaign_id = new_campaign(shop, [template.id])
    diner = contact(shop)
    with tx() as session:
        rel = session.scalar(select(ContactRelationship).where(ContactRelationship.resident_id == diner.id))
        rel.status = RelationshipStatus.closed
        refresh_reachable(session, diner.id)
    sign_in(client, diner, f"/m/o/{campaign_id}")
    assert post_claim(client, campaign_id, template.id).status_code == 403
    page = client.get(f"/m/o/{campaign_id}").get_data(as_text=True)
    assert "添加店员后即可领取" in page and 'data-testid="contact-qr"' not in page  # no store has a code yet
    assert coupons() == []


@dataclass
class FakeWho:
    unionid: str | None


class FakeOAuth:
    """WeChat web OAuth as far as the app sees it: an authorize URL, and a code → unionid."""

    def __init__(self, unionid: str | None) -> None:
        self.unionid = unionid

    def authorize_url(self, redirect_uri: str, state: str = "", scope: str = "snsapi_base") -> str:
        return f"https://open.weixin.example/authorize?redirect_uri={redirect_uri}&state={state}"

    def exchange_code(self, code: str) -> FakeWho:
        return FakeWho(self.unionid)


def oauth_round_trip(client, url: str):
    """Open ``url`` in WeChat: to WeChat and back through the callback; the final response."""
    resp = client.get(url)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("https://open.weixin.example/")
    state = parse_qs(urlsplit(resp.headers["Location"]).query)["state"][0]
    back = client.get(f"/m/oauth/callback?code=c0de&state={state}")
    assert back.status_code == 302, back.status_code
    assert back.headers["Location"] == url
    return client.get(back.headers["Location"])


def test_wechat_oauth_finds_the_diner_or_shows_a_stranger_the_code(app, client, shop):
    template = live_template(shop)
    campaign_id = new_campaign(shop, [template.id])
    add_channel(shop)
    url = f"/m/o/{campaign_id}?k={CHUNK_TOKEN}"

    app.extensions["wechat_oauth"] = FakeOAuth("union-nobody")  # a forwarded link: WeChat knows them, we don't
    page = oauth_round_trip(client, url)
    assert page.status_code == 200 and 'data-testid="contact-me"' in page.get_data(as_text=True)
    with client.session_transaction() as sess:
        assert identity.SESSION_KEY not in sess and "oauth_stranger" not in sess

    diner = contact(shop, unionid="union-diner")  # they added the staff: WeCom told us their unionid
    app.extensions["wechat_oauth"] = FakeOAuth("union-diner")
    page = oauth_round_trip(client, url)  # opening the link again asks WeChat again
    html = page.get_data(as_text=True)
    assert 'data-testid="claim"' in html and f'name="k" value="{CHUNK_TOKEN}"' in html
    assert post_claim(client, campaign_id, template.id).status_code == 302
    assert claims_rows()[0].resident_id == diner.id


def test_other_pages_still_meet_strangers_with_the_unknown_page(app, client, shop):
    app.extensions["wechat_oauth"] = FakeOAuth("union-nobody")
    resp = client.get("/m/quiet")
    state = parse_qs(urlsplit(resp.headers["Location"]).query)["state"][0]
    back = client.get(f"/m/oauth/callback?code=c0de&state={state}")
    assert back.status_code == 200 and 'data-testid="unknown-diner"' in back.get_data(as_text=True)



def test_the_privacy_export_holds_the_diners_campaign_claims(app, client, shop, runner):
    template = live_template(shop)
    campaign_id = new_campaign(shop, [template.id])
    diner = contact(shop)
    sign_in(client, diner, f"/m/o/{campaign_id}")
    post_claim(client, campaign_id, template.id)
    result = runner.invoke(main, ["resident", "export", str(diner.id)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    (claim,) = data["campaign_claims"]
    assert claim["campaign"]["id"] == campaign_id and claim["template"]["id"] == template.id
    assert claim["coupon_id"] == data["coupons"][0]["id"]
    assert data["campaign_messages"] == []  # claimed from a forwarded card: nothing was planned to them
