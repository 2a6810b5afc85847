"""A merchant drafts a campaign in a real browser: a diner has just scanned the 川菜 store's
code, the owner writes a 川菜 campaign, sees that diner in the audience preview (masked) and
schedules it; the history records who did it."""
from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

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
