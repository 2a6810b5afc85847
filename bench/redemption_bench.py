"""How many redemptions per second does the desk confirm, and does single use hold in a race?

A lunch rush is several tills confirming at once; a screenshot of one coupon shown at two
tills is a race the database must settle. This drives the real service
(``coupons.services.redeem`` with an idempotency key, in its own app context and
transaction, as the desk view calls it; the redemption signal enqueues its RQ job on Redis)
from N threads:

0. baseline: one till alone, the service's own cost per confirm;
1. distinct coupons: each thread confirms its own coupons back to back;
2. contention: all threads are released together on the same coupon, coupon after coupon;
   exactly one confirm may win each (asserted), the others are told ``already_redeemed``;
3. retries: confirms of phase 1 sent again with their key come back as the first result.

A confirm the database refuses (SQLite: "database is locked" when a read transaction can't
become a writer) is retried with the same key, as a cashier pressing again would; those are
counted as conflicts too. Threads share one process and its GIL: the figure is one web
process's ceiling, not the database's.

    make bench            # or: .venv/bin/python bench/redemption_bench.py --threads 8 --per-thread 250
    BENCH_DATABASE_URL=postgresql+psycopg://… BENCH_REDIS_URL=redis://… make bench
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select, update  # noqa: E402
from sqlalchemy.exc import DBAPIError  # noqa: E402

from bench.common import bench_app  # noqa: E402
from coupons import services as svc  # noqa: E402
from coupons.models import Coupon, CouponKind, CouponStatus, CouponTemplate, Redemption, TemplateStatus  # noqa: E402
from accounts.models import Role, User  # noqa: E402
from core.db import db  # noqa: E402
from core.extensions import QUEUE_DEFAULT, get_queue  # noqa: E402
from core.localtime import local  # noqa: E402
from residents.models import Resident  # noqa: E402
from core.txn import transaction  # noqa: E402
from merchants.models import Merchant, Region, RegionLevel, ReviewStatus, Store  # noqa: E402

BILL_FEN = 12800  # 128 元, above the template's 100 元 threshold
STORES = 4
MAX_TRIES = 20  # same-key retries of a confirm the database refused (lock), then give up


@dataclass
class Till:
    """One thread: a cashier at a store."""

    store_id: int
    cashier_id: int


@dataclass
class Outcome:
    latency: float  # seconds, the whole confirm including retries
    result: object  # RedemptionResult, RedemptionError, or the last DBAPIError
    refusals: int = 0  # database refusals retried with the same key


@dataclass
class Phase:
    outcomes: list[Outcome] = field(default_factory=list)
    elapsed: float = 0.0

    def wins(self) -> list[svc.RedemptionResult]:
        return [o.result for o in self.outcomes if isinstance(o.result, svc.RedemptionResult) and not o.result.replayed]

    def replays(self) -> list[svc.RedemptionResult]:
        return [o.result for o in self.outcomes if isinstance(o.result, svc.RedemptionResult) and o.result.replayed]

    def refused(self) -> int:
        return sum(o.refusals for o in self.outcomes)

    def errors(self, code: str | None = None) -> list:
        out = [o.result for o in self.outcomes if not isinstance(o.result, svc.RedemptionResult)]
        if code is not None:
            out = [e for e in out if isinstance(e, svc.RedemptionError) and e.code == code]
        return out


def confirm(app, merchant_id: int, till: Till, code: str, key: str) -> Outcome:
    """One press of 确认核销, as the desk view does it: an app context, a transaction."""
    refusals = 0
    t0 = time.perf_counter()
    while True:
        with app.app_context():
            try:
                with transaction(db.session):
                    result = svc.redeem(db.session, code, till.store_id, till.cashier_id, BILL_FEN, key,
                                        merchant_id=merchant_id)
            except svc.RedemptionError as exc:
                result = exc
            except DBAPIError as exc:  # SQLite: database is locked; the cashier presses again
                refusals += 1
                if refusals < MAX_TRIES:
                    time.sleep(random.uniform(0, 0.002 * refusals))
                    continue
                result = exc
        return Outcome(time.perf_counter() - t0, result, refusals)


def run_threads(tills: list[Till], work) -> Phase:
    """``work(i, till) -> list[Outcome]`` in one thread per till, released together."""
    phase = Phase()
    start = threading.Barrier(len(tills) + 1)
    results: list[list[Outcome]] = [[] for _ in tills]
    failures: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = work(i, tills[i])
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(tills))]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    phase.elapsed = time.perf_counter() - t0
    if failures:
        raise failures[0]
    for r in results:
        phase.outcomes.extend(r)
    return phase


def pct(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))]


def report(label: str, phase: Phase, count: int, unit: str) -> None:
    lat = sorted(o.latency * 1000 for o in phase.outcomes)
    rate = count / phase.elapsed if phase.elapsed else 0.0
    print(f"  {label:<34} {rate:8.0f} {unit:<14} p50 {statistics.median(lat):6.2f} ms   "
          f"p95 {pct(lat, 0.95):6.2f} ms   p99 {pct(lat, 0.99):6.2f} ms   "
          f"({len(lat)} confirms in {phase.elapsed:.2f} s)")


def seed(app, threads: int, coupons_needed: int) -> tuple[int, list[Till], list[str]]:
    """A merchant with STORES stores, one cashier per thread, one active template valid all
    day every day, and ``coupons_needed`` issued coupons (every other one held by a known
    resident, so its redemption enqueues the taste-signal job). Coupons go in as bulk rows:
    issuing is not what is measured."""
    now = datetime.now(timezone.utc)
    today = local(now).date()
    with app.app_context(), db.session.begin():
        s = db.session
        city = Region(name="上海", level=RegionLevel.city)
        s.add(city)
        s.flush()
        merchant = Merchant(name="蜀味小馆", credit_code="91310000MABENCH001", contact_mobile="13800138000")
        s.add(merchant)
        s.flush()
        stores = [Store(merchant_id=merchant.id, name=f"蜀味小馆·{i + 1}号店", address=f"幸福路 {i + 1} 号",
                        circle_id=city.id, cuisines=["sichuan"], status=ReviewStatus.approved)
                  for i in range(STORES)]
        s.add_all(stores)
        s.flush()
        cashiers = [User(username=f"bench-cashier-{i}", password_hash="!", role=Role.cashier,
                         merchant_id=merchant.id, store_id=stores[i % STORES].id) for i in range(threads)]
        s.add_all(cashiers)
        s.flush()
        template = svc.create_template(s, merchant.id, svc.TemplateSpec(
            name="满100减20", kind=CouponKind.amount_off, value=2000, min_spend_fen=10000,
            valid_from=today - timedelta(days=7), valid_until=today + timedelta(days=30),
            status=TemplateStatus.active,
        ))
        merchant_id, template_id = merchant.id, template.id
        tills = [Till(c.store_id, c.id) for c in cashiers]

    codes = list({svc.new_short_code() for _ in range(coupons_needed * 2)})[:coupons_needed]
    if len(codes) < coupons_needed:
        raise SystemExit("short code collision; run again")
    issued = now - timedelta(days=1)
    with db.engine.begin() as conn:
        residents = conn.execute(
            insert(Resident).returning(Resident.id),
            [{"external_userid": f"wm_bench_{i:07d}", "name": f"居民{i}"} for i in range(coupons_needed // 2 + 1)],
        ).scalars().all()
        rows = [
            {"template_id": template_id, "holder_ref": f"wm_bench_{i:07d}", "holder_seq": 1, "short_code": code,
             "resident_id": residents[i // 2] if i % 2 == 0 else None, "issued_at": issued,
             "valid_from": issued, "valid_until": now + timedelta(days=30), "status": CouponStatus.issued}
            for i, code in enumerate(codes)
        ]
        for chunk in range(0, len(rows), 1000):
            conn.execute(insert(Coupon), rows[chunk:chunk + 1000])
        conn.execute(update(CouponTemplate).where(CouponTemplate.id == template_id).values(issued_count=len(rows)))
    return merchant_id, tills, codes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8, help="concurrent tills (default 8)")
    parser.add_argument("--per-thread", type=int, default=250, help="distinct coupons each thread confirms (default 250)")
    parser.add_argument("--contended", type=int, default=200, help="coupons every thread races for (default 200)")
    parser.add_argument("--baseline", type=int, default=200, help="coupons one till confirms alone first (default 200)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"),
                        help="default: $BENCH_DATABASE_URL, else a fresh SQLite file in a temp dir "
                             "(its tables are dropped and recreated!)")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL"),
                        help="default: $BENCH_REDIS_URL, else an embedded redis-server in a temp dir")
    args = parser.parse_args()
    n, distinct = args.threads, args.threads * args.per_thread

    with bench_app(args.database_url, args.redis_url) as app:
        with app.app_context():
            get_queue(QUEUE_DEFAULT).empty()
        merchant_id, tills, codes = seed(app, n, args.baseline + distinct + args.contended)
        alone, own, shared = (codes[:args.baseline], codes[args.baseline:args.baseline + distinct],
                              codes[args.baseline + distinct:])
        backend = db.engine.dialect.name
        print(f"redemption at the desk, {n} threads in one process, {backend} + Redis "
              f"({distinct} distinct coupons, {args.contended} contended)")

        # 0. one till alone: the service's own cost, no queueing for the GIL or a lock
        keys: dict[str, str] = {code: uuid.uuid4().hex for code in alone + own}
        if alone:
            p0 = run_threads(tills[:1], lambda i, till: [confirm(app, merchant_id, till, c, keys[c]) for c in alone])
            report("one till alone (baseline)", p0, len(p0.wins()), "redemptions/s")

        # 1. each till its own coupons, back to back

        def distinct_work(i: int, till: Till) -> list[Outcome]:
            return [confirm(app, merchant_id, till, code, keys[code]) for code in own[i::n]]

        p1 = run_threads(tills, distinct_work)
        report("distinct coupons", p1, len(p1.wins()), "redemptions/s")
        bad = [o.result for o in p1.outcomes if not isinstance(o.result, svc.RedemptionResult) or o.result.replayed]
        print(f"    conflicts: {p1.refused()} database refusals retried with the same key")
        if bad or len(p1.wins()) != distinct:
            print(f"  FAILED: {len(bad)} confirms of distinct coupons did not redeem: {bad[:3]!r}", file=sys.stderr)
            return 1

        # 2. every till on the same coupon at once, coupon after coupon
        barrier = threading.Barrier(n)

        def contended_work(i: int, till: Till) -> list[Outcome]:
            out = []
            for code in shared:
                barrier.wait()
                out.append(confirm(app, merchant_id, till, code, uuid.uuid4().hex))
            return out

        p2 = run_threads(tills, contended_work)
        wins = p2.wins()
        per_coupon = {code: 0 for code in shared}
        for w in wins:
            per_coupon[w.short_code] += 1
        exactly_one = sum(1 for c in per_coupon.values() if c == 1)
        told = len(p2.errors("already_redeemed"))
        report("contention (all threads, 1 coupon)", p2, len(wins), "coupons/s")
        print(f"    conflicts: {told} confirms told already_redeemed, {p2.refused()} database refusals retried")
        print(f"    exactly one winner per contested coupon: {exactly_one}/{len(shared)}"
              f"{'' if exactly_one == len(shared) else '  <-- FAILED'}")
        others = [e for e in p2.errors() if not (isinstance(e, svc.RedemptionError) and e.code == "already_redeemed")]
        if exactly_one != len(shared) or told != len(shared) * (n - 1) or others:
            print(f"  FAILED: single use broke under contention (winners {len(wins)}, already_redeemed {told}, "
                  f"other {others[:3]!r})", file=sys.stderr)
            return 1

        # 3. the same confirms again (a double tap, a retried POST): the first result comes back
        first = {w.short_code: w.redemption_id for w in p1.wins()}

        p3 = run_threads(tills, distinct_work)
        replays = p3.replays()
        report("retries with the same key", p3, len(replays), "replays/s")
        if len(replays) != distinct or any(r.redemption_id != first[r.short_code] for r in replays):
            print("  FAILED: a retried key did not return its first redemption", file=sys.stderr)
            return 1

        with app.app_context():
            stored = db.session.scalar(select(func.count()).select_from(Redemption))
            doubled = db.session.scalar(select(func.count()).select_from(
                select(Redemption.coupon_id).group_by(Redemption.coupon_id)
                .having(func.count() > 1).subquery()))
            with_resident = db.session.scalar(
                select(func.count()).select_from(Coupon)
                .where(Coupon.status == CouponStatus.redeemed, Coupon.resident_id.is_not(None)))
            queue = get_queue(QUEUE_DEFAULT)
            queued = queue.count
            queue.empty()
            db.session.remove()
        print(f"  redemptions stored: {stored} (coupons with two: {doubled}), "
              f"jobs queued on '{QUEUE_DEFAULT}': {queued} (redeemed coupons of known residents: {with_resident})")
        if stored != len(alone) + distinct + len(shared) or doubled or queued != with_resident:
            print("  MISMATCH: one redemption per coupon, one job per known resident's redemption", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
