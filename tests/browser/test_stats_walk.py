"""The regional statistics dashboard in a real browser (issue 11): the district's manager
narrows the range and the circle, drills into a store and downloads its CSV files; the CSV
totals equal the page's KPIs, and both equal a plain SQL count over the raw ``redemptions``
(reversals taken back on their own day, as the dashboard's "核销" is net). The page reads
rollups plus the tallies still waiting: part of the test's tallies is rolled up first.

The data is the test's own: a new merchant with two stores in 衡山路商圈 (the manager's
district, where no demo restaurant is), coupons issued and redeemed on known local days
through the real services, one redemption reversed, some just outside the range."""
from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select, text

from accounts.models import Role
from accounts.services import create_user, find_user
from core.db import db, utcnow
from core.localtime import LOCAL_TZ, local
from core.tally import METRICS, Tally
from core.txn import transaction
from coupons.models import CouponKind, CouponSource, TemplateStatus
from coupons.services import TemplateSpec, create_template, issue_coupon, redeem, reverse
from marketplace.demo import DEMO_CITY, DEMO_DISTRICT, DEMO_MANAGER, DEMO_PASSWORD, DEMO_REGIONS, demo_region
from merchants import services
from merchants.models import Store
from merchants.services import StoreInput
from stats.models import DailyStat
from stats.services.rollup import roll_up
from tests.support.browser import unique
from tests.support.merchants import credit_code

pytestmark = pytest.mark.browser

CIRCLE = DEMO_REGIONS[DEMO_CITY][DEMO_DISTRICT][1]  # 衡山路商圈: the manager's, no demo store there
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def at(day: date, hh: int, mm: int = 0) -> datetime:
    """A local (Asia/Shanghai) wall time on ``day`` as an aware datetime."""
    return datetime.combine(day, time(hh, mm), tzinfo=LOCAL_TZ)


@dataclass
class World:
    circle_id: int
    store_id: int  # the store the walk drills into
    store_name: str
    other_store_id: int  # same merchant, same circle: in the circle's totals, not the store's
    template_ids: tuple[int, ...]
    start: date
    end: date


@pytest.fixture(scope="module")
def world(live_stack) -> World:
    """Coupons issued and redeemed on known days, just inside and just outside the range
    (local midnight is 16:00 UTC the day before: a 00:30 redemption counts on its local day)."""
    today = local(utcnow()).date()
    start, end = today - timedelta(days=8), today - timedelta(days=2)
    n = unique("")
    with live_stack.app.app_context():
        with transaction(db.session) as s:
            circle = demo_region(s, DEMO_CITY, DEMO_DISTRICT, CIRCLE)
            owner = create_user(s, username=f"stats-owner-{n}", password="stats-walk-pass-9", role=Role.owner)
            shop = StoreInput(name=f"衡山小厨{n[-5:]}", address="衡山路 1 号", circle_id=circle.id,
                              cuisines=["jiangzhe"], avg_spend_fen=6000)
            merchant = services.enrol_merchant(s, owner, name=f"衡山餐饮{n}", credit_code=credit_code(),
                                               contact_mobile="13800138000", store=shop)
            store = s.scalar(select(Store).where(Store.merchant_id == merchant.id))
            other = services.add_store(s, merchant, StoreInput(
                name=f"衡山小厨二店{n[-5:]}", address="衡山路 2 号", circle_id=circle.id,
                cuisines=shop.cuisines, avg_spend_fen=6000))
            manager = find_user(s, DEMO_MANAGER)
            for st in (store, other):
                services.review_store(s, manager, st.id, approve=True)
            off = create_template(s, merchant.id, TemplateSpec(
                name=unique("满100减20"), kind=CouponKind.amount_off, value=2000, min_spend_fen=10000,
                valid_days=30, status=TemplateStatus.active))
            voucher = create_template(s, merchant.id, TemplateSpec(
                name=unique("10元代金券"), kind=CouponKind.voucher, value=1000, valid_days=30,
                status=TemplateStatus.active))

            def give(template, issued, store_id, source=CouponSource.store):
                return issue_coupon(s, template.id, f"stats-diner-{uuid.uuid4().hex[:10]}", now=issued,
                                    source=source, store_id=store_id)

            def use(coupon, when, store_id, bill_fen):
                return redeem(s, coupon.short_code, store_id, owner.id, bill_fen, uuid.uuid4().hex, now=when)

            # before the range: issued and redeemed the evening before it starts
            early = give(off, at(start - timedelta(days=3), 12), store.id)
            use(early, at(start - timedelta(days=1), 23, 50), store.id, 15000)
            # the first local day, ten past midnight (still the day before in UTC)
            first = give(off, at(start, 0, 10), store.id)
            use(first, at(start, 0, 30), store.id, 12000)
            # a voucher from an operator (issued, not claimed)
            v = give(voucher, at(start + timedelta(days=1), 12), store.id, CouponSource.other)
            use(v, at(start + timedelta(days=2), 12), store.id, 8000)
            # redeemed, reversed five minutes later by the owner, redeemed again the next day
            again = give(off, at(start + timedelta(days=1), 12, 10), store.id)
            red = use(again, at(start + timedelta(days=3), 18), store.id, 20000)
            reverse(s, red.redemption_id, owner, now=at(start + timedelta(days=3), 18, 5), reason="点错了")
            use(again, at(start + timedelta(days=4), 12), store.id, 10000)
            # the other store of the same circle
            elsewhere = give(voucher, at(start + timedelta(days=2), 12), other.id)
            use(elsewhere, at(start + timedelta(days=4), 13), other.id, 5000)
            # the last day: issued inside, redeemed five past midnight after the range
            late = give(off, at(end, 12), store.id)
            use(late, at(end + timedelta(days=1), 0, 5), store.id, 11000)
            ids = World(circle.id, store.id, store.name, other.id, (off.id, voucher.id), start, end)
        db.session.remove()

        # Roll up part of them: the page then adds waiting tallies to rollups.
        mine = db.session.scalars(select(Tally.id).where(Tally.store_id.in_([ids.store_id, ids.other_store_id]))
                                  .order_by(Tally.id)).all()
        assert len(mine) >= 10, mine
        middle = mine[len(mine) // 2]
        with transaction(db.session) as s:
            older = s.scalar(select(func.count()).select_from(Tally).where(Tally.id <= middle))
            roll_up(s, batch=older)
        db.session.remove()
        waiting = db.session.scalar(select(func.count()).select_from(Tally)
                                    .where(Tally.store_id == ids.store_id))
        rolled = db.session.scalar(select(func.count()).select_from(DailyStat)
                                   .where(DailyStat.store_id == ids.store_id))
        db.session.remove()
        assert waiting and rolled, (waiting, rolled)  # the page must mix both
    return ids


# ------------------------------------------------------------------ the independent count


def _day(column: str) -> str:
    if db.engine.dialect.name == "postgresql":
        return f"CAST(({column} AT TIME ZONE 'Asia/Shanghai') AS date)"
    return f"date({column}, '+8 hours')"  # SQLite keeps UTC text; Shanghai has no DST


def raw_redemptions(w: World, *, store_id: int | None = None) -> dict:
    """Straight from ``redemptions``/``redemption_reversals``/``coupons``/``stores``: what the
    dashboard should show, per local day and in total. Redeemed counts on its day, a reversal
    takes one and its discount back on the reversal's day."""
    pg = db.engine.dialect.name == "postgresql"
    params = {"lo": w.start if pg else w.start.isoformat(), "hi": w.end if pg else w.end.isoformat(),
              "circle": w.circle_id, "store": store_id}
    where = "s.circle_id = :circle AND (:store IS NULL OR s.id = :store)" if not pg else \
        "s.circle_id = :circle AND (CAST(:store AS integer) IS NULL OR s.id = CAST(:store AS integer))"
    redeemed = f"""
        SELECT {_day('r.redeemed_at')} AS d, COUNT(*), SUM(r.discount_fen), SUM(r.bill_fen)
        FROM redemptions r JOIN stores s ON s.id = r.store_id
        WHERE {_day('r.redeemed_at')} BETWEEN :lo AND :hi AND {where}
        GROUP BY 1"""
    reversed_ = f"""
        SELECT {_day('v.reversed_at')} AS d, COUNT(*), SUM(r.discount_fen), SUM(r.bill_fen)
        FROM redemption_reversals v JOIN redemptions r ON r.id = v.redemption_id JOIN stores s ON s.id = r.store_id
        WHERE {_day('v.reversed_at')} BETWEEN :lo AND :hi AND {where}
        GROUP BY 1"""
    issued = f"""
        SELECT COUNT(*) FROM coupons c JOIN stores s ON s.id = c.origin_store_id
        WHERE {_day('c.issued_at')} BETWEEN :lo AND :hi AND {where}"""
    try:
        days: dict[str, dict] = {}
        for sign, sql in ((1, redeemed), (-1, reversed_)):
            for d, count, discount, bill in db.session.execute(text(sql), params):
                acc = days.setdefault(str(d), {"redeemed": 0, "discount_fen": 0, "bill_fen": 0})
                acc["redeemed"] += sign * count
                acc["discount_fen"] += sign * int(discount)
                acc["bill_fen"] += sign * int(bill)
        total = {k: sum(v[k] for v in days.values()) for k in ("redeemed", "discount_fen", "bill_fen")}
        total["issued"] = db.session.execute(text(issued), params).scalar_one()
        return {"days": {d: v for d, v in days.items() if any(v.values())}, "total": total}
    finally:
        db.session.remove()


# ------------------------------------------------------------------ reading the page and CSV


def kpi(page, metric: str) -> int:
    return int(page.locator(f".kpi[data-metric={metric}] .kpi-value").get_attribute("data-value"))


def download_csv(page, link) -> list[list[str]]:
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename.endswith(".csv"), download.suggested_filename
    with open(download.path(), "rb") as fh:
        raw = fh.read()
    assert raw.startswith(b"\xef\xbb\xbf"), raw[:8]  # the BOM: spreadsheet programs read UTF-8
    return list(csv.reader(io.StringIO(raw[3:].decode("utf-8"))))


def fen(yuan: str) -> int:
    return int(Decimal(yuan) * 100)


def column(rows: list[list[str]], metric: str, first: int) -> list[str]:
    """A metric's cells: the CSV's metric columns follow ``first`` leading ones, in METRICS order."""
    i = first + METRICS.index(metric)
    return [r[i] for r in rows[1:]]


def csv_totals(rows: list[list[str]], first: int) -> dict:
    redeemed = sum(map(int, column(rows, "redeemed", first))) - sum(map(int, column(rows, "reversed", first)))
    return {"redeemed": redeemed, "discount_fen": sum(map(fen, column(rows, "discount_fen", first))),
            "bill_fen": sum(map(fen, column(rows, "bill_fen", first))),
            "issued": sum(map(int, column(rows, "issued", first)))}


def page_totals(page) -> dict:
    return {m: kpi(page, m) for m in ("redeemed", "discount_fen", "bill_fen", "issued")}


def shoot(page, artifacts, name: str) -> None:
    """Kept on purpose, to be looked at (LINLI_BROWSER_ARTIFACTS chooses the folder)."""
    page.screenshot(path=str(artifacts / name), full_page=True)


# ------------------------------------------------------------------ the walk


def test_manager_filters_drills_and_downloads_matching_csv(world, stack, new_page, login, artifacts):
    w = world
    page = new_page(viewport=DESKTOP)
    login(page, DEMO_MANAGER, DEMO_PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="数据统计").click()
    expect(page.locator("h1")).to_have_text("数据统计")

    # The range (custom, covering the data) and the circle.
    form = page.locator("form.stats-filters")
    form.locator("select[name=range]").select_option("custom")
    form.locator("input[name=from]").fill(w.start.isoformat())
    form.locator("input[name=to]").fill(w.end.isoformat())
    form.locator("select[name=circle]").select_option(label=CIRCLE)
    form.get_by_role("button", name="查看").click()
    page.wait_for_url(lambda url: f"circle={w.circle_id}" in url and "range=custom" in url)
    expect(form.locator("select[name=circle]")).to_have_value(str(w.circle_id))
    expect(page.locator("main")).to_contain_text(f"{w.start.isoformat()} – {w.end.isoformat()}")

    circle = raw_redemptions(w)
    assert page_totals(page) == circle["total"]
    assert circle["total"]["redeemed"] >= 4 and circle["total"]["discount_fen"] >= 6000, circle  # ours at least
    stores = page.locator("#by-store")
    expect(stores.locator(f"tr[data-id='{w.store_id}']")).to_have_count(1)
    expect(stores.locator(f"tr[data-id='{w.other_store_id}']")).to_have_count(1)
    page.wait_for_function("document.querySelectorAll('.chart canvas, .chart svg').length >= 2")
    shoot(page, artifacts, "stats-1280.png")

    # Drill into the store: the range and circle stay, the KPIs are the store's.
    stores.get_by_role("link", name=w.store_name).click()
    page.wait_for_url(lambda url: f"store={w.store_id}" in url and f"from={w.start.isoformat()}" in url)
    expect(page.locator("select[name=store]")).to_have_value(str(w.store_id))
    store = raw_redemptions(w, store_id=w.store_id)
    assert store["total"] == {"redeemed": 3, "discount_fen": 5000, "bill_fen": 50000 - 20000, "issued": 4}, store
    on_page = page_totals(page)
    assert on_page == store["total"]
    expect(page.locator("#by-template")).to_be_visible()
    shoot(page, artifacts, "stats-1280-store.png")

    # The series CSV: one row per day of the range, each day as the raw tables say.
    series = download_csv(page, page.locator("section.series a.csv"))
    assert series[0][0] == "日期" and len(series[0]) == 1 + len(METRICS)
    assert [r[0] for r in series[1:]] == [(w.start + timedelta(days=i)).isoformat()
                                        for i in range((w.end - w.start).days + 1)]
    assert csv_totals(series, 1) == on_page == store["total"]
    by_day = {}
    for r in series[1:]:
        red = int(r[1 + METRICS.index("redeemed")]) - int(r[1 + METRICS.index("reversed")])
        d = {"redeemed": red, "discount_fen": fen(r[1 + METRICS.index("discount_fen")]),
             "bill_fen": fen(r[1 + METRICS.index("bill_fen")])}
        if any(d.values()):
            by_day[r[0]] = d
    assert by_day == store["days"]
    # the page's own series table says the same
    table = page.locator("table[data-table=series] tbody tr")
    expect(table).to_have_count(len(series) - 1)

    # The template table's CSV: both templates, adding up to the same totals.
    templates = download_csv(page, page.locator("#by-template a.csv"))
    assert templates[0][:2] == ["id", "优惠券"]
    assert sorted(int(r[0]) for r in templates[1:]) == sorted(w.template_ids)
    assert csv_totals(templates, 2) == on_page


def test_dashboard_fits_a_phone(world, stack, new_page, login, artifacts):
    """390 px: nothing wider than the screen, and both charts drawn."""
    w = world
    page = new_page(viewport=PHONE)
    login(page, DEMO_MANAGER, DEMO_PASSWORD)
    page.goto(f"/stats/?range=custom&from={w.start.isoformat()}&to={w.end.isoformat()}&circle={w.circle_id}")
    expect(page.locator("h1")).to_have_text("数据统计")
    page.wait_for_function(
        "[...document.querySelectorAll('.chart[data-chart-src]')].every(el => el.querySelector('canvas, svg'))")
    assert page.locator(".chart[data-chart-src]").count() == 2
    assert page.locator(".chart.chart-empty").count() == 0
    for chart in page.locator(".chart[data-chart-src]").all():
        box = chart.bounding_box()
        assert box and box["width"] > 200 and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 1, box
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    assert kpi(page, "redeemed") == raw_redemptions(w)["total"]["redeemed"]
    shoot(page, artifacts, "stats-390.png")
    page.locator("#by-store").get_by_role("link", name=w.store_name).click()
    expect(page.locator("#by-template")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    shoot(page, artifacts, "stats-390-store.png")
