"""Racing confirms and claims, each thread with its own Session and connection: the database,
not a check in Python, decides. Runs on PostgreSQL when TEST_DATABASE_URL is set."""
from __future__ import annotations

import threading

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from coupons import services as svc
from coupons.models import Coupon, CouponStatus, CouponTemplate, Redemption
from core.db import db
from tests.coupons.factories import NOW, make_template, tx

THREADS = 8


def race(app, backend, work):
    """Run ``work(session, i)`` in THREADS threads released together; one transaction each."""
    barrier = threading.Barrier(THREADS)
    outcomes: list = [None] * THREADS

    def run(i: int) -> None:
        with app.app_context():
            session = db._factory()
            try:
                barrier.wait()
                with session.begin():
                    outcomes[i] = work(session, i)
            except Exception as exc:  # noqa: BLE001 - the outcome is what we test
                outcomes[i] = exc
            finally:
                session.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for o in outcomes:
        # PostgreSQL must answer every loser cleanly; SQLite may refuse a writer as "locked"
        allowed = (svc.RedemptionError, svc.IssueError) + ((OperationalError,) if backend == "sqlite" else ())
        assert not isinstance(o, Exception) or isinstance(o, allowed), repr(o)
    return outcomes


def test_concurrent_redemption_exactly_one_wins(app, backend, shop):
    t = make_template(shop)
    with tx() as s:
        coupon = svc.issue_coupon(s, t.id, "wm_diner", now=NOW)
    code, store_id, cashier_id = coupon.short_code, shop.store.id, shop.cashier.id

    outcomes = race(app, backend, lambda s, i: svc.redeem(s, code, store_id, cashier_id, 12000, f"key-{i}", NOW))

    wins = [o for o in outcomes if isinstance(o, svc.RedemptionResult)]
    assert len(wins) == 1
    losses = [o for o in outcomes if isinstance(o, svc.RedemptionError)]
    assert all(e.code == "already_redeemed" for e in losses)
    if backend == "postgresql":
        assert len(losses) == THREADS - 1
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Redemption.id))) == 1
    assert db.session.get(Coupon, coupon.id).status == CouponStatus.redeemed


def test_concurrent_double_tap_same_key_redeems_once(app, backend, shop):
    t = make_template(shop)
    with tx() as s:
        coupon = svc.issue_coupon(s, t.id, "wm_diner", now=NOW)
    code, store_id, cashier_id = coupon.short_code, shop.store.id, shop.cashier.id

    outcomes = race(app, backend, lambda s, i: svc.redeem(s, code, store_id, cashier_id, 12000, "same", NOW))

    results = [o for o in outcomes if isinstance(o, svc.RedemptionResult)]
    assert len({r.redemption_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    if backend == "postgresql":
        assert len(results) == THREADS
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Redemption.id))) == 1


def test_concurrent_claims_respect_stock(app, backend, shop):
    t = make_template(shop, total_stock=3, per_diner_limit=1)
    tid = t.id

    outcomes = race(app, backend, lambda s, i: svc.issue_coupon(s, tid, f"diner-{i}", now=NOW).id)

    sold_out = [o for o in outcomes if isinstance(o, svc.IssueError)]
    assert all(e.code == "sold_out" for e in sold_out)
    db.session.expire_all()
    issued = db.session.scalar(select(func.count(Coupon.id)))
    assert issued <= 3 and db.session.get(CouponTemplate, tid).issued_count == issued
    if backend == "postgresql":
        assert issued == 3


def test_concurrent_claims_one_diner(app, backend, shop):
    t = make_template(shop, total_stock=None, per_diner_limit=2)
    tid = t.id

    race(app, backend, lambda s, i: svc.issue_coupon(s, tid, "greedy", now=NOW).id)

    db.session.expire_all()
    issued = db.session.scalar(select(func.count(Coupon.id)))
    assert issued <= 2 and db.session.get(CouponTemplate, tid).issued_count == issued
    if backend == "postgresql":
        assert issued == 2
