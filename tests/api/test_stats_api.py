"""The statistics over the API for a manager key (issue 12): its regions' numbers and no other
region's (a foreign filter is a 404), the same numbers as the dashboard for the same range,
bad ranges a 422, a merchant's or a store's key a 403."""
from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta

import pytest

from accounts.models import User
from campaigns.models import Campaign
from core.db import db, utcnow
from core.tally import METRICS
from core.txn import transaction
from coupons import services as coupons
from coupons.models import CouponSource
from integrations.services import keys
from merchants.models import Region
from residents import services as residents
from stats.services import rollup
from tests.api.conftest import auth
from tests.api.test_channels import make_channel
from tests.support.coupons import NOW, make_shop, make_template
from tests.support.merchants import FreshContextClient, login, make_manager, make_regions
from tests.support.residents import make_member, make_resident

PROBLEM = "application/problem+json"
JUNE = {"from": "2025-06-01", "to": "2025-06-30"}
ROUTES = (("/api/v1/stats/summary", {}), ("/api/v1/stats/series", {}), ("/api/v1/stats/breakdown", {"by": "store"}))


def make_campaign(session, name: str, *, merchant_id: int | None = None, region_id: int | None = None) -> int:
    """A campaign row (a draft: nothing is planned for it), owned by a merchant or a region."""
    campaign = Campaign(merchant_id=merchant_id, region_id=region_id, name=name, message="本周特惠", reason="附近的店",
                        send_from=utcnow(), send_until=utcnow() + timedelta(days=7))
    session.add(campaign)
    session.flush()
    return campaign.id


def shop_with_sales(circle_id: int, name: str, sales: int, at=NOW):
    """A shop whose store gained ``sales`` + 1 contacts and coupons on the days up to ``at``,
    ``sales`` of them redeemed (one a day, ``at`` back)."""
    with transaction(db.session) as session:
        shop = make_shop(session, session.get(Region, circle_id), name=name)
    day = at.date()
    template = make_template(shop, valid_from=day - timedelta(days=30), valid_until=day + timedelta(days=30),
                             total_stock=None)
    with transaction(db.session) as session:
        member = make_member(session, f"m{shop.store.id}")
        for i in range(sales + 1):
            when = at - timedelta(days=i)
            resident = make_resident(session)
            residents.open_relationship(session, resident.id, member.id, shop.store.id, None, when)
            coupon = coupons.issue_coupon(session, template.id, f"r:{resident.id}", resident_id=resident.id,
                                          now=when, source=CouponSource.welcome, store_id=shop.store.id)
            if i < sales:
                coupons.redeem(session, coupon.short_code, shop.store.id, shop.cashier.id, 15000,
                               f"k{shop.store.id}-{i}", when + timedelta(minutes=3))
    return shop


@pytest.fixture
def hood(app):
    """徐汇区 (徐家汇: 3 sales) and 静安区 (南京西路: 5 sales), a manager key for each district."""
    app.test_client_class = FreshContextClient
    ids = make_regions()
    xjh = shop_with_sales(ids["徐家汇"], "蜀味小馆", 3)
    with transaction(db.session) as session:
        rollup.roll_up(session)  # 徐家汇's rolled up; 南京西路's still waiting: the API adds both
    njx = shop_with_sales(ids["南京西路"], "静安面馆", 5)
    xuhui, jingan = make_manager("xuhui", [ids["徐汇区"]]), make_manager("jingan", [ids["静安区"]])
    with transaction(db.session) as session:
        tokens = {"xuhui": keys.create_key(session, manager_id=xuhui).token,
                  "jingan": keys.create_key(session, manager_id=jingan).token,
                  "merchant": keys.create_key(session, merchant_id=xjh.merchant.id).token,
                  "store": keys.create_key(session, store_id=xjh.store.id).token}
        campaigns = {"xuhui": make_campaign(session, "徐汇周末", region_id=ids["徐汇区"]),
                     "jingan": make_campaign(session, "静安周末", merchant_id=njx.merchant.id)}
    return ids, xjh, njx, tokens, campaigns


def _get(client, token: str, path: str, **params):
    return client.get(path, query_string=params, headers=auth(token))


def _ok(client, token: str, path: str, **params) -> dict:
    resp = _get(client, token, path, **params)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    return resp.get_json()


def test_a_manager_key_sees_its_regions_numbers_only(client, hood):
    ids, xjh, njx, tokens, campaigns = hood
    summary = _ok(client, tokens["xuhui"], "/api/v1/stats/summary", **JUNE)
    assert (summary["from"], summary["to"]) == ("2025-06-01", "2025-06-30")
    totals = summary["totals"]
    assert set(totals) == set(METRICS) == set(summary["previous"])
    assert (totals["redeemed"], totals["issued"], totals["new_contacts"], totals["bill_fen"]) == (3, 4, 4, 45000)
    assert summary["previous"]["redeemed"] == 0 and summary["net_contacts"] == 4
    assert summary["funnel"] == [{"stage": "new_contacts", "value": 4}, {"stage": "issued", "value": 4},
                                 {"stage": "redeemed", "value": 3}]
    stores = _ok(client, tokens["xuhui"], "/api/v1/stats/breakdown", by="store", **JUNE)["data"]
    assert [(r["id"], r["name"], r["redeemed"]) for r in stores] == [(xjh.store.id, xjh.store.name, 3)]
    for by in ("circle", "merchant", "template", "campaign", "channel"):
        text = _get(client, tokens["xuhui"], "/api/v1/stats/breakdown", by=by, **JUNE).get_data(as_text=True)
        assert "静安" not in text and "南京西路" not in text, (by, text)
    circles = _ok(client, tokens["xuhui"], "/api/v1/stats/breakdown", by="circle", **JUNE)["data"]
    assert [(r["id"], r["redeemed"]) for r in circles] == [(ids["徐家汇"], 3)]
    series = _ok(client, tokens["xuhui"], "/api/v1/stats/series", **JUNE)["data"]
    assert len(series) == 30 and series[0]["day"] == "2025-06-01" and sum(p["redeemed"] for p in series) == 3
    weeks = _ok(client, tokens["xuhui"], "/api/v1/stats/series", grain="week", **JUNE)["data"]
    assert weeks[0]["day"] == "2025-05-26" and sum(p["redeemed"] for p in weeks) == 3
    # the other district's manager: its numbers, not these
    jingan = _ok(client, tokens["jingan"], "/api/v1/stats/summary", **JUNE)["totals"]
    assert (jingan["redeemed"], jingan["issued"]) == (5, 6)
    # every filter naming another region's thing is a 404, not zeros
    channel = make_channel(njx.store)
    for name, value in (("circle_id", ids["南京西路"]), ("merchant_id", njx.merchant.id), ("store_id", njx.store.id),
                        ("campaign_id", campaigns["jingan"]), ("channel_id", channel)):
        for path, extra in ROUTES:
            resp = client.get(path, query_string={**JUNE, **extra, name: value}, headers=auth(tokens["xuhui"]))
            assert resp.status_code == 404 and resp.mimetype == PROBLEM, (path, name, resp.get_data(as_text=True))
    # and its own filters narrow
    own = make_channel(xjh.store, "桌贴", kind="table")
    for name, value, redeemed in (("circle_id", ids["徐家汇"], 3), ("circle_id", ids["田林"], 0),
                                  ("merchant_id", xjh.merchant.id, 3), ("store_id", xjh.other_store.id, 0),
                                  ("campaign_id", campaigns["xuhui"], 0), ("channel_id", own, 0),
                                  ("cuisine", "sichuan", 3), ("cuisine", "hunan", 0)):
        got = _ok(client, tokens["xuhui"], "/api/v1/stats/summary", **JUNE, **{name: value})["totals"]["redeemed"]
        assert got == redeemed, (name, value, got)
    idle = _ok(client, tokens["xuhui"], "/api/v1/stats/breakdown", by="channel", store_id=xjh.store.id, **JUNE)
    assert [(r["id"], r["name"], r["redeemed"]) for r in idle["data"]] == [(own, "桌贴", 0)]  # idle codes listed


def test_the_previous_period_is_the_one_before(client, hood):
    """June 10–11 against June 8–9 (a sale a day on June 9, 10, 11 at 徐家汇)."""
    _ids, _xjh, _njx, tokens, _campaigns = hood
    summary = _ok(client, tokens["xuhui"], "/api/v1/stats/summary", **{"from": "2025-06-10", "to": "2025-06-11"})
    assert (summary["totals"]["redeemed"], summary["previous"]["redeemed"]) == (2, 1)
    assert summary["net_contacts"] == 4  # all history up to June 11


def _kpi(page: str, metric: str) -> int:
    match = re.search(rf'data-metric="{metric}">.*?data-value="(-?\d+)"', page, re.S)
    assert match, metric
    return int(match.group(1))


def _csv(resp) -> list[dict]:
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(resp.get_data().decode("utf-8-sig"))))


def _fen(cell: str) -> int:
    return round(float(cell) * 100)


@pytest.mark.parametrize("span", [("2025-06-01", "2025-06-30"), ("2025-05-20", "2025-06-10"),
                                  ("2024-07-01", "2025-06-30")], ids=["month", "days", "year"])
def test_the_totals_are_the_dashboards(app, client, hood, span):
    """The same manager, the same range: the API's numbers are the page's KPIs and its CSV's."""
    _ids, xjh, _njx, tokens, _campaigns = hood
    start, end = span
    page_q = f"range=custom&from={start}&to={end}"
    web = app.test_client()
    assert login(web, "xuhui").status_code == 302
    html = web.get(f"/stats/?{page_q}").get_data(as_text=True)
    summary = _ok(client, tokens["xuhui"], "/api/v1/stats/summary", **{"from": start, "to": end})
    totals = summary["totals"]
    for metric in ("new_contacts", "issued", "claimed", "discount_fen", "bill_fen", "pushes_delivered"):
        assert totals[metric] == _kpi(html, metric), metric
    assert totals["redeemed"] - totals["reversed"] == _kpi(html, "redeemed")
    assert summary["net_contacts"] == _kpi(html, "net_contacts")
    labels = {m: h for m, h in zip(METRICS, next(csv.reader(io.StringIO(
        web.get(f"/stats/export.csv?table=series&{page_q}").get_data().decode("utf-8-sig"))))[1:])}
    grain = "day" if (date.fromisoformat(end) - date.fromisoformat(start)).days < 92 else "week"
    rows = _csv(web.get(f"/stats/export.csv?table=series&{page_q}&grain={grain}"))
    series = _ok(client, tokens["xuhui"], "/api/v1/stats/series", grain=grain, **{"from": start, "to": end})["data"]
    assert [p["day"] for p in series] == [r["日期"] for r in rows]
    for point, row in zip(series, rows):
        for m in METRICS:
            assert point[m] == (_fen(row[labels[m]]) if m.endswith("_fen") else int(row[labels[m]])), (point["day"], m)
    stores = _csv(web.get(f"/stats/export.csv?table=store&{page_q}"))
    api_stores = _ok(client, tokens["xuhui"], "/api/v1/stats/breakdown", by="store", **{"from": start, "to": end})
    assert [(r["id"], r["redeemed"]) for r in api_stores["data"]] == [(int(r["id"]), int(r[labels["redeemed"]]))
                                                                       for r in stores]
    assert all(r["id"] == xjh.store.id for r in api_stores["data"])


@pytest.mark.parametrize("params", [
    {"from": "2025-06-30", "to": "2025-06-01"},  # to before from
    {"from": "2023-01-01", "to": "2025-01-31"},  # longer than report.MAX_DAYS
    {"from": "1999-12-31", "to": "2000-01-05"},  # before the statistics' epoch
    {"from": "9999-12-01", "to": "9999-12-31"},
    {"from": "2025-06-01"},  # no end
    {"from": "x", "to": "y"},
    {**JUNE, "cuisine": "martian"},
    {**JUNE, "circle_id": "abc"},
    {**JUNE, "store_id": "99999999999"},
    {**JUNE, "campaign_id": "0"},
    {**JUNE, "grain": "hour"},
    {**JUNE, "by": "resident"},
    {**JUNE, "color": "red"},
], ids=str)
def test_bad_ranges_and_filters_are_a_422(client, hood, params):
    tokens = hood[3]
    for path in ("/api/v1/stats/summary", "/api/v1/stats/series", "/api/v1/stats/breakdown"):
        query = {"by": "store", **params} if path.endswith("breakdown") else params
        if ("grain" in query and not path.endswith("series")) or ("by" in query and not path.endswith("breakdown")):
            query = {k: v for k, v in query.items() if k not in ("grain", "by")} | {"color": "red"}
        resp = client.get(path, query_string=query, headers=auth(tokens["xuhui"]))
        assert resp.status_code == 422, (path, query, resp.status_code, resp.get_data(as_text=True))
        assert resp.mimetype == PROBLEM and resp.get_json()["code"] == "validation"


def test_the_longest_range_is_allowed(client, hood):
    tokens = hood[3]
    end = date(2025, 6, 30)
    start = end - timedelta(days=730)  # report.MAX_DAYS days, both ends included
    summary = _ok(client, tokens["xuhui"], "/api/v1/stats/summary", **{"from": start.isoformat(), "to": "2025-06-30"})
    assert summary["totals"]["redeemed"] == 3
    months = _ok(client, tokens["xuhui"], "/api/v1/stats/series", grain="month",
                 **{"from": start.isoformat(), "to": "2025-06-30"})["data"]
    assert len(months) == 24 and months[0]["day"] == "2023-07-01"
    assert (months[-1]["day"], months[-1]["redeemed"]) == ("2025-06-01", 3)
    one_more = {"from": (start - timedelta(days=1)).isoformat(), "to": "2025-06-30"}
    assert _get(client, tokens["xuhui"], "/api/v1/stats/summary", **one_more).status_code == 422


def test_merchant_and_store_keys_are_refused(client, hood):
    tokens = hood[3]
    for path, extra in ROUTES:
        for who in ("merchant", "store"):
            resp = client.get(path, query_string={**JUNE, **extra}, headers=auth(tokens[who]))
            assert resp.status_code == 403 and resp.mimetype == PROBLEM, (path, who)
            assert resp.get_json()["code"] == "forbidden"
        assert client.get(path, query_string={**JUNE, **extra}).status_code == 401


def test_a_deactivated_managers_key_reads_nothing(client, hood):
    tokens = hood[3]
    assert _get(client, tokens["xuhui"], "/api/v1/stats/summary", **JUNE).status_code == 200
    with transaction(db.session) as session:
        key = keys.authenticate(session, tokens["xuhui"])
        session.get(User, key.manager_id).active = False
    assert _get(client, tokens["xuhui"], "/api/v1/stats/summary", **JUNE).status_code == 403
