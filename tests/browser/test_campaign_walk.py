"""A merchant drafts a campaign in a real browser: a diner has just scanned the 川菜 store's
code, the owner writes a 川菜 campaign, sees that diner in the audience preview (masked) and
schedules it; the history records who did it."""
from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from campaigns import jobs
from core.db import db, utcnow
from core.localtime import local
from marketplace.demo import DEMO_PASSWORD, DEMO_STORES
from merchants.models import Channel, Store
from residents.models import Resident, ResidentTaste
from tests.support.browser import unique

pytestmark = pytest.mark.browser

DINER = "beibei"  # a demo WeChat user who follows nobody yet


def read(stmt):
    try:
        return db.session.scalar(stmt)
    finally:
        db.session.remove()


def test_owner_previews_and_schedules_a_campaign(stack, new_page, login, artifacts):
    store = DEMO_STORES[0]  # 蜀味小馆, 川菜
    config_id = read(select(Channel.config_id).join(Store, Store.id == Channel.store_id)
                     .where(Store.name == store.store, Channel.config_id.is_not(None)).order_by(Channel.id).limit(1))
    scanned = stack.http.post(f"{stack.sim_url}/sim/admin/scan", json={"wechat_user": DINER, "config_id": config_id})
    assert scanned.status_code == 200 and scanned.json()["added"], scanned.text
    external_userid = scanned.json()["external_userid"]

    def tasted():  # the welcome job, then the evidence job on default (taste from the scan)
        resident_id = read(select(Resident.id).where(Resident.external_userid == external_userid))
        return resident_id and read(select(ResidentTaste.score).where(
            ResidentTaste.resident_id == resident_id, ResidentTaste.cuisine == "sichuan"))

    stack.wait_for(tasted, timeout=20, interval=0.3)

    page = new_page()
    login(page, store.owner, DEMO_PASSWORD)
    page.get_by_role("link", name="营销活动").click()
    page.get_by_role("link", name="新建活动").click()
    name = unique("川菜周")
    page.get_by_label("活动名称").fill(name)
    page.get_by_label("推送文案").fill("本周川菜，满减送给老街坊")
    page.get_by_label("推送理由").fill("你刚来过我们的川菜馆")
    page.locator("input[name=template_ids]").first.check()
    start = local(utcnow() + timedelta(hours=1))
    page.locator("input[name=send_from]").fill(start.strftime("%Y-%m-%dT%H:%M"))
    page.locator("input[name=send_until]").fill((start + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M"))
    page.locator("input[name=cuisines][value=sichuan]").check()
    page.get_by_test_id("campaign-save").click()

    expect(page.locator("h1")).to_contain_text(name)
    body = page.locator("body")
    expect(body).to_contain_text("草稿")
    diner_name = read(select(Resident.name).where(Resident.external_userid == external_userid))
    masked = diner_name[0] + "*" * max(1, len(diner_name) - 1)
    expect(body).to_contain_text(masked)  # the diner who just scanned, masked
    page.screenshot(path=str(artifacts / "campaign-preview.png"), full_page=True)

    page.get_by_role("button", name="启动").click()
    expect(page.locator(".flash").first).to_contain_text("活动已排期")
    expect(body).to_contain_text("待发送")
    expect(body).to_contain_text(store.owner)  # who moved it, in the history
    expect(page.get_by_role("button", name="启动")).to_have_count(0)


PHONE = {"width": 390, "height": 844}


def test_a_campaign_reaches_the_phone_and_its_card_gives_the_coupon(stack, new_page, login, artifacts, monkeypatch):
    """The whole way: a new diner scans the 川菜 store's code; the owner launches a campaign
    that starts now; the clock plans and sends it; the member confirms; the progress bar on
    the owner's open page moves by itself; the diner's phone shows the message with the card,
    and the card's claim page gives the coupon."""
    monkeypatch.setitem(stack.app.config, "CAMPAIGN_TRACK_SECONDS", 1)
    store = DEMO_STORES[0]
    handle = unique("cpdiner")
    stack.http.post(f"{stack.sim_url}/sim/admin/wechat_users", json={"handles": [handle]}).raise_for_status()
    config_id = read(select(Channel.config_id).join(Store, Store.id == Channel.store_id)
                     .where(Store.name == store.store, Channel.config_id.is_not(None)).order_by(Channel.id).limit(1))
    scanned = stack.http.post(f"{stack.sim_url}/sim/admin/scan", json={"wechat_user": handle, "config_id": config_id})
    assert scanned.status_code == 200 and scanned.json()["added"], scanned.text
    external_userid = scanned.json()["external_userid"]
    stack.wait_for(lambda: read(select(ResidentTaste.score).join(Resident, Resident.id == ResidentTaste.resident_id)
                                .where(Resident.external_userid == external_userid,
                                       ResidentTaste.cuisine == "sichuan")), timeout=20, interval=0.3)
    started = time.time() - 5

    page = new_page()
    login(page, store.owner, DEMO_PASSWORD)
    page.goto(stack.url("/campaigns/new"))
    name = unique("今晚川菜")
    page.get_by_label("活动名称").fill(name)
    page.get_by_label("推送文案").fill("今晚川菜，老街坊满减")
    page.get_by_label("推送理由").fill("你刚来过我们的川菜馆")
    page.get_by_label(re.compile(r"满\d+减\d+")).first.check()  # not the welcome coupon the diner holds
    start = local(utcnow()).replace(second=0, microsecond=0)
    page.locator("input[name=send_from]").fill(start.strftime("%Y-%m-%dT%H:%M"))
    page.locator("input[name=send_until]").fill((start + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"))
    page.locator("input[name=quiet_start]").fill("00:00")  # no quiet hours: the test runs at any hour
    page.locator("input[name=quiet_end]").fill("00:00")
    page.locator("input[name=cuisines][value=sichuan]").check()
    page.get_by_test_id("campaign-save").click()
    page.get_by_role("button", name="启动").click()
    expect(page.locator(".flash").first).to_contain_text("活动已排期")
    campaign_id = int(page.url.rstrip("/").rsplit("/", 1)[-1])

    def sent_to_wecom():
        jobs.tick()
        stack.drain()
        return [m for m in stack.http.get(f"{stack.sim_url}/sim/admin/mass_messages").json()["mass_messages"]
                if m["created_at"] >= started and any(f"/m/o/{campaign_id}?" in a["link"]["url"]
                                                      for a in m["attachments"])]

    masses = stack.wait_for(sent_to_wecom, timeout=30, interval=0.5)
    page.reload()
    expect(page.get_by_test_id("campaign-state")).to_contain_text("发送中")
    assert int(page.get_by_test_id("stage-tasks").inner_text()) == len(masses)
    assert int(page.get_by_test_id("stage-planned").inner_text()) >= 1
    expect(page.get_by_test_id("stage-delivered")).to_have_text("0")

    for m in masses:  # the members press 发送 in WeCom
        stack.http.post(f"{stack.sim_url}/sim/admin/confirm/{m['msgid']}").raise_for_status()

    def delivered_on_the_open_page():  # nobody reloads: the bar polls
        time.sleep(1.1)  # tracking looks once per CAMPAIGN_TRACK_SECONDS
        jobs.tick()
        stack.drain()
        return page.get_by_test_id("stage-delivered").inner_text() not in ("", "0")

    stack.wait_for(delivered_on_the_open_page, timeout=40, interval=0.5)
    page.screenshot(path=str(artifacts / "campaign-progress.png"), full_page=True)

    phone = new_page(viewport=PHONE)
    phone.goto(f"{stack.sim_url}/phone/{handle}")
    card = phone.locator(f"a.card[href*='/m/o/{campaign_id}?']")
    expect(card).to_have_count(1)
    phone.screenshot(path=str(artifacts / "phone-campaign.png"), full_page=True)
    card.click()
    expect(phone.get_by_test_id("campaign-reason")).to_contain_text("你刚来过我们的川菜馆")
    phone.get_by_test_id("offer").first.get_by_role("button").click()
    expect(phone).to_have_url(re.compile(r"/m/c/[A-Z0-9]+$"))
    expect(phone.get_by_test_id("coupon-status")).to_have_attribute("data-status", "valid")
    phone.screenshot(path=str(artifacts / "phone-campaign-coupon.png"), full_page=True)
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    page.reload()
    expect(page.get_by_test_id("stage-claimed")).to_have_text("1")
