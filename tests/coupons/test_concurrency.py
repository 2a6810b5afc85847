"""Racing confirms and claims, each thread with its own Session and connection: the database,
not a check in Python, decides. Runs on PostgreSQL when TEST_DATABASE_URL is set.

Every loser must be *told* why (already redeemed, sold out, limit): a lock error is a failure
on both backends. SQLite serialises writers (WAL, busy_timeout) and the services read before
their first write outside it, so a waiting writer sees the winner's commit instead of a
stale snapshot."""
from __future__ import annotations

import threading

from sqlalchemy import func, select

from core.db import db
from core.txn import transaction
from coupons import services as svc
from coupons.models import Coupon, CouponStatus, CouponTemplate, Redemption
from tests.support.coupons import NOW, make_template, tx

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
                with transaction(session):
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
        # every loser answered by a rule (never "database is locked", never a timeout)
        assert o is not None, "a thread did not finish"
        assert not isinstance(o, Exception) or isinstance(o, (svc.RedemptionError, svc.IssueError)), repr(o)
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
    assert len(losses) == THREADS - 1  # every loser was told "already redeemed"
    assert all(e.detail["store_name"] == shop.store.name for e in losses)
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
    assert len(results) == THREADS  # every tap got the one redemption back
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
    assert issued == 3
    assert len(sold_out) == THREADS - 3


def test_concurrent_claims_one_diner(app, backend, shop):
    t = make_template(shop, total_stock=None, per_diner_limit=2)
    tid = t.id

    outcomes = race(app, backend, lambda s, i: svc.issue_coupon(s, tid, "greedy", now=NOW).id)

    assert all(e.code == "limit" for e in outcomes if isinstance(e, svc.IssueError))
    db.session.expire_all()
    issued = db.session.scalar(select(func.count(Coupon.id)))
    assert issued <= 2 and db.session.get(CouponTemplate, tid).issued_count == issued
    assert issued == 2
