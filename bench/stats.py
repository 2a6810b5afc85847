"""The statistics over a big history: the regional dashboard, the roll-up job, a rebuild, timed.

Seeds, on PostgreSQL and in set-based SQL (``INSERT … SELECT … generate_series``, a few big
statements), N redemptions (``--redemptions``, default 10,000,000) and what surrounds them
over ``--stores`` (2,000) stores of ~700 merchants in 4 districts × 10 circles and ``--days``
(365) days ending yesterday: coupons (N × 1.25: every fifth one never used; 1 % of the
redemptions reversed), 3 templates per merchant (some platform-funded), 2 channel codes per
store, N / 10 residents with their relationships (1 in 8 with a second store, 5 % closed),
campaigns (16 regional, one per district and quarter, and one per tenth merchant) with a
push and a message for every other resident. No tallies: the history is counted by a
rebuild from the raw tables, timed (``rebuild_s``). Then one more day of rows (N / days
redemptions, their coupons and contacts) is written with the tally rows the app writes
beside each one, and the roll-up job (``stats.jobs.roll_up``) is timed until it has caught
up (``catch_up_s``); a rebuild of that day must give the same rollups.

The dashboard (``GET /stats/``) is then loaded 50 times per view by a manager of one
district, timed around the test client's request (server side: routing, queries,
template): ``region-month`` (the district, one calendar month), ``circle-quarter`` (one
circle and one cuisine, three months), ``store-year`` (one store, 365 days). Beside each,
one ``COUNT(*)`` of the same redemptions over the raw table (``redemptions`` joined to
``stores``, the schema's indexes; median of 5 warm runs), which net of reversals must
equal the page's figure; ``ratio`` = page p95 / that count. ``--explain`` shows the slowest
SQL statements of one page load with their plans, ``--try-index`` times the pages with a
proposed index in place.

    BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:55432/linli_bench \\
      .venv/bin/python bench/stats.py                            # 10,000,000 redemptions
    BENCH_DATABASE_URL=… .venv/bin/python bench/stats.py --reuse  # re-time, same options
    BENCH_DATABASE_URL=… .venv/bin/python bench/stats.py --redemptions 200000

Targets (issue 11): p95 under 100 ms for every view and at most a tenth of the raw count's
time (ratio ≤ 0.1). The last line is JSON.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import event, func, select, text  # noqa: E402

from accounts.models import User  # noqa: E402
from bench.common import bench_app  # noqa: E402
from core.db import db  # noqa: E402
from core.localtime import local, local_midnight  # noqa: E402
from core.tally import METRICS  # noqa: E402
from core.txn import transaction  # noqa: E402
from merchants.models import CUISINES  # noqa: E402
from merchants.services import create_manager  # noqa: E402
from stats import jobs as stats_jobs  # noqa: E402
from stats.models import DailyStat  # noqa: E402
from stats.services import rollup  # noqa: E402

DISTRICTS, CIRCLES_PER = 4, 10
CIRCLES = DISTRICTS * CIRCLES_PER
CITY, DISTRICT0, CIRCLE0 = 1, 2, 2 + DISTRICTS  # region ids: the city, districts 2..5, circles 6..45
REGIONAL = 4 * DISTRICTS  # regional campaigns: one per district and quarter (ids 1..16)
CHUNK = 2_000_000  # ids per INSERT statement (each its own transaction)
BULK = ("residents", "contact_relationships", "coupons", "redemptions", "redemption_reversals", "deliveries", "pushes")
CODES = list(CUISINES)
PASSWORD = "bench-Stats-dashboard-7431"
MANAGER = "bench-manager"
MARKER = "linli bench/stats.py"


@dataclass(frozen=True)
class Shape:
    """Every id and time of the seed follows from these (so --reuse and the new day can
    recompute them instead of reading them back)."""

    redemptions: int
    stores: int
    days: int
    first_day: date

    @property
    def merchants(self) -> int:
        return max(1, round(self.stores * 0.35))

    @property
    def coupons(self) -> int:  # coupon i is redeemed unless i % 5 = 0: exactly N of them
        return 5 * (self.redemptions // 4) + self.redemptions % 4

    @property
    def residents(self) -> int:
        return max(100, self.redemptions // 10)

    @property
    def members(self) -> int:
        return max(1, self.stores // 4)

    @property
    def campaigns(self) -> int:
        return REGIONAL + (self.merchants + 9) // 10

    @property
    def reversals(self) -> int:  # coupons i % 125 = 1 among 1..C
        return (self.coupons - 1) // 125 + 1

    @property
    def start(self) -> datetime:
        return local_midnight(self.first_day)

    @property
    def hist_end(self) -> datetime:
        return local_midnight(self.first_day + timedelta(days=self.days))

    @property
    def new_day(self) -> date:
        return self.first_day + timedelta(days=self.days)

    @property
    def new_end(self) -> datetime:
        return local_midnight(self.new_day + timedelta(days=1))

    @property
    def last_day(self) -> date:
        return self.new_day - timedelta(days=1)

    def marker(self) -> str:
        return (f"{MARKER}: redemptions={self.redemptions} stores={self.stores} days={self.days}"
                f" first_day={self.first_day.isoformat()}")


def ts(at: datetime) -> str:
    return f"TIMESTAMPTZ '{at.isoformat()}'"


# --------------------------------------------------------------------------- seeding SQL
# ``i`` is a coupon id, ``r`` a resident id; everything else is a function of them.


def spread(var: str, odd: int, n: int) -> str:
    """0..n-1 from ``var`` by Fibonacci hashing (the top bits of an odd multiple mod 2^32):
    even over n and unrelated to ``var`` mod 5 or 10, which pick a coupon's fate."""
    return f"((({var} * {odd}) % 4294967296) * {n}) / 4294967296"


def _coupon_lateral(sh: Shape) -> str:
    """Per coupon ``i``: its store ``s``, merchant ``m``, circle ``c``, issue time ``t``, day
    index, template kind ``k``, source, bill and discount; shared by the coupon, redemption
    and reversal inserts so the three agree."""
    step = sh.days * 86400 / sh.coupons
    return (
        f" CROSS JOIN LATERAL (SELECT 1 + {spread('i', 2654435761, sh.stores)} AS s, i % 3 AS k,"
        f" 10000 + (i * 37) % 20000 AS bill,"
        f" {ts(sh.start)} + ((i - 1) * {step!r}) * interval '1 second' AS t,"
        f" ((i - 1) * {sh.days}) / {sh.coupons} AS day_idx,"
        f" CASE WHEN i % 10 < 4 THEN 'welcome' WHEN i % 10 < 7 THEN 'store' WHEN i % 10 < 9 THEN 'campaign'"
        f" ELSE 'other' END AS src) a"
        f" CROSS JOIN LATERAL (SELECT 1 + ((a.s - 1) * {sh.merchants}) / {sh.stores} AS m, (a.s - 1) % {CIRCLES} AS c,"
        f" CASE a.k WHEN 0 THEN 2000 WHEN 1 THEN least(a.bill * 15 / 100, 3000) ELSE 1000 END AS disc) b"
    )


def _redeemed_at(clamp: datetime) -> str:
    return (f"greatest(a.t, least(a.t + ((i * 13) % 2880 + 1) * interval '1 minute',"
            f" {ts(clamp)} - interval '1 millisecond'))")


def coupons_sql(sh: Shape, lo: int, hi: int, clamp: datetime) -> str:
    live = "(i % 5 <> 0 AND i % 125 <> 1)"
    rt = _redeemed_at(clamp)
    return (
        "INSERT INTO coupons (id, template_id, resident_id, holder_ref, holder_seq, short_code, issued_at, valid_from,"
        " valid_until, status, redeemed_at, redeemed_store_id, bill_fen, discount_fen, source, origin_store_id,"
        " origin_channel_id, origin_campaign_id)"
        f" SELECT i, 3 * (b.m - 1) + a.k + 1, 1 + {spread('i', 3266489917, sh.residents)},"
        f" 'r:' || (1 + {spread('i', 3266489917, sh.residents)}), i, 'B' || i, a.t, a.t, a.t + interval '30 days',"
        f" CASE WHEN {live} THEN 'redeemed' WHEN a.t + interval '30 days' > {ts(sh.new_end)} THEN 'issued'"
        f" ELSE 'expired' END,"
        f" CASE WHEN {live} THEN {rt} END, CASE WHEN {live} THEN a.s END, CASE WHEN {live} THEN a.bill END,"
        f" CASE WHEN {live} THEN b.disc END, a.src, CASE WHEN a.src <> 'other' THEN a.s END,"
        f" CASE WHEN a.src = 'welcome' THEN 2 * (a.s - 1) + 1 + (i / 10) % 2 END,"
        f" CASE WHEN a.src = 'campaign' THEN CASE WHEN (b.m - 1) % 10 = 0 AND (i / 10) % 2 = 0"
        f" THEN {REGIONAL + 1} + (b.m - 1) / 10 ELSE 1 + least(3, a.day_idx * 4 / {sh.days}) * {DISTRICTS}"
        f" + b.c / {CIRCLES_PER} END END"
        f" FROM generate_series({lo}::bigint, {hi}::bigint) AS g(i)" + _coupon_lateral(sh)
    )


def redemptions_sql(sh: Shape, lo: int, hi: int, clamp: datetime) -> str:
    return (
        "INSERT INTO redemptions (id, coupon_id, idempotency_key, store_id, cashier_id, bill_fen, discount_fen,"
        " redeemed_at, reversed)"
        f" SELECT i - i / 5, i, 'b' || i, a.s, a.s, a.bill, b.disc, {_redeemed_at(clamp)}, i % 125 = 1"
        f" FROM generate_series({lo}::bigint, {hi}::bigint) AS g(i)" + _coupon_lateral(sh) + " WHERE i % 5 <> 0"
    )


def reversals_sql(sh: Shape, lo: int, hi: int, clamp: datetime) -> str:
    rt = _redeemed_at(clamp)
    return (
        "INSERT INTO redemption_reversals (id, redemption_id, user_id, reason, reversed_at)"
        f" SELECT (i - 1) / 125 + 1, i - i / 5, {sh.stores} + b.m, '',"
        f" greatest({rt}, least({rt} + interval '5 minutes', {ts(clamp)} - interval '1 millisecond'))"
        f" FROM generate_series({lo}::bigint, {hi}::bigint) AS g(i)" + _coupon_lateral(sh) + " WHERE i % 125 = 1"
    )


def _resident_lateral(sh: Shape) -> str:
    step = sh.days * 86400 / sh.residents
    return (
        f" CROSS JOIN LATERAL (SELECT 1 + {spread('r', 2246822519, sh.stores)} AS s,"
        f" {ts(sh.start)} + ((r - 1) * {step!r}) * interval '1 second' AS t) a"
    )


def residents_sql(sh: Shape, lo: int, hi: int) -> str:
    return (
        "INSERT INTO residents (id, external_userid, name, avatar, opted_out, reachable, created_at, updated_at)"
        f" SELECT r, 'wm' || r, '', '', false, true, a.t, a.t FROM generate_series({lo}::bigint, {hi}::bigint) AS g(r)"
        + _resident_lateral(sh)
    )


def relationships_sql(sh: Shape, lo: int, hi: int, clamp: datetime) -> list[str]:
    """A first relationship each (1 in 20 closed ten days later, by either side), a second
    store for 1 in 8 (opened by a handover for 1 in 64: not a new contact)."""
    closed = f"(r % 20 = 3 AND a.t + interval '10 days' < {ts(clamp)})"
    cols = "(id, resident_id, member_id, store_id, channel_id, status, added_at, closed_at, close_reason, opened_by)"
    series = f" FROM generate_series({lo}::bigint, {hi}::bigint) AS g(r)" + _resident_lateral(sh)
    second = f"1 + (a.s + {sh.stores // 2}) % {sh.stores}"
    return [
        f"INSERT INTO contact_relationships {cols}"
        f" SELECT 2 * r - 1, r, 1 + (a.s - 1) % {sh.members}, a.s,"
        f" CASE WHEN r % 5 <> 0 THEN 2 * (a.s - 1) + 1 + r % 2 END,"
        f" CASE WHEN {closed} THEN 'closed' ELSE 'open' END, a.t,"
        f" CASE WHEN {closed} THEN a.t + interval '10 days' END,"
        f" CASE WHEN {closed} THEN CASE WHEN r % 40 = 3 THEN 'del_follow_user' ELSE 'del_external_contact' END END,"
        f" 'add'" + series,
        f"INSERT INTO contact_relationships {cols}"
        f" SELECT 2 * r, r, 1 + ({second} - 1) % {sh.members}, {second}, NULL, 'open',"
        f" greatest(a.t, least(a.t + interval '3 days', {ts(clamp)} - interval '1 millisecond')), NULL, NULL,"
        f" CASE WHEN r % 64 = 0 THEN 'transfer' ELSE 'add' END" + series + " WHERE r % 8 = 0",
    ]


def catalogue_sql(sh: Shape) -> list[str]:
    """Regions, merchants, stores, users, members, channels, templates, campaigns, their
    rounds and chunks: small tables, one statement each."""
    now = ts(sh.start)
    codes = "ARRAY[" + ", ".join(f"'{c}'" for c in CODES) + "]"
    n = len(CODES)
    merchant_of = f"1 + ((s - 1) * {sh.merchants}) / {sh.stores}"
    # a campaign's send day: regional ones in their quarter, merchants' spread over the year
    send_idx = (f"CASE WHEN j <= {REGIONAL} THEN least({sh.days - 1}, ((j - 1) / {DISTRICTS}) * ({sh.days} / 4)"
                f" + 3 + (j - 1) % {DISTRICTS}) ELSE ((j - {REGIONAL + 1}) * 7 + 5) % {sh.days} END")
    return [
        f"INSERT INTO regions (id, name, level, parent_id) VALUES ({CITY}, '上海市', 'city', NULL)",
        ("INSERT INTO regions (id, name, level, parent_id)"
         f" SELECT {DISTRICT0} + d, '区' || (d + 1), 'district', {CITY} FROM generate_series(0, {DISTRICTS - 1}) d"),
        ("INSERT INTO regions (id, name, level, parent_id)"
         f" SELECT {CIRCLE0} + c, '商圈' || (c + 1), 'circle', {DISTRICT0} + c / {CIRCLES_PER}"
         f" FROM generate_series(0, {CIRCLES - 1}) c"),
        ("INSERT INTO merchants (id, name, credit_code, contact_mobile, created_at)"
         f" SELECT m, '商户' || m, '91310000MA' || lpad(m::text, 8, '0'), '13800138000', {now}"
         f" FROM generate_series(1, {sh.merchants}) m"),
        ("INSERT INTO stores (id, merchant_id, name, address, circle_id, cuisines, avg_spend_fen, opening_hours,"
         " status, welcome_text, created_at)"
         f" SELECT s, {merchant_of}, '店' || s, '幸福路 ' || s || ' 号', {CIRCLE0} + (s - 1) % {CIRCLES},"
         f" CASE WHEN s % 3 = 0 THEN json_build_array(({codes})[1 + (s - 1) % {n}], ({codes})[1 + (s + 4) % {n}])"
         f" ELSE json_build_array(({codes})[1 + (s - 1) % {n}]) END, 8000, '{{}}'::json, 'approved', '', {now}"
         f" FROM generate_series(1, {sh.stores}) s"),
        ("INSERT INTO users (id, username, password_hash, display_name, role, merchant_id, store_id, active,"
         " session_version, created_at)"
         f" SELECT s, 'bench-cashier-' || s, '!', '', 'cashier', {merchant_of}, s, true, 1, {now}"
         f" FROM generate_series(1, {sh.stores}) s"),
        ("INSERT INTO users (id, username, password_hash, display_name, role, merchant_id, active,"
         " session_version, created_at)"
         f" SELECT {sh.stores} + m, 'bench-owner-' || m, '!', '', 'owner', m, true, 1, {now}"
         f" FROM generate_series(1, {sh.merchants}) m"),
        ("INSERT INTO members (id, userid, name, can_hold_customers, active, synced_at)"
         f" SELECT k, 'bm' || k, '店员' || k, true, true, {now} FROM generate_series(1, {sh.members}) k"),
        ("INSERT INTO channels (id, store_id, name, kind, config_id, qr_code, state, auto_accept_hours_only,"
         " users, skip_verify, active, created_at)"
         f" SELECT k, (k + 1) / 2, CASE k % 2 WHEN 1 THEN '门口' ELSE '桌贴' END,"
         f" CASE k % 2 WHEN 1 THEN 'door' ELSE 'table' END, 'bench-cfg-' || k, '', 'bench:' || k, false,"
         f" '[]'::json, true, true, {now} FROM generate_series(1, {2 * sh.stores}) k"),
        ("INSERT INTO coupon_templates (id, merchant_id, name, kind, value, cap_fen, min_spend_fen,"
         " valid_days, weekdays_mask, issued_count, per_diner_limit, funded_by, status, description,"
         " claimable, created_at, updated_at)"
         " SELECT 3 * (m - 1) + k + 1, m, (ARRAY['满100减20', '八五折', '10元代金券'])[k + 1],"
         " (ARRAY['amount_off', 'percent_off', 'voucher'])[k + 1], (ARRAY[2000, 85, 1000])[k + 1],"
         " CASE k WHEN 1 THEN 3000 END, CASE k WHEN 0 THEN 10000 ELSE 0 END, 30, 127, 0, 1,"
         " CASE WHEN k = 2 AND (m - 1) % 10 = 0 THEN 'platform' ELSE 'merchant' END, 'active', '',"
         f" k = 1, {now}, {now}"
         f" FROM generate_series(1, {sh.merchants}) m, generate_series(0, 2) k"),
        f"UPDATE stores SET welcome_template_id = 3 * (((id - 1) * {sh.merchants}) / {sh.stores}) + 1",
        ("INSERT INTO plan_rounds (id, state, upper_id, cursor_id, local_day, min_calls, started_at,"
         " heartbeat_at, finished_at)"
         f" SELECT j, 'planned', 0, 0, DATE '{sh.first_day.isoformat()}' + ({send_idx})::int, 1,"
         f" {ts(sh.start)} + ({send_idx}) * interval '1 day' + interval '2 hours',"
         f" {ts(sh.start)} + ({send_idx}) * interval '1 day' + interval '2 hours',"
         f" {ts(sh.start)} + ({send_idx}) * interval '1 day' + interval '3 hours'"
         f" FROM generate_series(1, {sh.campaigns}) j"),
        ("INSERT INTO campaigns (id, merchant_id, region_id, name, message, reason, audience, channels,"
         " send_from, send_until, quiet_start, quiet_end, state, round_id, send_errors, created_at, updated_at)"
         f" SELECT j, CASE WHEN j > {REGIONAL} THEN 1 + (j - {REGIONAL + 1}) * 10 END,"
         f" CASE WHEN j <= {REGIONAL} THEN {DISTRICT0} + (j - 1) % {DISTRICTS} END, '活动' || j, '本周优惠',"
         f" '你常去附近的店', '{{}}'::json, 'private', pr.started_at + interval '8 hours',"
         f" pr.started_at + interval '56 hours', 1260, 540, 'done', j, 0, pr.started_at, pr.started_at"
         f" FROM generate_series(1, {sh.campaigns}) j JOIN plan_rounds pr ON pr.id = j"),
        ("INSERT INTO campaign_templates (campaign_id, template_id, position)"
         f" SELECT j, 3 * (j - {REGIONAL + 1}) * 10 + 1, 0"
         f" FROM generate_series({REGIONAL + 1}, {sh.campaigns}) j"),
        ("INSERT INTO send_chunks (id, round_id, member_id, card_set, chat_type, number, size, state, token,"
         " attempts, calls, reminders, error, updated_at)"
         f" SELECT j, j, 1, j::text, 'single', 0, 0, 'confirmed', 'bench-' || j, 1, 1, '[]'::json, '', {now}"
         f" FROM generate_series(1, {sh.campaigns}) j"),
    ]


def campaign_messages_sql(sh: Shape) -> list[tuple[str, str]]:
    """Every other resident got one campaign's message (1 in 20 over WeCom's quota, 1 in 20
    never sent), with the push that planned it."""
    join = (f" FROM generate_series(1, {sh.residents}) AS g(r)"
            f" JOIN plan_rounds pr ON pr.id = 1 + (r / 2) % {sh.campaigns} WHERE r % 2 = 0")
    return [
        ("deliveries", "INSERT INTO deliveries (id, chunk_id, resident_id, local_day, status, sent_at)"
                       " SELECT r, pr.id, r, pr.local_day, CASE r % 40 WHEN 0 THEN 'over_quota' WHEN 2 THEN 'unsent'"
                       " ELSE 'sent' END, pr.finished_at" + join),
        ("pushes", "INSERT INTO pushes (id, campaign_id, resident_id, decision, delivery_id, score, created_at)"
                   " SELECT r, pr.id, r, 'matched', r, 0, pr.started_at" + join),
    ]


# --------------------------------------------------------------------------- bulk-load helpers


def run_sql(conn, sql: str):
    """A literal statement (no parameters: psycopg would read its ``%`` as placeholders)."""
    return conn.exec_driver_sql(sql.replace("%", "%%"))


def tune(conn) -> None:
    """Session settings for the load (this connection only)."""
    for setting in ("synchronous_commit = off", "maintenance_work_mem = '1GB'", "work_mem = '256MB'", "jit = off"):
        run_sql(conn, f"SET {setting}")


def schema_of(conn) -> dict:
    """The bulk tables' unique and foreign-key constraints and their plain indexes, exactly as
    the schema made them (primary keys stay in place)."""
    tables = ", ".join(f"'{t}'::regclass" for t in BULK)
    constraints = conn.execute(text(
        "SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid) FROM pg_constraint"
        f" WHERE conrelid IN ({tables}) AND contype IN ('u', 'f') ORDER BY 1, 2")).all()
    indexes = conn.execute(text(
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index i"
        f" WHERE indrelid IN ({tables}) AND NOT EXISTS (SELECT 1 FROM pg_constraint c"
        " WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x')) ORDER BY 1")).all()
    return {"unique": [c for c in constraints if c[2] == "u"], "fk": [c for c in constraints if c[2] == "f"],
            "indexes": list(indexes)}


def drop_schema(conn, saved: dict) -> None:
    for table, name, _kind, _definition in saved["fk"] + saved["unique"]:
        run_sql(conn, f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _definition in saved["indexes"]:
        run_sql(conn, f'DROP INDEX "{name}"')
    conn.commit()


def restore_schema(conn, saved: dict) -> None:
    """Uniques and indexes first (each one sort), then the foreign keys (each one validating join)."""
    for table, name, _kind, definition in saved["unique"]:
        run_sql(conn, f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        conn.commit()
    for _name, definition in saved["indexes"]:
        run_sql(conn, definition)
        conn.commit()
    for table, name, _kind, definition in saved["fk"]:
        run_sql(conn, f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        conn.commit()
    if schema_of(conn) != saved:
        raise SystemExit("the recreated constraints and indexes differ from the schema's")


def set_sequences(conn, tables) -> None:
    for table in tables:
        run_sql(conn, f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT coalesce(max(id), 1)"
                             f" FROM {table}))")
    conn.commit()


def chunks(lo: int, hi: int):
    for start in range(lo, hi + 1, CHUNK):
        yield start, min(hi, start + CHUNK - 1)


def seed(sh: Shape, keep_indexes: bool) -> dict[str, float]:
    """The history, table by table (seconds each)."""
    timings: dict[str, float] = {}

    def run(label: str, statements) -> None:
        t0 = time.perf_counter()
        for sql in statements:
            run_sql(conn, sql)
            conn.commit()
        timings[label] = timings.get(label, 0.0) + time.perf_counter() - t0
        print(f"  {label:<24} {timings[label]:8.1f} s", flush=True)

    with db.engine.connect() as conn:
        tune(conn)
        t0 = time.perf_counter()
        for sql in catalogue_sql(sh):
            run_sql(conn, sql)
        conn.commit()
        timings["catalogue"] = time.perf_counter() - t0
        print(f"  {'catalogue':<24} {timings['catalogue']:8.1f} s", flush=True)
        saved = schema_of(conn)
        if not keep_indexes:
            drop_schema(conn, saved)
        c, r = sh.coupons, sh.residents
        run("residents", [residents_sql(sh, lo, hi) for lo, hi in chunks(1, r)])
        run("contact_relationships", [s for lo, hi in chunks(1, r) for s in relationships_sql(sh, lo, hi, sh.hist_end)])
        run("coupons", [coupons_sql(sh, lo, hi, sh.hist_end) for lo, hi in chunks(1, c)])
        run("redemptions", [redemptions_sql(sh, lo, hi, sh.hist_end) for lo, hi in chunks(1, c)])
        run("redemption_reversals", [reversals_sql(sh, lo, hi, sh.hist_end) for lo, hi in chunks(1, c)])
        run("deliveries, pushes", [sql for _table, sql in campaign_messages_sql(sh)])
        if not keep_indexes:
            t0 = time.perf_counter()
            restore_schema(conn, saved)
            timings["indexes and keys"] = time.perf_counter() - t0
            print(f"  {'indexes and keys':<24} {timings['indexes and keys']:8.1f} s", flush=True)
        set_sequences(conn, ("regions", "merchants", "stores", "users", "members", "channels", "coupon_templates",
                             "plan_rounds", "campaigns", "send_chunks", *BULK))
        run_sql(conn, f"COMMENT ON TABLE coupons IS '{sh.marker()}'")
        conn.commit()
    t0 = time.perf_counter()
    vacuum_analyze()
    timings["vacuum analyze"] = time.perf_counter() - t0
    print(f"  {'vacuum analyze':<24} {timings['vacuum analyze']:8.1f} s", flush=True)
    return timings


def vacuum_analyze(*tables: str) -> None:
    """A table in service has been vacuumed and analysed (hint bits, visibility map, statistics)."""
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        run_sql(conn, "VACUUM ANALYZE " + ", ".join(tables))


def seeded_shape(args) -> Shape:
    """--reuse: the shape an earlier run left (its marker), which must match the options."""
    marker = db.session.scalar(text("SELECT obj_description('coupons'::regclass, 'pg_class')")) or ""
    match = re.fullmatch(rf"{re.escape(MARKER)}: redemptions=(\d+) stores=(\d+) days=(\d+) first_day=(\S+)", marker)
    if not match:
        raise SystemExit("--reuse: no finished seed of bench/stats.py in this database (run without --reuse)")
    sh = Shape(int(match[1]), int(match[2]), int(match[3]), date.fromisoformat(match[4]))
    if (sh.redemptions, sh.stores, sh.days) != (args.redemptions, args.stores, args.days):
        raise SystemExit(f"--reuse: the database holds {marker!r}; pass the same --redemptions/--stores/--days")
    return sh


def forget_new_day(sh: Shape) -> None:
    """--reuse: remove the extra day an earlier run wrote (and every tally), so this run
    writes it again on the seeded history."""
    c, n, r = sh.coupons, sh.redemptions, sh.residents
    with db.engine.connect() as conn:
        for sql in ("DELETE FROM stat_tallies",
                    f"DELETE FROM redemption_reversals WHERE id > {sh.reversals}",
                    f"DELETE FROM redemptions WHERE id > {n}",
                    f"DELETE FROM coupons WHERE id > {c}",
                    f"DELETE FROM contact_relationships WHERE resident_id > {r}",
                    f"DELETE FROM residents WHERE id > {r}"):
            run_sql(conn, sql)
        conn.commit()
        set_sequences(conn, ("coupons", "redemptions", "redemption_reversals", "contact_relationships", "residents"))


# --------------------------------------------------------------------------- the new day


def tallies_sql(sh: Shape) -> list[str]:
    """The tally rows the app writes beside each new raw row (one per event, as
    ``coupons.services`` and ``residents.services`` call ``core.tally.count``)."""
    zeros = {m: "0" for m in METRICS}
    cols = ", ".join(("local_day", "store_id", "template_id", "campaign_id", "channel_id", *METRICS))

    def row(day: str, store: str, template: str, campaign: str, channel: str, **given: str) -> str:
        values = [given.get(m, zeros[m]) for m in METRICS]
        return f"SELECT CAST(timezone('Asia/Shanghai', {day}) AS date), {store}, {template}, {campaign}, {channel}, " \
               + ", ".join(values)

    insert = f"INSERT INTO stat_tallies ({cols}) "
    coupon_dims = ("coalesce(cp.origin_campaign_id, 0)", "coalesce(cp.origin_channel_id, 0)")
    return [
        insert + row("cp.issued_at", "coalesce(cp.origin_store_id, 0)", "cp.template_id", *coupon_dims, issued="1",
                     claimed="CASE WHEN cp.source IN ('store', 'campaign') THEN 1 ELSE 0 END")
        + f" FROM coupons cp WHERE cp.id > {sh.coupons} ORDER BY cp.id",
        insert + row("rd.redeemed_at", "rd.store_id", "cp.template_id", *coupon_dims, redeemed="1",
                     discount_fen="rd.discount_fen", bill_fen="rd.bill_fen")
        + f" FROM redemptions rd JOIN coupons cp ON cp.id = rd.coupon_id WHERE rd.id > {sh.redemptions} ORDER BY rd.id",
        insert + row("rv.reversed_at", "rd.store_id", "cp.template_id", *coupon_dims, reversed="1",
                     discount_fen="-rd.discount_fen", bill_fen="-rd.bill_fen")
        + " FROM redemption_reversals rv JOIN redemptions rd ON rd.id = rv.redemption_id"
        f" JOIN coupons cp ON cp.id = rd.coupon_id WHERE rv.id > {sh.reversals} ORDER BY rv.id",
        insert + row("rel.added_at", "coalesce(rel.store_id, 0)", "0", "0", "coalesce(rel.channel_id, 0)",
                     new_contacts="1")
        + f" FROM contact_relationships rel WHERE rel.resident_id > {sh.residents} AND rel.opened_by = 'add'"
        " ORDER BY rel.id",
    ]


def write_new_day(sh: Shape) -> dict:
    """One more day of rows with their tallies: the residents who added a store, their
    coupons, the redemptions (and reversals) of that day's coupons."""
    c_lo, c_hi = sh.coupons + 1, sh.coupons + max(1, sh.coupons // sh.days)
    r_lo, r_hi = sh.residents + 1, sh.residents + max(1, sh.residents // sh.days)
    t0 = time.perf_counter()
    with db.engine.connect() as conn:
        run_sql(conn, residents_sql(sh, r_lo, r_hi))
        for sql in relationships_sql(sh, r_lo, r_hi, sh.new_end):
            run_sql(conn, sql)
        for sql in (coupons_sql(sh, c_lo, c_hi, sh.new_end), redemptions_sql(sh, c_lo, c_hi, sh.new_end),
                    reversals_sql(sh, c_lo, c_hi, sh.new_end)):
            run_sql(conn, sql)
        for sql in tallies_sql(sh):
            run_sql(conn, sql)
        conn.commit()
        set_sequences(conn, ("coupons", "redemptions", "redemption_reversals", "contact_relationships", "residents"))
        counts = {t: run_sql(conn, f"SELECT count(*) FROM {t} WHERE id > {lim}").scalar_one()
                  for t, lim in (("coupons", sh.coupons), ("redemptions", sh.redemptions),
                                 ("redemption_reversals", sh.reversals), ("residents", sh.residents))}
        counts["stat_tallies"] = run_sql(conn, "SELECT count(*) FROM stat_tallies").scalar_one()
    return {"write_s": time.perf_counter() - t0, **counts}


def day_sums(day: date) -> tuple:
    d = DailyStat.__table__
    return tuple(db.session.execute(select(func.count(), *[func.coalesce(func.sum(d.c[m]), 0) for m in METRICS])
                                    .where(d.c.local_day == day)).one())


# --------------------------------------------------------------------------- the views

_TOKEN_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
_KPI_RE = re.compile(r'data-metric="redeemed">.*?data-value="(-?\d+)"', re.S)


@dataclass
class View:
    name: str
    query: str
    start: date
    end: date
    scope_sql: str  # the raw count's condition on stores ``s`` (and redemptions ``r``)


def views(sh: Shape) -> list[View]:
    """A district for its last full month, a circle and a cuisine for the three months to
    it, the district's first store for the year."""
    month_end = sh.last_day
    if (month_end + timedelta(days=1)).day != 1:  # the month before the one yesterday is in
        month_end = month_end.replace(day=1) - timedelta(days=1)
    month_start = max(sh.first_day, month_end.replace(day=1))
    q_start = month_start
    for _ in range(2):
        q_start = (q_start - timedelta(days=1)).replace(day=1)
    q_start = max(sh.first_day, q_start)
    year_start = max(sh.first_day, sh.last_day - timedelta(days=364))
    circle, store = CIRCLE0, 1  # circle 1 of district 1; store 1 is in it
    cuisine = CODES[0]  # store 1's
    circles = ", ".join(str(CIRCLE0 + c) for c in range(CIRCLES_PER))

    def rng(a: date, b: date) -> str:
        return f"range=custom&from={a.isoformat()}&to={b.isoformat()}"

    return [
        View("region-month", rng(month_start, month_end), month_start, month_end, f"s.circle_id IN ({circles})"),
        View("circle-quarter", f"{rng(q_start, month_end)}&circle={circle}&cuisine={cuisine}", q_start, month_end,
             f"s.circle_id = {circle} AND CAST(s.cuisines AS jsonb) @> '[\"{cuisine}\"]'"),
        View("store-year", f"{rng(year_start, sh.last_day)}&store={store}", year_start, sh.last_day,
             f"s.id = {store} AND r.store_id = {store}"),
    ]


def raw_count_sql(v: View) -> str:
    return ("SELECT count(*) FROM redemptions r JOIN stores s ON s.id = r.store_id"
            f" WHERE r.redeemed_at >= {ts(local_midnight(v.start))}"
            f" AND r.redeemed_at < {ts(local_midnight(v.end + timedelta(days=1)))} AND {v.scope_sql}")


def reversals_in(v: View) -> str:
    """Reversals in the range and scope (on the reversal's day): the page shows redemptions net of them."""
    return ("SELECT count(*) FROM redemption_reversals rv JOIN redemptions r ON r.id = rv.redemption_id"
            " JOIN stores s ON s.id = r.store_id"
            f" WHERE rv.reversed_at >= {ts(local_midnight(v.start))}"
            f" AND rv.reversed_at < {ts(local_midnight(v.end + timedelta(days=1)))} AND {v.scope_sql}")


def raw_count(v: View, runs: int = 5) -> tuple[float, int, str]:
    """Median ms of ``runs`` warm counts, the count net of reversals (what the page must
    show; not timed), and the indexes the count's plan uses."""
    sql = raw_count_sql(v)
    with db.engine.connect() as conn:
        n = run_sql(conn, sql).scalar_one() - run_sql(conn, reversals_in(v)).scalar_one()  # and warm-up
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            run_sql(conn, sql).scalar_one()
            times.append((time.perf_counter() - t0) * 1000)
        plan = "\n".join(row[0] for row in run_sql(conn, "EXPLAIN " + sql))
    used = sorted(set(re.findall(r"(?:Index|Index Only|Bitmap Index) Scan (?:using |on )(\w+)", plan)))
    return statistics.median(times), n, ", ".join(used) or "no index"


def login(client, username: str) -> None:
    page = client.get("/auth/login")
    token = _TOKEN_RE.search(page.get_data(as_text=True))
    resp = client.post("/auth/login", data={"username": username, "password": PASSWORD,
                                            "csrf_token": token.group(1) if token else ""})
    if resp.status_code != 302:
        raise SystemExit(f"login as {username} failed: {resp.status_code}")


def load(client, v: View) -> tuple[float, int]:
    t0 = time.perf_counter()
    resp = client.get(f"/stats/?{v.query}")
    elapsed = (time.perf_counter() - t0) * 1000
    html = resp.get_data(as_text=True)
    match = _KPI_RE.search(html)
    if resp.status_code != 200 or not match or int(match.group(1)) <= 0:
        raise SystemExit(f"{v.name}: status {resp.status_code}, redeemed {match.group(1) if match else '?'}")
    return elapsed, int(match.group(1))


class Statements:
    """Every SQL statement of one page load, timed (the driver's round trip)."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, str, object]] = []

    def _before(self, conn, _cursor, _statement, _parameters, _context, _many):
        conn.info["bench_t0"] = time.perf_counter()

    def _after(self, conn, _cursor, statement, parameters, _context, _many):
        self.rows.append(((time.perf_counter() - conn.info.pop("bench_t0")) * 1000, statement, parameters))

    def __enter__(self):
        event.listen(db.engine, "before_cursor_execute", self._before)
        event.listen(db.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc):
        event.remove(db.engine, "before_cursor_execute", self._before)
        event.remove(db.engine, "after_cursor_execute", self._after)


def profile(app, client, v: View, explain: bool) -> dict:
    with Statements() as st:
        elapsed, _n = load(client, v)
    sql_ms = sum(ms for ms, _s, _p in st.rows)
    print(f"  {v.name}: one load {elapsed:.1f} ms, {len(st.rows)} statements, {sql_ms:.1f} ms in SQL; slowest:")
    slowest = sorted(st.rows, key=lambda row: -row[0])[:3]
    for ms, statement, _params in slowest:
        print(f"    {ms:7.1f} ms  {' '.join(statement.split())[:150]}")
    if explain:
        with app.app_context(), db.engine.connect() as conn:
            for ms, statement, params in slowest[:2]:
                print(f"    --- EXPLAIN ANALYZE of the {ms:.1f} ms statement:")
                for (line,) in conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params):
                    print("      " + line)
    return {"statements": len(st.rows), "sql_ms": round(sql_ms, 1)}


def try_indexes(statements: list[str]) -> list[str]:
    """Create the proposed indexes (and refresh the statistics): their names, to drop after."""
    names = []
    with db.engine.connect() as conn:
        for sql in statements:
            match = re.match(r"\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(\w+)\s", sql, re.I)
            if not match:
                raise SystemExit(f"--try-index: not a CREATE INDEX name …: {sql!r}")
            t0 = time.perf_counter()
            run_sql(conn, sql)
            conn.commit()
            names.append(match.group(1))
            print(f"  tried index {match.group(1)} built in {time.perf_counter() - t0:.1f} s", flush=True)
    if names:
        vacuum_analyze("stat_daily")
    return names


def drop_indexes(names: list[str]) -> None:
    with db.engine.connect() as conn:
        for name in names:
            run_sql(conn, f'DROP INDEX "{name}"')
        conn.commit()


def percentile(sorted_ms: list[float], p: float) -> float:
    return sorted_ms[max(0, math.ceil(len(sorted_ms) * p) - 1)]


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redemptions", type=int, default=10_000_000)
    parser.add_argument("--stores", type=int, default=2000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--loads", type=int, default=50, help="page loads per view")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--reuse", action="store_true", help="time the rows an earlier run seeded (same options)")
    parser.add_argument("--views-only", action="store_true",
                        help="with --reuse: time the pages only (no new day, no rebuild: the rollups as left)")
    parser.add_argument("--keep-indexes", action="store_true",
                        help="load with every index and key in place (default: drop, load, recreate them)")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE a page's slowest statements")
    parser.add_argument("--try-index", action="append", default=[], metavar="SQL",
                        help='time the pages with "CREATE INDEX name ON stat_daily …" in place, then drop it'
                             ' (repeatable)')
    args = parser.parse_args()
    if not (args.database_url or "").startswith("postgresql"):
        raise SystemExit("bench/stats.py needs PostgreSQL: set BENCH_DATABASE_URL=postgresql+psycopg://… (its schema"
                         " is emptied). SQLite is not a target for ten million rows.")
    if args.stores < CIRCLES or args.days < 31 or args.redemptions < 4 * args.days:
        raise SystemExit(f"--stores at least {CIRCLES}, --days at least 31, --redemptions at least 4 × --days")
    if args.views_only and not args.reuse:
        raise SystemExit("--views-only needs --reuse")

    summary: dict = {"redemptions": args.redemptions, "stores": args.stores, "days": args.days}
    with bench_app(args.database_url, None, fresh=not args.reuse) as app:
        with app.app_context():
            sh = prepare(args, summary)
            if not args.views_only:
                summary.update(rollups(sh))
            else:
                summary.update(rebuild_s=None, catch_up_s=None,
                               rollup_rows=db.session.scalar(select(func.count()).select_from(DailyStat)))
            with transaction(db.session) as session:
                if not session.scalar(select(func.count()).select_from(User).where(User.username == MANAGER)):
                    create_manager(session, username=MANAGER, password=PASSWORD, region_ids=[DISTRICT0])
            db.session.remove()
            tried = try_indexes(args.try_index)
        load_before = os.getloadavg()[0]
        try:
            results = measure(app, sh, args)
        finally:
            drop_indexes(tried)
        # the machine's other work shows in the page times: the 1-minute load around them
        summary["load_avg"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    if tried:
        summary["tried_indexes"] = args.try_index

    print(f"\n{'view':<16}{'range':<27}{'redeemed':>11}{'p50 ms':>9}{'p95 ms':>9}{'raw count ms':>14}{'ratio':>8}"
          f"{'SQL':>12}")
    for name, r in results.items():
        print(f"{name:<16}{r['range']:<27}{r['redeemed']:>11,}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}"
              f"{r['raw_count_ms']:>14.2f}{r['ratio']:>8.2f}{r['statements']:>5} {r['sql_ms']:>5.0f}ms")
        print(f"{'':<16}raw count via: {r['raw_count_indexes']}")
    met = all(r["p95_ms"] < 100 and r["ratio"] is not None and r["ratio"] <= 0.1 for r in results.values())
    print(f"targets (p95 < 100 ms and ≤ 0.1 × the raw count, every view): {'met' if met else 'MISSED'}"
          f" (load average {summary['load_avg'][0]} → {summary['load_avg'][1]} on {os.cpu_count()} cores)")
    summary["views"] = results
    summary["targets_met"] = met
    print(json.dumps(summary, ensure_ascii=False))


def prepare(args, summary: dict) -> Shape:
    """Seed the history, or (--reuse) find it and forget the extra day an earlier run wrote."""
    if args.reuse:
        sh = seeded_shape(args)
        if not args.views_only:
            forget_new_day(sh)
        summary["seed_s"] = 0.0
        return sh
    today = local(datetime.now(timezone.utc)).date()
    sh = Shape(args.redemptions, args.stores, args.days, today - timedelta(days=args.days))
    print(f"seeding {sh.redemptions:,} redemptions, {sh.coupons:,} coupons, {sh.residents:,} residents,"
          f" {sh.stores:,} stores of {sh.merchants:,} merchants, {sh.days} days ({sh.first_day} – {sh.last_day}) …",
          flush=True)
    timings = seed(sh, args.keep_indexes)
    summary["seed_s"] = round(sum(timings.values()), 1)
    summary["seed_tables_s"] = {k: round(v, 1) for k, v in timings.items()}
    print(f"  seeded in {summary['seed_s']:.1f} s", flush=True)
    return sh


def rollups(sh: Shape) -> dict:
    """A rebuild of the whole history, timed; then one more day with its tallies and the
    roll-up job's catch-up, timed, checked against a rebuild of that day."""
    print(f"rebuilding the rollups from {sh.first_day} …", flush=True)
    t0 = time.perf_counter()
    rollup.rebuild_in(db.session.session_factory, sh.first_day)
    rebuild_s = time.perf_counter() - t0
    rows = db.session.scalar(select(func.count()).select_from(DailyStat))
    db.session.remove()
    print(f"  {rebuild_s:.1f} s → {rows:,} rollup rows", flush=True)
    vacuum_analyze("stat_daily")  # what autovacuum does after a rebuild, not timed

    print(f"writing {sh.new_day} (one more day) with its tallies …", flush=True)
    wrote = write_new_day(sh)
    print(f"  {wrote['coupons']:,} coupons, {wrote['redemptions']:,} redemptions,"
          f" {wrote['redemption_reversals']:,} reversals, {wrote['residents']:,} new contacts"
          f" → {wrote['stat_tallies']:,} tallies in {wrote['write_s']:.1f} s", flush=True)
    t0 = time.perf_counter()
    moved = stats_jobs.roll_up()
    catch_up_s = time.perf_counter() - t0
    left = db.session.scalar(text("SELECT count(*) FROM stat_tallies"))
    db.session.remove()
    print(f"  roll-up job: {moved:,} tallies in {catch_up_s:.2f} s ({left} left)", flush=True)
    rolled = day_sums(sh.new_day)
    db.session.remove()
    rollup.rebuild_in(db.session.session_factory, sh.new_day)
    rebuilt = day_sums(sh.new_day)
    db.session.remove()
    if rolled != rebuilt or left:
        raise SystemExit(f"the tallies' rollups of {sh.new_day} differ from a rebuild:\n{rolled}\n{rebuilt}")
    print(f"  the day's {rolled[0]:,} rollup rows equal a rebuild of it", flush=True)
    return {"rebuild_s": round(rebuild_s, 1), "catch_up_s": round(catch_up_s, 2), "catch_up_tallies": moved,
            "rollup_rows": rows, "new_day_write_s": round(wrote["write_s"], 1)}


def measure(app, sh: Shape, args) -> dict:
    """The pages' server time, their statements, and the raw counts beside them."""
    # the requests push their own app contexts, as in production: a fresh session and
    # user per request (none pushed here, so nothing is shared between loads)
    client = app.test_client()
    login(client, MANAGER)
    gc.collect()
    gc.freeze()  # as the web process does (marketplace/wsgi.py): the app's own objects out of the GC's walk
    results: dict = {}
    print(f"dashboard, {args.loads} loads per view, as a manager of 区1 …", flush=True)
    for v in views(sh):
        for _ in range(2):  # warm-up, not counted
            load(client, v)
        times, shown = [], 0
        for _ in range(args.loads):
            ms, shown = load(client, v)
            times.append(ms)
        times.sort()
        results[v.name] = {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(percentile(times, 0.95), 1),
                           "redeemed": shown, "range": f"{v.start} – {v.end}"}
    print("statements of one load per view:", flush=True)
    for v in views(sh):
        results[v.name].update(profile(app, client, v, args.explain))
    with app.app_context():
        for v in views(sh):
            raw_ms, n, used = raw_count(v)
            r = results[v.name]
            if n != r["redeemed"]:
                raise SystemExit(f"{v.name}: the page shows {r['redeemed']:,} redeemed (net), the raw tables {n:,}")
            r.update(raw_count_ms=round(raw_ms, 2), ratio=round(r["p95_ms"] / raw_ms, 2) if raw_ms else None,
                     raw_count_indexes=used)
        db.session.remove()
    return results


if __name__ == "__main__":
    main()
