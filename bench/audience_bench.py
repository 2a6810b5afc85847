"""How long the campaign audience preview takes on a big neighbourhood.

Seeds N residents (``--residents``, default 1,000,000) with taste profiles, relationships to
200 members across 2,000 stores in 40 business circles (1 in 8 residents with a second store,
3 % closed, 2 % opted out, 0.5 % erased), and an earlier message this month for 1 in 5 residents;
then times ``campaigns.services.preview`` (the count, the excluded counts by reason and a
masked sample, in SQL) for typical campaigns: a merchant's 川菜 campaign over its stores, a
regional campaign over every circle, and "all of 川菜 and 火锅 at weight 2".

    BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:55432/linli_bench \\
      .venv/bin/python bench/audience_bench.py --residents 1000000
    .venv/bin/python bench/audience_bench.py --residents 100000          # SQLite

The target (issue 10): p95 under 500 ms on 1,000,000 residents on PostgreSQL. The last line
is a JSON summary.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from bench.common import bench_app  # noqa: E402
from campaigns.models import Campaign, CampaignState, Channels, ChunkState, PlanRound, SendChunk  # noqa: E402
from campaigns.services import budget, preview  # noqa: E402
from core.db import db  # noqa: E402
from core.txn import transaction  # noqa: E402
from merchants.models import Member, Merchant, Region, RegionLevel, ReviewStatus, Store  # noqa: E402
from residents import taste  # noqa: E402

CUISINES = ["sichuan", "hunan", "cantonese", "hotpot", "japanese", "noodles", "dessert", "bbq"]
STORES, MEMBERS, CIRCLES, MERCHANTS = 2000, 200, 40, 400


def series(dialect: str, n: int) -> str:
    """A relation ``s(i)`` of 1..n."""
    if dialect == "postgresql":
        return f"generate_series(1, {n}) AS s(i)"
    return f"(WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {n}) SELECT i FROM c) AS s"


def seed(n: int) -> dict:
    session = db.session
    dialect = db.engine.dialect.name
    now = datetime.now(timezone.utc)
    with transaction(session):
        city = Region(name="上海市", level=RegionLevel.city)
        session.add(city)
        session.flush()
        circles = [Region(name=f"商圈{i}", level=RegionLevel.circle, parent_id=city.id) for i in range(CIRCLES)]
        session.add_all(circles)
        merchants = [Merchant(name=f"商户{i}", credit_code=f"91310000MA{i:08d}", contact_mobile="13800138000")
                     for i in range(MERCHANTS)]
        session.add_all(merchants)
        session.add_all(Member(userid=f"m{i}", name=f"成员{i}", can_hold_customers=True) for i in range(MEMBERS))
        session.flush()
        session.add_all(
            Store(merchant_id=merchants[i % MERCHANTS].id, name=f"店{i}", address="路", circle_id=circles[i % CIRCLES].id,
                  cuisines=[CUISINES[i % len(CUISINES)]], status=ReviewStatus.approved)
            for i in range(STORES)
        )
    ids = {k: session.execute(text(f"SELECT min(id) FROM {k}")).scalar_one()
           for k in ("stores", "members", "merchants", "regions")}
    store0, member0 = ids["stores"], ids["members"]
    start = time.perf_counter()
    epoch_growth = taste.score_threshold(1.0, now)  # a weight of 1 today, as a stored score
    naive = now.replace(tzinfo=None).isoformat(sep=" ")
    ts = f"CAST('{now.isoformat()}' AS timestamptz)" if dialect == "postgresql" else f"'{naive}'"
    statements = [
        f"INSERT INTO residents (id, external_userid, name, avatar, opted_out, reachable, erased_at, monthly_cap,"
        f" created_at, updated_at) SELECT i, 'wm' || i, '街坊' || i, '', (i % 50 = 7),"
        f" NOT (i % 33 = 1 AND i % 8 <> 0), CASE WHEN i % 200 = 3 THEN"
        f" {ts} END, CASE WHEN i % 40 = 5 THEN 1 END, {ts}, {ts} FROM {series(dialect, n)}",
        # one relationship each (store i % STORES, its member), a second store for 1 in 8
        f"INSERT INTO contact_relationships (resident_id, member_id, store_id, status, added_at)"
        f" SELECT i, {member0} + (i % {MEMBERS}), {store0} + (i % {STORES}),"
        f" CASE WHEN i % 33 = 1 THEN 'closed' ELSE 'open' END, {ts} FROM {series(dialect, n)}",
        f"INSERT INTO contact_relationships (resident_id, member_id, store_id, status, added_at)"
        f" SELECT i, {member0} + ((i + 7) % {MEMBERS}), {store0} + ((i * 7 + 3) % {STORES}), 'open', {ts}"
        f" FROM {series(dialect, n)} WHERE i % 8 = 0",
        # two cuisines each: the first store's (strong for 1 in 3) and one more
        f"INSERT INTO resident_tastes (resident_id, cuisine, score) SELECT i, CASE (i % {STORES}) % 8"
        + "".join(f" WHEN {k} THEN '{c}'" for k, c in enumerate(CUISINES))
        + f" END, {epoch_growth} * CASE WHEN i % 3 = 0 THEN 3.0 ELSE 1.0 END FROM {series(dialect, n)}",
        f"INSERT INTO resident_tastes (resident_id, cuisine, score) SELECT i, CASE ((i % {STORES}) + 1 + i % 5) % 8"
        + "".join(f" WHEN {k} THEN '{c}'" for k, c in enumerate(CUISINES))
        + f" END, {epoch_growth} * 2.0 FROM {series(dialect, n)} WHERE ((i % {STORES}) + 1 + i % 5) % 8 <> (i % {STORES}) % 8",
    ]
    with transaction(session):
        for sql in statements:
            session.execute(text(sql))
        earlier = Campaign(merchant_id=ids["merchants"], name="上月", message="m", reason="r", audience={},
                           channels=Channels.private, send_from=now - timedelta(days=5),
                           send_until=now - timedelta(days=4), state=CampaignState.done)
        session.add(earlier)
        session.flush()
        day = budget.local_day(now)
        round_ = PlanRound(state="planned", local_day=day, started_at=now, heartbeat_at=now)
        session.add(round_)
        session.flush()
        chunk = SendChunk(round_id=round_.id, member_id=member0, card_set=str(earlier.id), number=0, size=n // 5,
                          token="bench-earlier", state=ChunkState.confirmed)
        session.add(chunk)
        session.flush()
        day_sql = f"CAST('{day.isoformat()}' AS date)" if dialect == "postgresql" else f"'{day.isoformat()}'"
        session.execute(text(
            f"INSERT INTO deliveries (chunk_id, resident_id, local_day, status)"
            f" SELECT {chunk.id}, i, {day_sql}, 'sent' FROM {series(dialect, n)} WHERE i % 5 = 0"))
    if dialect == "postgresql":
        # a table in service has been vacuumed: set the hint bits and the statistics once
        # here, not in the first timed previews
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    return {"seed_s": time.perf_counter() - start, "merchant_id": ids["merchants"],
            "region_id": ids["regions"], "now": now}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--residents", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20, help="previews per campaign")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--reuse", action="store_true", help="time the rows an earlier run seeded (same --residents)")
    args = parser.parse_args()
    with bench_app(args.database_url, None, fresh=not args.reuse) as app, app.app_context():
        dialect = db.engine.dialect.name
        if args.reuse:
            info = {"seed_s": 0.0, "now": datetime.now(timezone.utc), **{
                key: db.session.execute(text(f"SELECT min(id) FROM {table}")).scalar_one()
                for key, table in (("merchant_id", "merchants"), ("region_id", "regions"))}}
        else:
            print(f"seeding {args.residents:,} residents on {dialect} …", flush=True)
            info = seed(args.residents)
            print(f"  seeded in {info['seed_s']:.1f} s")
        now = info["now"]
        window = dict(send_from=now, send_until=now + timedelta(days=2), message="m", reason="r",
                      channels=Channels.private)
        cases = {
            "merchant, 川菜, its 5 stores": Campaign(merchant_id=info["merchant_id"], name="a",
                                                  audience={"cuisines": ["sichuan"]}, **window),
            "region, every circle, any taste": Campaign(region_id=info["region_id"], name="b", audience={}, **window),
            "region, 川菜 and 火锅, weight 2": Campaign(region_id=info["region_id"], name="c", audience={
                "cuisines": ["sichuan", "hotpot"], "match": "all", "min_weight": 2.0}, **window),
            "region, 川菜 or 湘菜": Campaign(region_id=info["region_id"], name="d", audience={
                "cuisines": ["sichuan", "hunan"]}, **window),
        }
        summary: dict = {"residents": args.residents, "database": dialect, "cases": {}}
        worst_p95 = 0.0
        with transaction(db.session) as session:
            for campaign in cases.values():
                session.add(campaign)
            session.flush()
            for label, campaign in cases.items():
                times = []
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    result = preview(session, campaign, now)
                    times.append(time.perf_counter() - t0)
                times.sort()
                p50 = statistics.median(times) * 1000
                p95 = times[max(0, int(len(times) * 0.95) - 1)] * 1000
                worst_p95 = max(worst_p95, p95)
                print(f"  {label:<34} eligible {result.eligible:>9,}  excluded {result.excluded}"
                      f"  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms")
                summary["cases"][label] = {"eligible": result.eligible, "excluded": result.excluded,
                                           "p50_ms": round(p50, 1), "p95_ms": round(p95, 1)}
            session.rollback()
        summary["p95_ms"] = round(worst_p95, 1)
        summary["seed_s"] = round(info["seed_s"], 1)
        print(f"worst p95: {worst_p95:.1f} ms (target < 500 ms on 1,000,000 residents, PostgreSQL)")
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    main()
