"""The monthly settlement statement and the admin's overview: the statement's figures equal
sums over the raw redemptions (split by who funds the coupon, net of reversals, by local
month), rolled up or not; its CSV equals its page; a manager sees their regions' merchants, an
owner their own; the overview counts a small world right."""
from __future__ import annotations

import csv
import io
import re
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import event, func, select

from accounts.models import User
from campaigns.models import Delivery, DeliveryStatus, PlanRound, SendChunk
from core.db import db, utcnow
from core.localtime import local, local_midnight
from core.tally import count as tally_count
from core.txn import transaction
from coupons import services as coupons
from coupons.models import Coupon, CouponKind, CouponSource, CouponTemplate, FundedBy, Redemption, RedemptionReversal
from merchants.models import Merchant, Region, ReviewStatus, Store
from residents.models import Resident
from stats.services import overview, report, rollup, settlement
from tests.support.coupons import make_shop, make_template
from tests.support.merchants import (
    FreshContextClient,
    login,
    make_admin,
    make_manager,
    make_merchant,
    make_owner,
    make_regions,
)
from tests.support.residents import make_member, make_resident, open_contact

JUNE = date(2025, 6, 1)
SH = timezone(timedelta(hours=8))


def _at(y, m, d, hh, mm) -> datetime:
    """A Shanghai wall-clock moment as aware UTC."""
    return datetime(y, m, d, hh, mm, tzinfo=SH).astimezone(timezone.utc)


class Sales:
    """A shop's merchant- and platform-funded templates and a helper to sell on them."""

    def __init__(self, circle_id: int, name: str):
        with transaction(db.session) as session:
            self.shop = make_shop(session, session.get(Region, circle_id), name=name)
        window = dict(valid_from=date(2025, 5, 1), valid_until=date(2025, 7, 31), total_stock=None)
        self.own = make_template(self.shop, name="满100减20", **window)  # 2000 off a 100+ bill
        self.paid = make_template(self.shop, name="平台补贴15元", kind=CouponKind.voucher, value=1500, min_spend_fen=0,
                                  funded_by=FundedBy.platform, **window)
        self.n = 0

    def sell(self, template, at: datetime, bill: int = 15000, reverse_after: timedelta | None = None) -> None:
        self.n += 1
        with transaction(db.session) as session:
            issued = at - timedelta(hours=1)
            coupon = coupons.issue_coupon(session, template.id, f"r:{self.shop.store.id}-{self.n}", now=issued,
                                          source=CouponSource.store, store_id=self.shop.store.id)
            result = coupons.redeem(session, coupon.short_code, self.shop.store.id, self.shop.cashier.id, bill,
                                    f"k{self.shop.store.id}-{self.n}", at)
            if reverse_after is not None:
                coupons.reverse(session, result.redemption_id, session.get(User, self.shop.owner.id), at + reverse_after)


@contextmanager
def _statements():
    """The SQL statements run inside the block (a list, filled as they run)."""
    seen: list[str] = []

    def note(_conn, _cursor, statement, *_args):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", note)


def _roll_all():
    with transaction(db.session) as session:
        while rollup.roll_up(session):
            pass


@pytest.fixture
def world(app):
    """徐家汇 (徐汇区): 蜀味小馆; 南京西路 (静安区): 静安面馆. June sales on both kinds of coupon,
    a reversal within June, one across the May/June midnight, sales on both sides of it."""
    app.test_client_class = FreshContextClient
    ids = make_regions()
    xjh = Sales(ids["徐家汇"], "蜀味小馆")
    njx = Sales(ids["南京西路"], "静安面馆")
    xjh.sell(xjh.own, _at(2025, 6, 3, 12, 0))
    xjh.sell(xjh.own, _at(2025, 6, 4, 12, 0), bill=20000)
    xjh.sell(xjh.paid, _at(2025, 6, 5, 12, 0))
    xjh.sell(xjh.paid, _at(2025, 6, 6, 12, 0), bill=8000)
    xjh.sell(xjh.paid, _at(2025, 6, 7, 12, 0), reverse_after=timedelta(minutes=5))  # reversed within June
    xjh.sell(xjh.paid, _at(2025, 5, 31, 23, 55), reverse_after=timedelta(minutes=8))  # reversed on June 1st
    xjh.sell(xjh.own, _at(2025, 5, 31, 23, 59))  # May, by a minute
    xjh.sell(xjh.paid, _at(2025, 6, 30, 23, 59))  # still June
    xjh.sell(xjh.paid, _at(2025, 7, 1, 0, 1))  # July
    njx.sell(njx.own, _at(2025, 6, 10, 19, 0))
    njx.sell(njx.paid, _at(2025, 6, 11, 19, 0))
    njx.sell(njx.paid, _at(2025, 6, 12, 19, 0), bill=30000)
    make_manager("xuhui", [ids["徐汇区"]])
    make_admin("root")
    make_owner("nobody")  # an owner without a merchant
    return ids, xjh, njx


def _raw(session, month: date) -> dict[int, dict]:
    """Per merchant from the raw tables: redemptions in the local month less reversals made in
    it, split by who funds the template."""
    start, end = local_midnight(month), local_midnight((month + timedelta(days=32)).replace(day=1))
    out: dict[int, dict] = {}
    for sign, at in ((1, Redemption.redeemed_at), (-1, RedemptionReversal.reversed_at)):
        q = (select(Store.merchant_id, CouponTemplate.funded_by, func.count(), func.sum(Redemption.discount_fen),
                    func.sum(Redemption.bill_fen))
             .select_from(Redemption)
             .join(Coupon, Coupon.id == Redemption.coupon_id).join(CouponTemplate, CouponTemplate.id == Coupon.template_id)
             .join(Store, Store.id == Redemption.store_id))
        if sign < 0:
            q = q.join(RedemptionReversal, RedemptionReversal.redemption_id == Redemption.id)
        q = q.where(at >= start, at < end).group_by(Store.merchant_id, CouponTemplate.funded_by)
        for merchant_id, funded_by, n, discount, bill in session.execute(q):
            row = out.setdefault(merchant_id, {"redeemed": 0, "platform_redeemed": 0, "merchant_discount_fen": 0,
                                               "platform_discount_fen": 0, "bill_fen": 0})
            platform = funded_by == FundedBy.platform
            row["redeemed"] += sign * n
            row["platform_redeemed"] += sign * n if platform else 0
            row["platform_discount_fen" if platform else "merchant_discount_fen"] += sign * int(discount)
            row["bill_fen"] += sign * int(bill)
    return out


def _as_dict(lines) -> dict[int, dict]:
    return {line.merchant_id: {k: getattr(line, k) for k in settlement.SUMMED} for line in lines}


@pytest.mark.parametrize("rolled", ["none", "all", "half"])
def test_the_statement_equals_the_raw_redemptions(app, world, rolled):
    _ids, xjh, njx = world
    if rolled == "all":
        _roll_all()
    elif rolled == "half":
        with transaction(db.session) as session:
            rollup.roll_up(session, batch=7)
    with transaction(db.session) as session:
        for month in (date(2025, 5, 1), JUNE, date(2025, 7, 1)):
            lines = settlement.statement(session, report.Scope(), month)
            assert _as_dict(lines) == _raw(session, month), month
        with _statements() as seen:
            june = {line.merchant_id: line for line in settlement.statement(session, report.Scope(), JUNE)}
        assert len(seen) == 2  # the grouped sums, the names
        # also NOT reversed over the raw rows, for June's merchant-funded sales (no reversal crosses a month there)
        own = session.execute(
            select(func.count(), func.sum(Redemption.discount_fen)).join(Coupon, Coupon.id == Redemption.coupon_id)
            .where(Coupon.template_id == xjh.own.id, Redemption.reversed.is_(False),
                   Redemption.redeemed_at >= local_midnight(JUNE), Redemption.redeemed_at < local_midnight(date(2025, 7, 1)))
        ).one()
    a, b = june[xjh.shop.merchant.id], june[njx.shop.merchant.id]
    # 蜀味小馆 in June: 2 own (2000 off each), paid 1500 × (5th, 6th, 30th), the 7th's reversed;
    # the May 31st one reversed on June 1st counts -1 in June
    assert (a.redeemed, a.platform_redeemed) == (4, 2) == (own[0] + 2, 2)
    assert a.merchant_discount_fen == 4000 == own[1]
    assert a.platform_discount_fen == a.owed_fen == 1500 * 2
    assert a.bill_fen == 15000 + 20000 + 15000 + 8000 + 15000 - 15000
    assert (b.redeemed, b.merchant_discount_fen, b.owed_fen) == (3, 2000, 3000)
    total = settlement.total(list(june.values()))
    assert (total.redeemed, total.owed_fen, total.merchant_discount_fen) == (7, 6000, 6000)


def _rows(resp) -> list[list[str]]:
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    body = resp.get_data()
    assert body.startswith("\ufeff".encode())
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


def _page_total(html: str, key: str) -> int:
    foot = html.split("<tfoot>", 1)[1]
    match = re.search(rf'data-key="{key}" data-value="(-?\d+)"', foot)
    assert match, key
    return int(match.group(1))


def _yuan(fen: int) -> str:
    return f"{fen / 100:.2f}"


def test_the_admin_sees_every_merchant_page_and_csv_agree(app, world):
    _ids, xjh, njx = world
    client = app.test_client()
    assert login(client, "root").status_code == 302
    _roll_all()
    page = client.get("/stats/settlement?month=2025-06")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "蜀味小馆" in html and "静安面馆" in html
    rows = _rows(client.get("/stats/settlement.csv?month=2025-06"))
    head, body, foot = rows[0], rows[1:-1], rows[-1]
    assert head[:2] == ["id", "商户"] and "平台应付商户(元)" in head
    assert [int(r[0]) for r in body] == sorted([xjh.shop.merchant.id, njx.shop.merchant.id])
    assert foot[1] == "合计"
    col = {name: i for i, name in enumerate(head)}
    assert int(foot[col["核销张数"]]) == _page_total(html, "redeemed") == 7
    assert foot[col["平台应付商户(元)"]] == _yuan(_page_total(html, "owed_fen")) == "60.00"
    assert foot[col["商户承担优惠(元)"]] == _yuan(_page_total(html, "merchant_discount_fen")) == "60.00"
    assert foot[col["带动消费(元)"]] == _yuan(_page_total(html, "bill_fen"))
    # the totals line is the sum of the merchants' lines
    for name in ("平台应付商户(元)", "带动消费(元)"):
        assert f"{sum(float(r[col[name]]) for r in body):.2f}" == foot[col[name]]
    assert "¥60.00" in html
    # the default month is the last full one
    last = (local(utcnow()).date().replace(day=1) - timedelta(days=1)).replace(day=1)
    assert f'value="{last.strftime("%Y-%m")}"' in client.get("/stats/settlement").get_data(as_text=True)


def test_a_manager_sees_their_regions_merchants_and_an_owner_their_own(app, world):
    _ids, xjh, njx = world
    client = app.test_client()
    assert login(client, "xuhui").status_code == 302
    html = client.get("/stats/settlement?month=2025-06").get_data(as_text=True)
    assert "蜀味小馆" in html and "静安面馆" not in html
    body = _rows(client.get("/stats/settlement.csv?month=2025-06"))[1:]
    assert [r[1] for r in body] == ["蜀味小馆", "合计"]
    assert _page_total(html, "owed_fen") == 3000

    owner = app.test_client()
    assert login(owner, njx.shop.owner.username).status_code == 302
    html = owner.get("/stats/settlement?month=2025-06").get_data(as_text=True)
    assert "静安面馆" in html and "蜀味小馆" not in html
    head, *body = _rows(owner.get("/stats/settlement.csv?month=2025-06"))
    assert [int(r[0]) for r in body[:-1]] == [njx.shop.merchant.id]
    assert body[-1][1] == "合计" and body[-1][head.index("平台应付商户(元)")] == _yuan(3000)
    assert owner.get("/stats/overview").status_code == 403


@pytest.mark.parametrize("who", ["cashier", "nobody", "xuhui-overview"])
def test_others_are_refused(app, world, who):
    _ids, xjh, _njx = world
    client = app.test_client()
    assert client.get("/stats/settlement").status_code in (302, 401)
    assert client.get("/stats/overview").status_code in (302, 401)
    if who == "xuhui-overview":
        assert login(client, "xuhui").status_code == 302
        assert client.get("/stats/overview").status_code == 403
        return
    username = xjh.shop.cashier.username if who == "cashier" else "nobody"
    assert login(client, username).status_code == 302
    assert client.get("/stats/settlement?month=2025-06").status_code == 403
    assert client.get("/stats/settlement.csv?month=2025-06").status_code == 403
    assert client.get("/stats/overview").status_code == 403


@pytest.mark.parametrize("month", ["2025-13", "2025-00", "25-06", "2025-6", "abcd-ef", "1900-01", "2025-06-01", "2025-06%0A",
                                   "２０２５-06", "2025-06%00"])
def test_a_bad_month_is_a_400(app, world, month):
    client = app.test_client()
    assert login(client, "root").status_code == 302
    assert client.get(f"/stats/settlement?month={month}").status_code == 400
    assert client.get(f"/stats/settlement.csv?month={month}").status_code == 400


# --------------------------------------------------------------------------- overview


def _deliveries(session, day: date, statuses: list[tuple[int | None, DeliveryStatus]]) -> None:
    """One message per status, each in a chunk of its own (a resident once per chunk)."""
    member = make_member(session, "zhangwei")
    rnd = PlanRound(local_day=day)
    session.add(rnd)
    session.flush()
    for i, (rid, status) in enumerate(statuses):
        chunk = SendChunk(round_id=rnd.id, member_id=member.id, card_set="1", number=i, token=f"t{rnd.id}-{i}",
                          chat_type="single" if rid else "group")
        session.add(chunk)
        session.flush()
        session.add(Delivery(chunk_id=chunk.id, resident_id=rid, chat_id=None if rid else f"chat{rnd.id}-{i}",
                             local_day=day, status=status))
    session.flush()


def _small_world(today: date) -> dict:
    ids = make_regions()
    with transaction(db.session) as session:
        make_shop(session, session.get(Region, ids["徐家汇"]), name="已上线")  # two approved stores
        refused = Merchant(name="被驳回", credit_code="91310000MA99999991", contact_mobile="13800138000")
        empty = Merchant(name="空商户", credit_code="91310000MA99999992", contact_mobile="13800138000")
        session.add_all([refused, empty])
        session.flush()
        session.add(Store(merchant_id=refused.id, name="驳回店", address="x", circle_id=ids["田林"],
                          status=ReviewStatus.rejected))
        member = make_member(session, "lina")
        plain, capped, quiet, gone = (make_resident(session) for _ in range(4))
        for r in (plain, capped, quiet, gone):
            open_contact(session, r, member)
        make_resident(session)  # never a contact
        capped.monthly_cap = 1
        quiet.opted_out = True
        gone.erased_at = utcnow()
        _deliveries(session, today, [(plain.id, DeliveryStatus.sent), (plain.id, DeliveryStatus.planned),
                                     (capped.id, DeliveryStatus.over_quota), (quiet.id, DeliveryStatus.not_contact),
                                     (None, DeliveryStatus.sent)])
        _deliveries(session, today.replace(day=1) - timedelta(days=1), [(plain.id, DeliveryStatus.sent)])  # last month
        tally_count(session, today, pushes_planned=3, pushes_delivered=2, pushes_over_quota=1)
    make_merchant("pending-owner", ids["南京西路"], name="待审商户")  # one pending store
    return ids


def test_the_overview_counts_a_small_world(app):
    now = datetime(2025, 6, 11, 4, 30, tzinfo=timezone.utc)
    _small_world(date(2025, 6, 11))
    with transaction(db.session) as session, _statements() as seen:
        o = overview.overview(session, now)
    assert len(seen) == 6, seen
    assert (o.month_start, o.month_end) == (date(2025, 6, 1), date(2025, 6, 30))
    assert o.regions == {"city": 1, "district": 2, "circle": 3}
    assert o.merchants == {"approved": 1, "pending": 1, "rejected": 1, "no_store": 1}
    assert o.stores == {"pending": 1, "approved": 2, "rejected": 1}
    assert (o.residents.total, o.residents.reachable, o.residents.opted_out, o.residents.erased,
            o.residents.pushable) == (5, 4, 1, 1, 2)
    p = o.pushes
    assert p.by_status == {"sent": 1, "planned": 1, "over_quota": 1, "not_contact": 1}
    assert (p.planned, p.delivered, p.over_quota, p.used, p.group_messages) == (4, 1, 1, 3, 1)
    assert p.per_resident == 4  # CAMPAIGN_MONTHLY_CAP under WeCom's days/month
    assert p.capacity == 4 + 1  # plain: the platform's 4, capped: their own 1
    assert p.cards == {"pushes_planned": 3, "pushes_delivered": 2, "pushes_over_quota": 1}
    _roll_all()
    with transaction(db.session) as session:
        assert overview.overview(session, now).pushes.cards["pushes_planned"] == 3


@pytest.mark.parametrize(("rule", "cap", "limit"), [
    ("days/month", 4, 4), ("days/month", 100, 30), ("4/month", 10, 4), ("1/day", 100, 30),
    ("7/week", 100, 42),  # June 2025 touches six ISO weeks (May 26th … July 6th)
])
def test_the_monthly_limit_per_resident(app, rule, cap, limit):
    app.config["WECOM_PUSH_QUOTA_RULE"] = rule
    app.config["CAMPAIGN_MONTHLY_CAP"] = cap
    assert overview.per_resident_limit(date(2025, 6, 1), date(2025, 6, 30)) == limit


def test_the_overview_page(app):
    app.test_client_class = FreshContextClient
    today = local(utcnow()).date()
    _small_world(today)
    make_admin("root")
    client = app.test_client()
    assert login(client, "root").status_code == 302
    resp = client.get("/stats/overview")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    for key, value in (("circle", 3), ("approved", 1), ("no_store", 1), ("pushable", 2), ("used", 3),
                       ("capacity", 5), ("group_messages", 1)):
        assert re.search(rf'data-key="{key}" data-value="{value}"', html), key
    assert "数据总览" in html and "/stats/settlement?month=" in html
    with transaction(db.session) as session:
        assert session.scalar(select(func.count()).select_from(Resident)) == 5
