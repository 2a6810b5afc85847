"""Rollups: every tally counted once, pages current before the job runs, a rebuild from the raw
tables equal to what the tallies built, a killed roll-up changing no total."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from core.db import db
from core.extensions import QUEUE_DEFAULT, enqueue
from core.tally import METRICS, Tally
from core.txn import transaction
from coupons import services as coupons
from coupons.models import CouponSource
from residents import services as residents
from stats import jobs as stats_jobs
from stats.models import DailyStat, StoreDayStat, StoreMonthStat
from stats.services import report, rollup
from tests.support.coupons import NOW, make_shop, make_template
from tests.support.residents import make_circle, make_member, make_resident

DAY = date(2025, 6, 11)
LINLI = str(Path(sys.executable).parent / "linli")


def _activity(days: int = 3):
    """A store's few days: contacts added (one lost), welcome coupons, redemptions (one
    reversed), a store-page claim. Returns the shop."""
    with transaction(db.session) as session:
        shop = make_shop(session, make_circle(session))
    template = make_template(shop, valid_from=date(2025, 6, 1), valid_until=date(2025, 6, 30), total_stock=None,
                             per_diner_limit=5)
    with transaction(db.session) as session:
        member = make_member(session, "lilei")
        for d in range(days):
            at = NOW - timedelta(days=d)
            for i in range(3):
                resident = make_resident(session)
                rel, opened = residents.open_relationship(session, resident.id, member.id, shop.store.id, None, at)
                assert opened
                coupon = coupons.issue_coupon(session, template.id, f"r:{resident.id}", resident_id=resident.id,
                                              now=at, source=CouponSource.welcome, store_id=shop.store.id)
                if i < 2:
                    coupons.redeem(session, coupon.short_code, shop.store.id, shop.cashier.id, 12000 + i,
                                   f"key-{d}-{i}", at + timedelta(minutes=5))
                if d == 0 and i == 0:
                    red = session.scalar(text("SELECT id FROM redemptions ORDER BY id DESC LIMIT 1"))
                    coupons.reverse(session, red, shop.owner, at + timedelta(minutes=7))
                if d == 1 and i == 2:
                    residents.close_relationships(session, external_userid=resident.external_userid,
                                                  member_userid=member.userid,
                                                  reason=residents.REASON_DINER_DELETED, at=at + timedelta(hours=1))
        coupons.issue_coupon(session, template.id, "r:walk-in", now=NOW, source=CouponSource.store,
                             store_id=shop.store.id)
    return shop


def _rollups(session, with_merchant: bool = False) -> dict:
    rows = session.execute(select(DailyStat)).scalars().all()
    return {(r.local_day, r.store_id, r.template_id, r.campaign_id, r.channel_id,
             *((r.merchant_id,) if with_merchant else ())): tuple(getattr(r, m) for m in METRICS) for r in rows}


def _by_store(session, model) -> dict:
    return {(r.local_day, r.store_id, r.campaign_id, r.merchant_id): tuple(getattr(r, m) for m in METRICS)
            for r in session.execute(select(model)).scalars()}


def _expected_by_store(fine: dict, monthly: bool) -> dict:
    """The store rollups as sums of the fine rows (campaign kept on store-less rows only)."""
    out: dict = {}
    for (day, store, _template, campaign, _channel, merchant), values in fine.items():
        key = (day.replace(day=1) if monthly else day, store, campaign if store == 0 else 0, merchant)
        out[key] = tuple(a + b for a, b in zip(out.get(key, (0,) * len(METRICS)), values))
    return out


def _assert_store_rollups(session) -> None:
    fine = _rollups(session, with_merchant=True)
    assert _by_store(session, StoreDayStat) == _expected_by_store(fine, monthly=False)
    assert _by_store(session, StoreMonthStat) == _expected_by_store(fine, monthly=True)


def _totals(session) -> dict:
    return dict(zip(METRICS, session.execute(select(*[func.coalesce(func.sum(getattr(DailyStat, m)), 0)
                                                       for m in METRICS])).one()))


def test_tallies_roll_up_once_and_match_the_raw_tables(app):
    shop = _activity()
    with transaction(db.session) as session:
        waiting = session.scalar(select(func.count()).select_from(Tally))
        assert waiting > 0
        assert rollup.roll_up(session, batch=7) == 7  # one batch at a time
    with transaction(db.session) as session:
        while rollup.roll_up(session, batch=7):
            pass
    with transaction(db.session) as session:
        assert session.scalar(select(func.count()).select_from(Tally)) == 0
        totals = _totals(session)
        incremental = _rollups(session)
        _assert_store_rollups(session)
        # independent counts over the raw tables
        raw = session.execute(text(
            "SELECT (SELECT count(*) FROM coupons),"
            " (SELECT count(*) FROM redemptions), (SELECT count(*) FROM redemption_reversals),"
            " (SELECT coalesce(sum(discount_fen), 0) FROM redemptions WHERE NOT reversed),"
            " (SELECT coalesce(sum(bill_fen), 0) FROM redemptions WHERE NOT reversed),"
            " (SELECT count(*) FROM contact_relationships),"
            " (SELECT count(*) FROM contact_relationships WHERE status = 'closed')"
        )).one()
    assert (totals["issued"], totals["redeemed"], totals["reversed"]) == (10, 6, 1)
    assert (totals["issued"], totals["redeemed"], totals["reversed"]) == tuple(raw[:3])
    assert (totals["discount_fen"], totals["bill_fen"]) == (raw[3], raw[4])
    assert (totals["new_contacts"], totals["lost_contacts"]) == (raw[5], raw[6]) == (9, 1)
    assert totals["claimed"] == 1  # the store-page claim; welcome coupons are not claims
    with transaction(db.session) as session:
        store_rows = session.scalars(select(DailyStat).where(DailyStat.store_id == shop.store.id)).all()
        assert {r.merchant_id for r in store_rows} == {shop.merchant.id}
        assert {r.circle_id for r in store_rows} == {shop.store.circle_id}
        assert {r.local_day for r in store_rows} == {DAY, DAY - timedelta(days=1), DAY - timedelta(days=2)}

    rollup.rebuild_in(db.session.session_factory)
    with transaction(db.session) as session:
        assert _rollups(session) == incremental
        _assert_store_rollups(session)
    rollup.rebuild_in(db.session.session_factory, DAY - timedelta(days=1))
    with transaction(db.session) as session:
        assert _rollups(session) == incremental
        _assert_store_rollups(session)


def test_a_rebuild_keeps_tallies_of_days_before_it(app):
    _activity(days=2)
    # nothing rolled up yet: rebuilding from today recounts today and leaves yesterday's tallies
    rollup.rebuild_in(db.session.session_factory, DAY)
    with transaction(db.session) as session:
        days = set(session.scalars(select(Tally.local_day)))
        assert days == {DAY - timedelta(days=1)}
        while rollup.roll_up(session):
            pass
    with transaction(db.session) as session:
        before = _rollups(session)
    rollup.rebuild_in(db.session.session_factory)
    with transaction(db.session) as session:
        assert _rollups(session) == before


@pytest.mark.slow
def test_a_killed_roll_up_changes_no_total(app, tmp_path):
    """A real ``linli worker`` SIGKILLed inside the roll-up job, after adding a batch and
    before its commit; the clock's next job counts everything once."""
    _activity()
    with transaction(db.session) as session:
        rollup.lock_cursor(session)  # a cursor exists: no first-run rebuild
        waiting = session.scalar(select(func.count()).select_from(Tally))
    env = {**os.environ, "DATABASE_URL": app.config["DATABASE_URL"], "REDIS_URL": app.config["REDIS_URL"],
           "INSTANCE_PATH": str(tmp_path / "w"), "SECRET_KEY": "test-secret",
           "WECOM_API_BASE": "http://127.0.0.1:9/cgi-bin/", "LINLI_FAILPOINTS": "stats.rolled_batch"}

    def work() -> int:
        enqueue(QUEUE_DEFAULT, stats_jobs.roll_up)
        proc = subprocess.run([LINLI, "worker", "--burst"], env=env, capture_output=True, text=True, timeout=120)
        return proc.returncode

    assert work() == -9
    db.session.remove()
    with transaction(db.session) as session:
        assert session.scalar(select(func.count()).select_from(Tally)) == waiting  # nothing moved
        assert session.scalar(select(func.count()).select_from(DailyStat)) == 0
    env.pop("LINLI_FAILPOINTS")
    assert work() == 0
    db.session.remove()
    with transaction(db.session) as session:
        assert session.scalar(select(func.count()).select_from(Tally)) == 0
        assert _totals(session)["issued"] == 10
        assert _totals(session)["redeemed"] == 6
        incremental = _rollups(session)
    rollup.rebuild_in(db.session.session_factory)
    with transaction(db.session) as session:
        assert _rollups(session) == incremental


def test_storeless_rows_of_two_merchants_stay_apart(app):
    """Coupons handed out with no store and no campaign are their template's merchant's: in
    the store rollups too, where they share day, store 0 and campaign 0 — the merchant is part
    of the key, so one merchant's never land on another's dashboard."""
    with transaction(db.session) as session:
        circle = make_circle(session)
        a, b = make_shop(session, circle, "东家小馆"), make_shop(session, circle, "西家小馆")
    ta = make_template(a, total_stock=None, per_diner_limit=5)
    tb = make_template(b, total_stock=None, per_diner_limit=5)
    with transaction(db.session) as session:
        for i in range(3):
            coupons.issue_coupon(session, ta.id, f"r:a{i}", now=NOW, source=CouponSource.other)
    with transaction(db.session) as session:
        rollup.roll_up(session)  # the second merchant's arrive in a later batch
        for i in range(2):
            coupons.issue_coupon(session, tb.id, f"r:b{i}", now=NOW, source=CouponSource.other)
    with transaction(db.session) as session:
        rollup.roll_up(session)
    q = report.Query(start=DAY, end=DAY)
    with transaction(db.session) as session:
        issued = {shop.merchant.id: report.totals(session, report.Scope(merchant_id=shop.merchant.id), q)["issued"]
                  for shop in (a, b)}
        assert issued == {a.merchant.id: 3, b.merchant.id: 2}
        _assert_store_rollups(session)
    rollup.rebuild_in(db.session.session_factory)
    with transaction(db.session) as session:
        assert report.totals(session, report.Scope(merchant_id=a.merchant.id), q)["issued"] == 3
