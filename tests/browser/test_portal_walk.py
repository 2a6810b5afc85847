"""The merchant portal walked in a real browser, the way a new restaurant goes live: sign up,
enrol, get approved by the district's manager, name the serving members, print a channel
poster, define a coupon, and redeem a diner's coupon at the desk (on a phone-sized screen),
then see it on the dashboard."""
from __future__ import annotations

import re

import pytest
from PIL import Image, ImageChops, ImageDraw
from playwright.sync_api import expect
from sqlalchemy import select

from core.db import db
from coupons.models import Redemption
from coupons.services import format_code, issue_coupon
from marketplace.demo import DEMO_ADMIN, DEMO_CIRCLE, DEMO_DISTRICT, DEMO_MANAGER, DEMO_PASSWORD
from merchants import posters
from merchants.models import Channel, Member, ReviewStatus, Store
from tests.support.browser import unique
from tests.support.merchants import credit_code

pytestmark = pytest.mark.browser

PASSWORD = "walk-pass-123"
PHONE = {"width": 390, "height": 844}


def read(stmt):
    """One value from the live database, in a transaction of its own (SQLite: never keep a
    read open while the app writes)."""
    try:
        return db.session.scalar(stmt)
    finally:
        db.session.remove()


def flash(page):
    return page.locator(".flash").first


def decode_qr(img: Image.Image) -> list[str]:
    from pyzbar.pyzbar import decode

    return [r.data.decode() for r in decode(img.convert("L"))]


def assert_store_name_rendered(poster: Image.Image, store_name: str) -> None:
    """The poster's title line equals the store name drawn in the CJK font at the poster's
    own size and place, and none of its characters is the font's .notdef box (tofu)."""
    width, height = poster.size
    u = width / 100
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines, font = posters._name_lines(draw, store_name, width - 2 * int(6 * u), u)
    assert lines == [store_name]  # a short name stays on one line
    line_h, cuisine_h = int(font.size * 1.3), int(u) + int(posters.load_font(int(4.2 * u)).size * 1.3)
    band_h = max(int(height * 0.2), line_h + cuisine_h + int(6 * u))  # the walk's store has a cuisine
    top = (band_h - line_h - cuisine_h) // 2
    reference = Image.new("RGB", (width, band_h), posters.BRAND)
    draw = ImageDraw.Draw(reference)
    posters._center(draw, top, store_name, font, posters.PAPER, width)
    name_line = (0, 0, width, top + int(font.size * 1.3))
    crop = poster.convert("RGB").crop(name_line)
    assert ImageChops.difference(crop, reference.crop(name_line)).getbbox() is None, "title is not the store name"
    assert crop.getcolors(1 << 20) and len(crop.getcolors(1 << 20)) > 2, "title line has no text"

    def glyph(ch: str) -> Image.Image:
        img = Image.new("L", (font.size * 2, font.size * 2), 0)
        ImageDraw.Draw(img).text((font.size // 2, font.size // 4), ch, font=font, fill=255)
        return img

    tofu = glyph("\U0010fffd")  # a code point no font maps: drawn as .notdef
    for ch in store_name:
        if not ch.isspace() and not ch.isascii():
            assert ImageChops.difference(glyph(ch), tofu).getbbox() is not None, f"{ch!r} renders as tofu"


def test_new_restaurant_goes_live_and_redeems_a_coupon(stack, new_page, login, artifacts):
    n = unique("")
    owner_name, cashier_name = f"walk-owner-{n}", f"walk-cashier-{n}"
    store_name = f"巷口川菜馆{n[-4:]}"
    circle_label = f"上海 · {DEMO_DISTRICT} · {DEMO_CIRCLE}"

    # 1. An owner signs up and lands on the enrolment form.
    owner = new_page()
    owner.goto("/auth/signup")
    owner.locator("#username").fill(owner_name)
    owner.locator("#display_name").fill("王老板")
    owner.locator("#password").fill(PASSWORD)
    owner.locator("#confirm").fill(PASSWORD)
    owner.get_by_test_id("signup-submit").click()
    expect(owner).to_have_url(re.compile(r"/portal/enrol$"))

    # 2. Enrols the merchant and its first store.
    owner.locator("#name").fill("巷口餐饮管理有限公司")
    owner.locator("#credit_code").fill(credit_code())
    owner.locator("#contact_mobile").fill("138 0013 8000")
    owner.locator("#store_name").fill(store_name)
    owner.locator("#address").fill("漕溪北路 100 号")
    owner.locator("#circle_id").select_option(label=circle_label)
    owner.locator("input[name=cuisines][value=sichuan]").check()
    owner.locator("#avg_spend").fill("68")
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):
        owner.locator(f"input[name=hours_days_1][value={day}]").check()
    owner.locator("#hours_1").fill("10:00-22:00")
    owner.get_by_test_id("enrol-submit").click()
    expect(flash(owner)).to_contain_text("已提交，等待审核")
    expect(owner.locator("main")).to_contain_text(store_name)
    store_id = read(select(Store.id).where(Store.name == store_name))
    assert read(select(Store.status).where(Store.id == store_id)) == ReviewStatus.pending

    # 3. The district's manager approves it from the review queue.
    manager = new_page()
    login(manager, DEMO_MANAGER, DEMO_PASSWORD)
    expect(manager).to_have_url(re.compile(r"/portal/review$"))
    card = manager.locator(f"#store-{store_id}")
    expect(card).to_contain_text(store_name)
    card.locator("select[name$=decision]").select_option("approve")
    card.get_by_test_id("review-submit").click()
    expect(flash(manager)).to_contain_text(f"已通过：{store_name}")
    expect(manager.locator(f"#store-{store_id}")).to_have_count(0)
    assert read(select(Store.status).where(Store.id == store_id)) == ReviewStatus.approved

    # 3b. The operator grants the merchant its WeCom members (members belong to merchants).
    admin = new_page()
    login(admin, DEMO_ADMIN, DEMO_PASSWORD)
    admin.goto("/admin/members")
    merchant_id = read(select(Store.merchant_id).where(Store.id == store_id))
    for userid in ("zhangwei", "lina"):
        member_id = read(select(Member.id).where(Member.userid == userid))
        admin.locator("#merchant_id").select_option(str(merchant_id))
        admin.locator("#member_id").select_option(str(member_id))
        admin.locator("form.card button[type=submit]").click()
        expect(flash(admin)).to_contain_text("授权给")

    # 4. The owner names the WeCom members who serve the store (read live from the simulator).
    owner.goto(f"/portal/stores/{store_id}")
    owner.get_by_role("link", name="接待成员").click()
    owner.locator("#m-zhangwei").check()
    owner.locator("#m-lina").check()
    owner.locator("input[name=backup-lina]").check()
    owner.get_by_test_id("staff-save").click()
    expect(flash(owner)).to_contain_text("接待成员已保存")
    expect(owner.locator("#m-zhangwei")).to_be_checked()

    # 5. ...and creates a channel code for the door poster.
    owner.goto(f"/portal/stores/{store_id}")
    owner.get_by_role("link", name="渠道活码").click()
    owner.locator("#name").fill("门口海报")
    owner.locator("#kind").select_option("door")
    owner.get_by_test_id("channel-create").click()
    expect(flash(owner)).to_contain_text("渠道码「门口海报」已生成")
    row = owner.locator("tr[data-channel-id]", has_text="门口海报")
    expect(row).to_have_count(1)
    channel_id = int(row.get_attribute("data-channel-id"))
    config_id = read(select(Channel.config_id).where(Channel.id == channel_id, Channel.store_id == store_id))
    assert config_id

    # 6. Downloads the A5 poster: a PNG whose QR is the simulator's scan URL for that code,
    #    with the store name in real Chinese glyphs.
    with owner.expect_download() as download_info:
        row.get_by_test_id("poster-png-a5").click()
    poster_path = artifacts / f"poster-{store_id}-{channel_id}-a5.png"
    download_info.value.save_as(poster_path)
    with Image.open(poster_path) as img:
        assert img.format == "PNG"
        img.load()
        poster = img.convert("RGB")
    assert poster.size == posters.size_px("a5")
    assert decode_qr(poster) == [stack.sim_scan_url(config_id)]
    assert stack.http.get(stack.sim_scan_url(config_id)).status_code == 200  # the code is live
    assert_store_name_rendered(poster, store_name)
    viewer = new_page(viewport={"width": 600, "height": 860})
    viewer.goto(poster_path.as_uri())
    expect(viewer.locator("img")).to_be_visible()
    viewer.screenshot(path=str(artifacts / "poster-in-browser.png"))

    # 7. Defines a coupon through the template form.
    owner.get_by_role("navigation").get_by_role("link", name="优惠券").first.click()
    owner.get_by_role("link", name="新建优惠券").click()
    owner.locator("#name").fill("满100减20")
    owner.locator("#kind").select_option("amount_off")
    owner.locator("#amount").fill("20")
    owner.locator("#min_spend").fill("100")
    owner.locator("input[name=validity_mode][value=days]").check()
    owner.locator("#valid_days").fill("30")
    owner.locator("#status").select_option("active")
    owner.get_by_test_id("template-save").click()
    expect(flash(owner)).to_contain_text("已创建优惠券")
    expect(owner).to_have_url(re.compile(r"/portal/coupons/\d+/preview$"))
    template_id = int(re.search(r"/portal/coupons/(\d+)/preview", owner.url).group(1))

    # 8. A diner gets one (the diner journey is another issue: the service issues it here).
    with db.session.begin():
        code = issue_coupon(db.session, template_id, f"wm-walk-diner-{n}").short_code
    db.session.remove()

    # 9. The owner adds a cashier, who redeems it at the desk on a phone-sized screen.
    owner.goto(f"/portal/stores/{store_id}/cashiers")
    owner.locator("#username").fill(cashier_name)
    owner.locator("#display_name").fill("收银小李")
    owner.locator("#password").fill(PASSWORD)
    owner.get_by_test_id("cashier-add").click()
    expect(flash(owner)).to_contain_text("收银员账号已创建")

    cashier = new_page(viewport=PHONE)
    login(cashier, cashier_name, PASSWORD)
    expect(cashier).to_have_url(re.compile(r"/desk$"))
    expect(cashier.locator("main")).to_contain_text(store_name)
    cashier.locator("#code").fill(format_code(code))  # typed as printed on the diner's coupon
    cashier.get_by_test_id("desk-lookup").click()
    expect(cashier).to_have_url(re.compile(rf"/desk/c/{code}$"))
    expect(cashier.get_by_test_id("desk-error")).to_have_count(0)
    cashier.locator("#bill").fill("128")
    cashier.get_by_test_id("desk-confirm").click()
    expect(cashier).to_have_url(re.compile(r"/desk/r/\d+$"))
    expect(cashier.locator("h1")).to_have_text("核销成功")
    expect(cashier.get_by_test_id("payable")).to_have_text("¥108")
    redemption = read(select(Redemption.discount_fen).where(Redemption.store_id == store_id))
    assert redemption == 2000

    cashier.get_by_role("link", name="继续核销").click()
    expect(cashier).to_have_url(re.compile(r"/desk$"))
    expect(cashier.locator("main table")).to_contain_text("满100减20")
    assert cashier.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scroll
    cashier.screenshot(path=str(artifacts / "desk-390x844.png"))

    # 10. The owner sees it on the dashboard (the statistics' rollups), overall and for the
    # store (with its channel).
    owner.get_by_role("navigation").get_by_role("link", name="经营看板").first.click()
    expect(owner).to_have_url(re.compile(r"/portal/dashboard$"))
    expect(owner.locator('[data-metric="issued"] .kpi-value')).to_have_attribute("data-value", "1")
    expect(owner.locator('[data-metric="redeemed"] .kpi-value')).to_have_attribute("data-value", "1")
    stats_row = owner.locator('table[data-table="template"] tr', has_text="满100减20")
    expect(stats_row).to_contain_text("¥20.00")
    expect(stats_row).to_contain_text("¥128.00")
    owner.locator('table[data-table="store"]').get_by_role("link", name=store_name).click()
    expect(owner).to_have_url(re.compile(rf"/portal/dashboard\?.*store={store_id}"))
    expect(owner.locator('[data-metric="redeemed"] .kpi-value')).to_have_attribute("data-value", "1")
    expect(owner.locator("main")).to_contain_text("门口海报")


@pytest.mark.parametrize("viewport", [PHONE])
def test_desk_fits_a_phone(page, login, artifacts):
    """The demo cashier's desk at 390×844: the code box and its button are on screen, full width
    of the content, and nothing scrolls sideways."""
    login(page, "demo-cashier", DEMO_PASSWORD)
    expect(page).to_have_url(re.compile(r"/desk$"))
    code, button = page.locator("#code"), page.get_by_test_id("desk-lookup")
    expect(code).to_be_in_viewport()
    expect(button).to_be_in_viewport()
    box = code.bounding_box()
    assert box["width"] >= 0.6 * PHONE["width"], box
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(artifacts / "desk-demo-390x844.png"))
