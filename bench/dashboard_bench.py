"""How long do the coupon pages' raw counts take once a marketplace has a long history?

The templates list and a template's page run ``coupons.services.template_stats`` (all-time
counts per template) on every view; the desk runs ``recent_redemptions``. (The dashboards read
the statistics' rollups instead: ``bench/stats.py``.) This seeds a
history in bulk (Core INSERTs over 50,000-row batches, in time order as the live system
appends rows): merchants with 20 stores and 50 templates between them, one chain holding half
of each, 200,000 coupons issued over 180 days, about 60 % redeemed (1 % of those reversed),
``--rows`` to scale to millions. It then times the service functions as the
views call them, for the chain and its busiest store, with each SQL statement timed on its
own, and shows the query plan of the heaviest statement (PostgreSQL: EXPLAIN ANALYZE,
BUFFERS; SQLite: EXPLAIN QUERY PLAN) and which indexes the plans use.

``--try-index "CREATE INDEX name ON table (cols)"`` (repeatable) times everything again with
the index in place, then drops it: before/after figures for a schema change proposal.

    make bench            # or: .venv/bin/python bench/dashboard_bench.py --rows 2000000
    BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/linli_bench make bench
"""
from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import event, func, insert, inspect, select, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from accounts.models import Role, User  # noqa: E402
from core.db import db  # noqa: E402
from coupons import services as svc  # noqa: E402
from coupons.models import (  # noqa: E402
    Coupon,
    CouponKind,
    CouponStatus,
    CouponTemplate,
    FundedBy,
    Redemption,
    RedemptionReversal,
    TemplateStatus,
)
from marketplace.all_models import metadata  # noqa: E402
from merchants.models import Merchant, Region, RegionLevel, ReviewStatus, Store  # noqa: E402

VALID_DAYS = 30
REDEEMED_SHARE = 0.6
REVERSED_SHARE = 0.01
BATCH = 50_000  # coupons generated and inserted per transaction


# ------------------------------------------------------------------ seeding


def bulk_insert(conn, table, rows: list[dict]) -> None:
    """One Core INSERT executed over a whole batch of rows (the driver's executemany: SQLite's
    native one, psycopg's pipelined one). Measured here, that beats multi-row VALUES
    (``insert().values(rows)`` or SQLAlchemy's insertmanyvalues) by 2-5x: SQLAlchemy and
    psycopg spend more parsing a 1,000-row statement than the server saves."""
    if rows:
        conn.execute(insert(table), rows)


def short_code(i: int) -> str:
    """A distinct, random-looking 10-symbol code per ``i`` (an odd multiplier mod 2^50 is a bijection)."""
    n = (i * 0x2F0B3A49C3E1D + 0x15F2A3) % (1 << 50)
    return "".join(svc.CODE_ALPHABET[(n >> (5 * k)) & 31] for k in range(svc.CODE_LENGTH))


@dataclass
class Shape:
    merchants: list[int] = field(default_factory=list)
    stores: dict[int, list[int]] = field(default_factory=dict)  # merchant -> store ids (first = busiest)
    cashier: dict[int, int] = field(default_factory=dict)  # store -> cashier user id
    templates: list[tuple[int, int, CouponKind, int, int | None]] = field(default_factory=list)
    # (template id, merchant id, kind, value, cap)


def split(total: int, parts: int) -> list[int]:
    """Half to the first part (the chain), the rest spread evenly."""
    if parts == 1:
        return [total]
    first = max(1, total // 2)
    rest = total - first
    return [first] + [rest // (parts - 1) + (1 if k < rest % (parts - 1) else 0) for k in range(parts - 1)]


def seed_catalogue(conn, n_merchants: int, n_stores: int, n_templates: int, now: datetime) -> Shape:
    shape = Shape()
    region = conn.execute(insert(Region).returning(Region.id), {"name": "上海", "level": RegionLevel.city}).scalar_one()
    store_split, template_split = split(n_stores, n_merchants), split(n_templates, n_merchants)
    kinds = [(CouponKind.amount_off, 2000, None, 10000), (CouponKind.percent_off, 85, 3000, 0),
             (CouponKind.voucher, 1000, None, 0), (CouponKind.amount_off, 5000, None, 20000)]
    for m in range(n_merchants):
        mid = conn.execute(insert(Merchant).returning(Merchant.id), {
            "name": f"商户{m + 1}", "credit_code": f"91310000MB{m:08d}", "contact_mobile": "13800138000",
            "created_at": now - timedelta(days=400)}).scalar_one()
        shape.merchants.append(mid)
        sids = conn.execute(insert(Store).returning(Store.id), [
            {"merchant_id": mid, "name": f"商户{m + 1}·{k + 1}号店", "address": f"幸福路 {k + 1} 号",
             "circle_id": region, "cuisines": ["sichuan"], "avg_spend_fen": 8000, "opening_hours": {},
             "status": ReviewStatus.approved, "welcome_text": "", "created_at": now - timedelta(days=400)}
            for k in range(store_split[m])]).scalars().all()
        shape.stores[mid] = list(sids)
        for sid in sids:
            shape.cashier[sid] = conn.execute(insert(User).returning(User.id), {
                "username": f"bench-cashier-{sid}", "password_hash": "!", "display_name": "", "role": Role.cashier,
                "merchant_id": mid, "store_id": sid, "active": True, "created_at": now}).scalar_one()
        for k in range(template_split[m]):
            kind, value, cap, min_spend = kinds[k % len(kinds)]
            tid = conn.execute(insert(CouponTemplate).returning(CouponTemplate.id), {
                "merchant_id": mid, "name": f"券{m + 1}-{k + 1}", "kind": kind, "value": value, "cap_fen": cap,
                "min_spend_fen": min_spend, "valid_days": VALID_DAYS, "weekdays_mask": 127, "issued_count": 0,
                "per_diner_limit": 1, "funded_by": FundedBy.merchant,
                "status": TemplateStatus.active if k % 5 else TemplateStatus.ended, "description": "",
                "created_at": now - timedelta(days=200), "updated_at": now - timedelta(days=200)}).scalar_one()
            shape.templates.append((tid, mid, kind, value, cap))
    return shape


def discount(kind: CouponKind, value: int, cap: int | None, bill: int) -> int:
    if kind == CouponKind.percent_off:
        return min(bill * (100 - value) // 100, cap or bill)
    return min(value, bill)


def seed_history(engine, shape: Shape, rows: int, days: int, now: datetime, rng: random.Random) -> tuple[int, int]:
    """``rows`` coupons issued evenly over ``days``; returns (redemptions, reversed).

    Rows go in in the order the live system appends them (coupons by issue time, redemptions
    by redemption time), so the tables' physical order follows time as it would in
    production: that decides whether a range scan on a timestamp index pays."""
    first = now - timedelta(days=days)
    step = timedelta(days=days) / rows
    validity = timedelta(days=VALID_DAYS)
    red_id = rev_count = 0
    pending: list[tuple[datetime, int, dict]] = []  # redemptions not yet due, a heap by time
    issued_per_template: dict[int, int] = {}
    for start in range(0, rows, BATCH):
        coupons = []
        for cid in range(start + 1, min(rows, start + BATCH) + 1):
            tid, mid, kind, value, cap = shape.templates[rng.randrange(len(shape.templates))]
            issued_per_template[tid] = issued_per_template.get(tid, 0) + 1
            issued = first + step * cid
            until = issued + validity
            row = {"id": cid, "template_id": tid, "resident_id": None, "holder_ref": f"wm{cid:010d}",
                   "holder_seq": 1, "short_code": short_code(cid), "issued_at": issued, "valid_from": issued,
                   "valid_until": until, "status": CouponStatus.expired if until <= now else CouponStatus.issued,
                   "redeemed_at": None, "redeemed_store_id": None, "bill_fen": None, "discount_fen": None}
            if rng.random() < REDEEMED_SHARE:
                stores = shape.stores[mid]
                sid = stores[0] if rng.random() < 0.3 else stores[rng.randrange(len(stores))]
                at = issued + (min(until, now) - issued) * rng.random()
                bill = rng.randrange(8000, 40000, 100)
                off = discount(kind, value, cap, bill)
                red = {"coupon_id": cid, "store_id": sid, "cashier_id": shape.cashier[sid], "bill_fen": bill,
                       "discount_fen": off, "redeemed_at": at, "reversed": rng.random() < REVERSED_SHARE}
                heapq.heappush(pending, (at, cid, red))
                if not red["reversed"]:
                    row.update(status=CouponStatus.redeemed, redeemed_at=at, redeemed_store_id=sid,
                               bill_fen=bill, discount_fen=off)
            coupons.append(row)
        # redemptions up to the last coupon issued so far: every later one comes after it
        frontier = coupons[-1]["issued_at"] if start + BATCH < rows else now
        redemptions, reversals = [], []
        while pending and pending[0][0] <= frontier:
            _, _, red = heapq.heappop(pending)
            red_id += 1
            red.update(id=red_id, idempotency_key=f"bench{red_id:012x}")
            redemptions.append(red)
            if red["reversed"]:
                rev_count += 1
                reversals.append({"id": rev_count, "redemption_id": red_id, "user_id": red["cashier_id"],
                                  "reason": "bench", "reversed_at": red["redeemed_at"] + timedelta(minutes=3)})
        with engine.begin() as conn:
            bulk_insert(conn, Coupon.__table__, coupons)
            bulk_insert(conn, Redemption.__table__, redemptions)
            bulk_insert(conn, RedemptionReversal.__table__, reversals)
    with engine.begin() as conn:
        for tid, n in issued_per_template.items():
            conn.execute(CouponTemplate.__table__.update().where(CouponTemplate.id == tid).values(issued_count=n))
        if engine.dialect.name == "postgresql":  # explicit ids: move the sequences past them
            for table in ("coupons", "redemptions", "redemption_reversals"):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT max(id) FROM {table}), 1))")
    return red_id, rev_count


def analyze(engine) -> None:
    """Fresh planner statistics, as autovacuum / a maintained SQLite would have."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


# ------------------------------------------------------------------ timing


@dataclass
class Statement:
    sql: str
    params: object
    times: list[float] = field(default_factory=list)  # ms


@dataclass
class Query:
    label: str
    call: object  # (Session) -> anything
    times: list[float] = field(default_factory=list)  # ms, the whole service call
    statements: list[Statement] = field(default_factory=list)


class StatementClock:
    """Times every SQL statement the engine runs (cursor execute to execute), in order."""

    def __init__(self, engine) -> None:
        self.log: list[tuple[str, object, float]] = []
        self._t0 = 0.0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany):  # noqa: ARG002
        self._t0 = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany):  # noqa: ARG002
        self.log.append((statement, parameters, (time.perf_counter() - self._t0) * 1000))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def time_queries(engine, clock: StatementClock, queries: list[Query], runs: int) -> None:
    for q in queries:
        q.times.clear()
        q.statements.clear()
        for run in range(runs + 1):  # the first run warms caches and is not counted
            clock.log.clear()
            with Session(engine) as session:
                t0 = time.perf_counter()
                q.call(session)
                elapsed = (time.perf_counter() - t0) * 1000
            if run == 0:
                q.statements = [Statement(sql, params) for sql, params, _ in clock.log]
                continue
            q.times.append(elapsed)
            for st, (_, _, ms) in zip(q.statements, clock.log):
                st.times.append(ms)


def print_times(queries: list[Query], before: dict[str, float] | None = None) -> dict[str, float]:
    """One line per service call, one per SQL statement under it; returns statement medians."""
    medians = {}
    for q in queries:
        print(f"  {q.label:<44} median {statistics.median(q.times):8.2f} ms   p95 {pct(q.times, 0.95):8.2f} ms")
        for k, st in enumerate(q.statements):
            key = f"{q.label} #{k + 1}"
            medians[key] = med = statistics.median(st.times)
            was = f"   (before {before[key]:8.2f} ms, x{before[key] / med:.1f})" if before and key in before else ""
            print(f"    SQL #{k + 1} {first_words(st.sql):<36} median {med:8.2f} ms   p95 {pct(st.times, 0.95):8.2f} ms{was}")
    return medians


def first_words(sql: str) -> str:
    """What a statement is about: the tables it reads and whether it groups."""
    flat = " ".join(sql.split())
    tables = re.findall(r"\bFROM (\w+)", flat)
    joins = re.findall(r"\bJOIN (\w+)", flat)
    return (f"{'/'.join(dict.fromkeys(tables + joins))}" + (" GROUP BY" if "GROUP BY" in flat else ""))[:36]


# ------------------------------------------------------------------ plans


def pg_plan(engine, st: Statement) -> dict:
    with engine.connect() as conn:
        raw = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + st.sql, st.params).scalar_one()
    return (json.loads(raw) if isinstance(raw, str) else raw)[0]


def pg_nodes(node: dict, depth: int = 0):
    yield depth, node
    for child in node.get("Plans", []):
        yield from pg_nodes(child, depth + 1)


def pg_summary(plan: dict) -> tuple[list[str], set[str], set[str]]:
    """Indented node lines (type, relation/index, rows, time, buffers); indexes used; seq-scanned tables."""
    lines, indexes, seq = [], set(), set()
    for depth, n in pg_nodes(plan["Plan"]):
        what = n["Node Type"]
        if n.get("Index Name"):
            indexes.add(n["Index Name"])
            what += f" using {n['Index Name']}"
        if n.get("Relation Name"):
            what += f" on {n['Relation Name']}"
            if n["Node Type"] == "Seq Scan":
                scanned = (n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0)) * n.get("Actual Loops", 1)
                seq.add(f"{n['Relation Name']} ({scanned:,} rows)")
        hit, read = n.get("Shared Hit Blocks", 0), n.get("Shared Read Blocks", 0)
        loops = n.get("Actual Loops", 1)
        lines.append(f"{'  ' * depth}{what}  rows={n.get('Actual Rows', 0)}{f' x{loops} loops' if loops > 1 else ''}"
                     f"  {n.get('Actual Total Time', 0):.1f} ms  buffers hit={hit} read={read}")
    lines.append(f"Planning {plan.get('Planning Time', 0):.1f} ms, execution {plan.get('Execution Time', 0):.1f} ms")
    return lines, indexes, seq


def sqlite_plan(engine, st: Statement) -> tuple[list[str], set[str], set[str]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + st.sql, st.params).all()
    depth = {0: -1}
    lines, indexes, scans = [], set(), set()
    for node_id, parent, _, detail in rows:
        depth[node_id] = depth.get(parent, -1) + 1
        lines.append(f"{'  ' * depth[node_id]}{detail}")
        m = re.search(r"USING (?:AUTOMATIC |COVERING |INTEGER PRIMARY KEY)*(?:INDEX )?(\w+)?", detail)
        if m:
            indexes.add(m.group(1) or ("automatic (built per query)" if "AUTOMATIC" in detail else "rowid"))
        m = re.match(r"SCAN (\w+)", detail)  # SCAN walks it all (unless a LIMIT stops it); SEARCH a range
        if m:
            scans.add(m.group(1) + (" (in index order)" if "USING" in detail else ""))
    return lines, indexes, scans


def explain(engine, queries: list[Query], heaviest: str) -> None:
    """Indexes and table scans (SQLite: SCAN; PostgreSQL: Seq Scan, with rows read) of every
    statement; the whole plan of the heaviest."""
    pg = engine.dialect.name == "postgresql"
    print("  plans (" + ("EXPLAIN ANALYZE, BUFFERS" if pg else "EXPLAIN QUERY PLAN") + "):")
    for q in queries:
        for k, st in enumerate(q.statements):
            key = f"{q.label} #{k + 1}"
            lines, indexes, scans = pg_summary(pg_plan(engine, st)) if pg else sqlite_plan(engine, st)
            print(f"    {key:<46} indexes: {', '.join(sorted(indexes)) or '-'}; "
                  f"scans: {', '.join(sorted(scans)) or 'none'}")
            if key == heaviest:
                heavy = lines
    print(f"  heaviest statement: {heaviest}")
    for line in heavy:
        print(f"    | {line}")


# ------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="coupons in the history (default 200,000)")
    parser.add_argument("--days", type=int, default=180, help="history length in days (default 180)")
    parser.add_argument("--merchants", type=int, default=4, help="merchants; the first is a chain with half the stores")
    parser.add_argument("--stores", type=int, default=20)
    parser.add_argument("--templates", type=int, default=50)
    parser.add_argument("--runs", type=int, default=9, help="timed runs per query after one warm-up (default 9)")
    parser.add_argument("--try-index", action="append", default=[], metavar="SQL",
                        help='"CREATE INDEX name ON table (cols)": time again with it, then drop it (repeatable)')
    parser.add_argument("--reuse", action="store_true", help="keep the history already in the database (no reseed)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"),
                        help="default: $BENCH_DATABASE_URL, else a fresh SQLite file in a temp dir "
                             "(its tables are dropped and recreated!)")
    args = parser.parse_args()
    if args.merchants < 1 or args.stores < args.merchants or args.templates < args.merchants:
        parser.error("every merchant needs a store and a template")
    for sql in args.try_index:
        if not re.match(r"\s*CREATE\s+INDEX\s+\w+\s+ON\s+\w+", sql, re.I):
            parser.error(f"--try-index wants 'CREATE INDEX name ON table (...)', got {sql!r}")

    with tempfile.TemporaryDirectory(prefix="linli-bench-") as tmp:
        database_url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        db.configure(database_url)  # the engine exactly as the app sets it up (SQLite: WAL, timeouts)
        engine = db.engine
        backend = engine.dialect.name
        now = datetime.now(timezone.utc).replace(microsecond=0)
        try:
            have = 0
            if args.reuse and inspect(engine).has_table("coupons"):
                with engine.connect() as conn:
                    have = conn.scalar(select(func.count()).select_from(Coupon))
            if have:
                print(f"reusing the history in the database ({have:,} coupons)")
            else:
                metadata.drop_all(engine)
                metadata.create_all(engine)
                t0 = time.perf_counter()
                with engine.begin() as conn:
                    shape = seed_catalogue(conn, args.merchants, args.stores, args.templates, now)
                reds, revs = seed_history(engine, shape, args.rows, args.days, now, random.Random(42))
                seeded = time.perf_counter() - t0
                t0 = time.perf_counter()
                analyze(engine)
                print(f"seeded {args.rows:,} coupons, {reds:,} redemptions ({revs:,} reversed) over {args.days} days "
                      f"in {seeded:.1f} s ({args.rows / seeded:,.0f} coupons/s), ANALYZE {time.perf_counter() - t0:.1f} s")

            with Session(engine) as s:
                # the chain (most templates) and its busiest store
                mid = s.scalar(select(CouponTemplate.merchant_id).group_by(CouponTemplate.merchant_id)
                               .order_by(func.count().desc(), CouponTemplate.merchant_id).limit(1))
                sid = s.scalar(select(Redemption.store_id).join(Store, Store.id == Redemption.store_id)
                               .where(Store.merchant_id == mid).group_by(Redemption.store_id)
                               .order_by(func.count().desc()).limit(1))
                n_coupons = s.scalar(select(func.count()).select_from(Coupon))
                n_mine = s.scalar(select(func.count()).select_from(Coupon).join(CouponTemplate)
                                  .where(CouponTemplate.merchant_id == mid))
                n_store = s.scalar(select(func.count()).select_from(Redemption).where(Redemption.store_id == sid))
                small = s.scalar(select(CouponTemplate.merchant_id).group_by(CouponTemplate.merchant_id)
                                 .order_by(func.count(), CouponTemplate.merchant_id.desc()).limit(1))
            print(f"dashboard statistics, {backend}, {n_coupons:,} coupons; merchant {mid} holds {n_mine:,} of them, "
                  f"its store {sid} has {n_store:,} redemptions ({args.runs} runs each, ms)")

            queries = [
                Query("templates list: template_stats", lambda s: svc.template_stats(s, mid)),
                Query("one store: template_stats", lambda s: svc.template_stats(s, mid, sid)),
                Query("desk: recent_redemptions (10)", lambda s: svc.recent_redemptions(s, mid, sid, limit=10)),
            ]
            if small != mid:  # a small merchant's page should cost less than the chain's
                queries.append(Query(f"templates list, small merchant {small}: template_stats",
                                     lambda s: svc.template_stats(s, small)))
            clock = StatementClock(engine)
            time_queries(engine, clock, queries, args.runs)
            before = print_times(queries)
            heaviest = max(before, key=before.get)
            explain(engine, queries, heaviest)

            for sql in args.try_index:
                name = re.match(r"\s*CREATE\s+INDEX\s+(\w+)", sql, re.I).group(1)
                print(f"with {sql}:")
                with engine.begin() as conn:
                    conn.exec_driver_sql(sql)
                try:
                    analyze(engine)
                    time_queries(engine, clock, queries, args.runs)
                    after = print_times(queries, before)
                    explain(engine, queries, max(after, key=after.get))
                finally:
                    with engine.begin() as conn:
                        conn.execute(text(f"DROP INDEX {name}"))
                    print(f"  (dropped {name} again)")
        finally:
            engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
