"""A diner's first minutes, in a real browser on a phone-sized screen: the simulator's phone
view scans a store's poster code, the welcome message arrives with a link card, the card
opens the coupon page in the app, and the taste survey changes the diner's profile."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from core.db import db
from marketplace.demo import DEMO_STORES
from merchants.models import Channel, Store

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DINER = "huahua"  # a demo WeChat user who follows nobody yet


def _door_channel_config_id(store_name: str) -> str:
    try:
        return db.session.scalar(
            select(Channel.config_id)
            .join(Store, Store.id == Channel.store_id)
            .where(Store.name == store_name, Channel.config_id.is_not(None))
            .order_by(Channel.id)
            .limit(1)
        )
    finally:
        db.session.remove()


def test_scan_welcome_coupon_and_taste_survey(stack, new_page, artifacts):
    store = DEMO_STORES[0]  # 蜀味小馆, 川菜
    config_id = _door_channel_config_id(store.store)
    assert config_id, "the demo store has no contact way"

    phone = new_page(viewport=PHONE)
    phone.goto(f"{stack.sim_url}/phone/{DINER}")
    # "Scanning" a printed poster: the phone view takes the URL its QR encodes.
    phone.locator("input[type=text][name=code]").fill(stack.sim_scan_url(config_id))
    phone.get_by_role("button", name="扫码添加").click()
    expect(phone.locator(".flash").first).to_contain_text("已添加")

    # The simulator has posted the encrypted add event; run the app's jobs until the
    # welcome (text + link card) has reached the phone.
    def card_arrived():
        phone.reload()
        return phone.locator("a.card").count() > 0

    stack.wait_for(card_arrived, timeout=20, interval=0.3)
    phone.screenshot(path=str(artifacts / "phone-welcome.png"), full_page=True)
    expect(phone.locator("body")).to_contain_text(store.store)

    phone.locator("a.card").first.click()
    expect(phone).to_have_url(re.compile(r"/m/c/[A-Z0-9]+$"))  # the token left the URL
    expect(phone.get_by_test_id("coupon-qr")).to_be_visible()
    expect(phone.get_by_test_id("coupon-status")).to_have_attribute("data-status", "valid")
    code = phone.get_by_test_id("coupon-code").inner_text()
    assert re.fullmatch(r"[A-Z0-9]{5}-[A-Z0-9]{5}", code.strip()), code
    phone.screenshot(path=str(artifacts / "phone-coupon.png"), full_page=True)
    # Nothing wider than the phone: no sideways scrolling inside WeChat's browser.
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    # The scan already says something: a 川菜 store.
    phone.goto(f"{stack.app_url}/m/taste")
    profile = phone.get_by_test_id("taste-profile")
    expect(profile.locator("[data-cuisine=sichuan]")).to_be_visible()
    expect(profile.locator("[data-cuisine=cantonese]")).to_have_count(0)

    form = phone.get_by_test_id("taste-form")
    form.locator("input[name=cuisines][value=cantonese]").check()
    form.locator("input[name=cuisines][value=dessert]").check()
    form.locator("input[name=spice_level]").first.check()
    form.locator("input[name=budget]").fill("80")
    form.locator("button[type=submit]").click()

    profile = phone.get_by_test_id("taste-profile")
    expect(profile.locator("[data-cuisine=cantonese]")).to_be_visible()
    expect(profile.locator("[data-cuisine=dessert]")).to_be_visible()
    expect(profile.locator("[data-cuisine=sichuan]")).to_be_visible()
    # The diner's own word outweighs one scan: the survey's cuisines come first.
    order = profile.locator("[data-cuisine]").evaluate_all("els => els.map(e => e.dataset.cuisine)")
    assert order.index("cantonese") < order.index("sichuan"), order
    phone.screenshot(path=str(artifacts / "phone-taste.png"), full_page=True)
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
