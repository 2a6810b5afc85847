"""The dashboards: a manager's numbers are their regions' (page and CSV), an owner's their
merchant's, the page's totals equal its CSV and an independent count over the raw tables, bad
filters are a 400."""
from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta

import pytest
from sqlalchemy import text

from core.db import db
from core.txn import transaction
from coupons import services as coupons
from coupons.models import CouponSource
from merchants.models import Region
from residents import services as residents
from stats.services import rollup
from tests.support.coupons import NOW, make_shop, make_template
from tests.support.merchants import FreshContextClient, login, make_admin, make_manager, make_owner, make_regions
from tests.support.residents import make_member, make_resident

MONTH = "range=custom&from=2025-06-01&to=2025-06-30"


def _shop_with_sales(circle_id: int, name: str, sales: int):
    with transaction(db.session) as session:
        shop = make_shop(session, session.get(Region, circle_id), name=name)
    template = make_template(shop, valid_from=date(2025, 6, 1), valid_until=date(2025, 6, 30), total_stock=None)
    with transaction(db.session) as session:
        member = make_member(session, f"m{shop.store.id}")
        for i in range(sales + 1):
            at = NOW - timedelta(days=i)
            resident = make_resident(session)
            residents.open_relationship(session, resident.id, member.id, shop.store.id, None, at)
            coupon = coupons.issue_coupon(session, template.id, f"r:{resident.id}", resident_id=resident.id, now=at,
                                          source=CouponSource.welcome, store_id=shop.store.id)
            if i < sales:
                coupons.redeem(session, coupon.short_code, shop.store.id, shop.cashier.id, 15000, f"k{shop.store.id}-{i}",
                               at + timedelta(minutes=3))
    return shop


@pytest.fixture
def hood(app):
    app.test_client_class = FreshContextClient
    ids = make_regions()
    xjh = _shop_with_sales(ids["徐家汇"], "蜀味小馆", 3)
    njx = _shop_with_sales(ids["南京西路"], "静安面馆", 5)
    make_manager("xuhui", [ids["徐汇区"]])
    make_admin("root")
    make_owner("boss")
    return ids, xjh, njx


def _kpi(page: str, metric: str) -> int:
    match = re.search(rf'data-metric="{metric}">.*?data-value="(-?\d+)"', page, re.S)
    assert match, metric
    return int(match.group(1))


def _csv(resp) -> list[dict]:
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    body = resp.get_data()
    assert body.startswith("\ufeff".encode())
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))


def test_a_manager_sees_their_regions_only(app, hood):
    ids, xjh, njx = hood
    client = app.test_client()
    assert login(client, "xuhui").status_code == 302
    with transaction(db.session) as session:
        rollup.roll_up(session)  # half rolled up, half waiting: the page adds both
    page = client.get(f"/stats/?{MONTH}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "蜀味小馆" in html and "静安面馆" not in html
    assert _kpi(html, "redeemed") == 3
    rows = _csv(client.get(f"/stats/export.csv?table=store&{MONTH}"))
    assert [r["门店"] for r in rows] == [xjh.store.name]
    assert sum(int(r["核销"]) for r in rows) == 3
    with transaction(db.session) as session:
        raw = session.scalar(text("SELECT count(*) FROM redemptions r JOIN stores s ON s.id = r.store_id"
                                  " WHERE s.circle_id = :c AND NOT r.reversed"), {"c": ids["徐家汇"]})
    assert raw == 3
    series = _csv(client.get(f"/stats/export.csv?table=series&{MONTH}"))
    assert len(series) == 30 and sum(int(r["核销"]) for r in series) == 3
    # another region's circle or store as a filter shows nothing of it
    other = client.get(f"/stats/?{MONTH}&circle={ids['南京西路']}").get_data(as_text=True)
    assert _kpi(other, "redeemed") == 0 and "静安面馆" not in other
    assert client.get(f"/stats/export.csv?table=store&{MONTH}&store={njx.store.id}").status_code == 404
    assert client.get(f"/stats/?{MONTH}&store={njx.store.id}").status_code == 404


def test_the_admin_sees_all_and_drills_down(app, hood):
    ids, xjh, njx = hood
    client = app.test_client()
    assert login(client, "root").status_code == 302
    html = client.get(f"/stats/?{MONTH}").get_data(as_text=True)
    assert _kpi(html, "redeemed") == 8 and _kpi(html, "new_contacts") == 10
    assert 'id="by-circle"' in html
    circle = client.get(f"/stats/?{MONTH}&circle={ids['南京西路']}").get_data(as_text=True)
    assert 'id="by-store"' in circle and _kpi(circle, "redeemed") == 5
    store = client.get(f"/stats/?{MONTH}&store={njx.store.id}").get_data(as_text=True)
    assert 'id="by-template"' in store and _kpi(store, "redeemed") == 5
    en = client.get(f"/stats/?{MONTH}&lang=en").get_data(as_text=True)
    assert "Redeemed" in en or "redeemed" in en.lower()


@pytest.mark.parametrize("query", [
    "range=forever", "range=custom&from=2025-06-30&to=2025-06-01", "range=custom&from=x&to=y",
    "range=custom&from=2020-01-01&to=2025-01-01", "circle=abc", "store=99999999999", "cuisine=martian",
    "range=custom&from=0001-01-01&to=0001-01-31", "range=custom&from=9999-12-20&to=9999-12-31",
    "grain=hour",
])
def test_bad_filters_are_a_400(app, hood, query):
    client = app.test_client()
    assert login(client, "root").status_code == 302
    assert client.get(f"/stats/?{query}").status_code == 400
    assert client.get(f"/stats/export.csv?{query}").status_code == 400


def test_owners_and_strangers_are_refused(app, hood):
    client = app.test_client()
    assert client.get("/stats/").status_code in (302, 401)
    assert login(client, "boss").status_code == 302
    assert client.get("/stats/").status_code == 403
    assert client.get("/stats/export.csv").status_code == 403


def test_an_owner_reads_the_same_rollups_for_their_stores(app, hood):
    """The merchant's dashboard is the same page over the owner's merchant: its stores and
    coupons, a store narrowed through the store page's link, CSV of its own numbers only."""
    ids, xjh, njx = hood
    client = app.test_client()
    assert login(client, xjh.owner.username).status_code == 302
    with transaction(db.session) as session:
        rollup.roll_up(session)
    html = client.get(f"/portal/dashboard?{MONTH}").get_data(as_text=True)
    assert _kpi(html, "redeemed") == 3 and _kpi(html, "issued") == 4 and _kpi(html, "new_contacts") == 4
    assert 'id="by-store"' in html and 'id="by-template"' in html and "静安面馆" not in html
    assert 'name="circle"' not in html  # a merchant filters by its own stores, not circles
    link = client.get(f"/portal/stores/{xjh.store.id}/dashboard?{MONTH}")
    assert link.status_code == 302 and f"store={xjh.store.id}" in link.headers["Location"]
    store = client.get(link.headers["Location"]).get_data(as_text=True)
    assert _kpi(store, "redeemed") == 3 and 'id="by-channel"' in store
    rows = _csv(client.get(f"/stats/export.csv?table=template&{MONTH}"))
    assert sum(int(r["核销"]) for r in rows) == 3 and sum(float(r["优惠金额(元)"]) for r in rows) > 0
    # another merchant's store is not there, not even as zeros
    assert client.get(f"/portal/dashboard?{MONTH}&store={njx.store.id}").status_code == 404
    assert client.get(f"/stats/export.csv?{MONTH}&store={njx.store.id}").status_code == 404
    assert client.get(f"/portal/stores/{njx.store.id}/dashboard").status_code in (302, 404)
    assert client.get("/stats/").status_code == 403  # the regional page stays the managers'
