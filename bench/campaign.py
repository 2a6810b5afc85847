"""A campaign round on a big neighbourhood: audience, plan, ledger and dispatch, timed.

Seeds N residents (``--residents``, default 1,000,000) as ``bench/audience_bench.py`` does
(taste profiles, 200 members, 2,000 stores in 40 circles, exclusions, an earlier message
this month for 1 in 5), then 20 overlapping campaigns — 18 merchants' (each over its own 5
stores) and 2 regional ones (every circle: 川菜 lovers, and 火锅 or 烧烤 lovers) — due
together, so one round plans them all. The round is planned by a child process (the plan
job's loop: ``planning.plan_batch``), its chunks sent by another (``campaigns.jobs.send_chunk``)
to a stand-in for WeCom that only answers (``gettoken``, ``add_msg_template``); each child
reports its phases and its own peak RSS.

Beside them, the same database's own ``INSERT INTO … SELECT`` of the same audiences (each
campaign's audience query, every matched resident with its reason) into a table shaped like
the decision ledger; ``ratio`` = (plan + ledger) / that.

    BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:55432/linli_bench \\
      .venv/bin/python bench/campaign.py --residents 1000000
    .venv/bin/python bench/campaign.py --residents 100000          # SQLite

Targets (issue 10): plan + ledger within 2× the INSERT…SELECT; peak RSS of the worker under
150 MB at 1,000,000 residents; WeCom calls equal to the minimum. The last line is JSON.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flask import Flask, jsonify, request  # noqa: E402
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, func, insert, select, text  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from bench.audience_bench import seed  # noqa: E402
from bench.common import bench_app  # noqa: E402
from campaigns import jobs  # noqa: E402
from campaigns.models import (  # noqa: E402
    Campaign,
    CampaignState,
    CampaignTemplate,
    Channels,
    ChunkState,
    Delivery,
    PlanRound,
    Push,
    SendChunk,
)
from campaigns.services import audience, dispatch, planning  # noqa: E402
from core.db import db  # noqa: E402
from core.txn import transaction  # noqa: E402
from coupons.models import CouponKind, CouponTemplate, TemplateStatus  # noqa: E402

MERCHANT_CAMPAIGNS, REGION_CAMPAIGNS = 18, 2


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# --------------------------------------------------------------------------- WeCom stand-in


class StandIn:
    """Answers like WeCom and does nothing else: counts calls and recipients."""

    def __init__(self) -> None:
        self.calls = 0
        self.recipients = 0
        self.busy_s = 0.0
        self._lock = threading.Lock()
        app = Flask("wecom-stand-in")

        @app.route("/cgi-bin/gettoken")
        def gettoken():
            return jsonify({"errcode": 0, "errmsg": "ok", "access_token": "stand-in", "expires_in": 7200})

        @app.post("/cgi-bin/externalcontact/add_msg_template")
        def add_msg_template():
            t0 = time.perf_counter()
            body = request.get_json(force=True)
            with self._lock:
                self.calls += 1
                self.recipients += len(body.get("external_userid") or [])
                n = self.calls
                self.busy_s += time.perf_counter() - t0
            return jsonify({"errcode": 0, "errmsg": "ok", "fail_list": [], "msgid": f"msgSTANDIN{n:08d}"})

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/cgi-bin/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


# --------------------------------------------------------------------------- children


def child_plan(round_id: int, batch: int) -> dict:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    batches, cache = 0, {}
    while True:
        with transaction(db.session) as session:
            done = planning.plan_batch(session, round_id, datetime.now(timezone.utc), timings, batch=batch,
                                       cache=cache)
        db.session.remove()
        batches += 1
        if done:
            break
    return {"walk_s": time.perf_counter() - t0, "batches": batches, **{f"{k}_s": v for k, v in timings.items()},
            "rss_mb": _rss_mb()}


def child_send() -> dict:
    t0 = time.perf_counter()
    sent = 0
    while True:
        with transaction(db.session) as session:
            due = dispatch.due_chunks(session, datetime.now(timezone.utc), limit=1000)
        if not due:
            break
        for chunk_id in due:
            jobs.send_chunk(chunk_id)
            db.session.remove()
            sent += 1
    return {"dispatch_s": time.perf_counter() - t0, "chunks": sent, "rss_mb": _rss_mb()}


def run_child(args, *extra: str) -> dict:
    cmd = [sys.executable, __file__, "--residents", str(args.residents), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "BENCH_CHILD": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"child {extra} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the round


def make_campaigns(now: datetime) -> list[int]:
    session = db.session
    merchants = session.execute(text("SELECT id FROM merchants ORDER BY id")).scalars().all()
    region = session.execute(text("SELECT min(id) FROM regions")).scalar_one()
    templates = []
    for merchant_id in merchants[:MERCHANT_CAMPAIGNS + 1]:
        t = CouponTemplate(merchant_id=merchant_id, name="满100减20", kind=CouponKind.amount_off, value=2000,
                           min_spend_fen=10000, valid_days=30, total_stock=None, per_diner_limit=1,
                           status=TemplateStatus.active)
        session.add(t)
        templates.append(t)
    session.flush()
    platform = templates[-1]
    window = dict(send_from=now - timedelta(minutes=1), send_until=now + timedelta(days=2), message="本周优惠",
                  reason="你常去附近的店", channels=Channels.private, quiet_start=0, quiet_end=0,
                  state=CampaignState.scheduled)
    campaigns = [Campaign(merchant_id=merchants[i], name=f"商户{i}", audience={}, **window)
                 for i in range(MERCHANT_CAMPAIGNS)]
    campaigns += [
        Campaign(region_id=region, name="全区川菜", audience={"cuisines": ["sichuan"]}, **window),
        Campaign(region_id=region, name="全区火锅烧烤", audience={"cuisines": ["hotpot", "bbq"]}, **window),
    ]
    session.add_all(campaigns)
    session.flush()
    for i, c in enumerate(campaigns):
        session.add(CampaignTemplate(campaign_id=c.id, template_id=(templates[i] if i < MERCHANT_CAMPAIGNS
                                                                     else platform).id, position=0))
    session.flush()
    return [c.id for c in campaigns]


def insert_select(campaign_ids: list[int], now: datetime) -> float:
    """The database's own INSERT … SELECT of every campaign's audience (id, reason) into a
    table shaped like the decision ledger."""
    session = db.session
    dialect = db.engine.dialect.name
    pk = "serial PRIMARY KEY" if dialect == "postgresql" else "INTEGER PRIMARY KEY"
    with transaction(session):
        session.execute(text("DROP TABLE IF EXISTS bench_ledger"))
        session.execute(text(f"CREATE TABLE bench_ledger (id {pk}, campaign_id integer NOT NULL, resident_id integer,"
                             " decision varchar(16) NOT NULL, delivery_id integer, score float NOT NULL,"
                             " created_at varchar(40), UNIQUE (campaign_id, resident_id))"))
    table = Table("bench_ledger", MetaData(), Column("id", Integer, primary_key=True), Column("campaign_id", Integer),
                  Column("resident_id", Integer), Column("decision", String), Column("delivery_id", Integer),
                  Column("score", Float), Column("created_at", String))
    t0 = time.perf_counter()
    with transaction(session):
        audience.tune_for_counting(session)
        for campaign_id in campaign_ids:
            campaign = session.get(Campaign, campaign_id)
            source = audience.classified(session, campaign, now).subquery()
            session.execute(insert(table).from_select(
                ["campaign_id", "resident_id", "decision", "score", "created_at"],
                select(func.cast(campaign_id, Integer), source.c.resident_id, source.c.reason, func.cast(0.0, Float),
                       func.cast(now.isoformat(), String))))
    elapsed = time.perf_counter() - t0
    with transaction(session):
        session.execute(text("DROP TABLE bench_ledger"))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--residents", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--batch", type=int, default=planning.BATCH, help="resident ids per plan batch")
    parser.add_argument("--child", choices=["plan", "send"], help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    parser.add_argument("--wecom", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        config = {"WECOM_API_BASE": args.wecom} if args.wecom else {}
        with bench_app(args.database_url, args.redis_url, fresh=False, **config) as app, app.app_context():
            result = child_plan(args.round, args.batch) if args.child == "plan" else child_send()
        print(json.dumps(result))
        return

    if not args.database_url:  # the children must find the same SQLite file
        args.database_url = f"sqlite:///{Path('/tmp') / f'linli-campaign-bench-{os.getpid()}.db'}"
    stand_in = StandIn()
    with bench_app(args.database_url, None, fresh=True, WECOM_API_BASE=stand_in.url) as app, app.app_context():
        dialect = db.engine.dialect.name
        print(f"seeding {args.residents:,} residents on {dialect} …", flush=True)
        info = seed(args.residents)
        now = info["now"]
        print(f"  seeded in {info['seed_s']:.1f} s", flush=True)
        with transaction(db.session):
            campaign_ids = make_campaigns(now)
            round_ = planning.open_round(db.session, now)
            round_id = round_.id
        redis_url = app.config["REDIS_URL"]
        common = ["--database-url", args.database_url, "--redis-url", redis_url]

        print(f"planning {len(campaign_ids)} campaigns in round {round_id} …", flush=True)
        plan = run_child(args, "--child", "plan", "--round", str(round_id), "--batch", str(args.batch), *common)
        db.session.remove()
        pushes = db.session.scalar(select(func.count()).select_from(Push))
        deliveries = db.session.scalar(select(func.count()).select_from(Delivery)
                                       .join(SendChunk, SendChunk.id == Delivery.chunk_id)
                                       .where(SendChunk.round_id == round_id))
        chunks = db.session.scalar(select(func.count()).select_from(SendChunk).where(SendChunk.round_id == round_id))
        min_calls = db.session.scalar(select(PlanRound.min_calls).where(PlanRound.id == round_id))
        states = dict(db.session.execute(select(Campaign.state, func.count()).group_by(Campaign.state)).all())
        print(f"  walk {plan['walk_s']:.1f} s in {plan['batches']} batches: setup {plan.get('setup_s', 0):.1f} s,"
              f" audience {plan.get('audience_s', 0):.1f} s, scores {plan.get('scores_s', 0):.1f} s,"
              f" plan {plan.get('plan_s', 0):.1f} s, ledger {plan.get('ledger_s', 0):.1f} s;"
              f" {pushes:,} decisions, {deliveries:,} messages in {chunks:,} chunks; peak RSS {plan['rss_mb']:.0f} MB")

        print("dispatching to the stand-in …", flush=True)
        send = run_child(args, "--child", "send", "--wecom", stand_in.url, *common)
        db.session.remove()
        submitted = db.session.scalar(select(func.count()).select_from(SendChunk)
                                      .where(SendChunk.state == ChunkState.submitted))
        print(f"  {send['chunks']:,} chunks in {send['dispatch_s']:.1f} s ({stand_in.calls:,} calls,"
              f" {stand_in.recipients:,} recipients; the stand-in's own time {stand_in.busy_s:.1f} s);"
              f" submitted {submitted:,}; peak RSS {send['rss_mb']:.0f} MB")

        print("the database's own INSERT … SELECT of the same audiences …", flush=True)
        baseline = insert_select(campaign_ids, now)
        plan_s = sum(plan.get(f"{k}_s", 0.0) for k in ("setup", "audience", "scores", "plan"))
        ledger_s = plan.get("ledger_s", 0.0)
        ratio = (plan_s + ledger_s) / baseline if baseline else None
        rate = args.residents / plan["walk_s"] if plan["walk_s"] else 0
        print(f"  {baseline:.1f} s; (plan + ledger) / INSERT…SELECT = {ratio:.2f} (target ≤ 2)")
        print(f"  residents/s through the walk: {rate:,.0f}; calls {stand_in.calls} vs minimum {min_calls}")
        summary = {
            "residents": args.residents, "database": dialect, "campaigns": len(campaign_ids),
            "audience_s": round(plan.get("audience_s", 0.0), 2), "plan_s": round(plan_s, 2),
            "ledger_s": round(ledger_s, 2), "walk_s": round(plan["walk_s"], 2),
            "dispatch_s": round(send["dispatch_s"], 2), "insert_select_s": round(baseline, 2),
            "ratio": round(ratio, 2) if ratio else None, "residents_per_s": round(rate),
            "peak_rss_mb": round(max(plan["rss_mb"], send["rss_mb"]), 1), "plan_rss_mb": round(plan["rss_mb"], 1),
            "send_rss_mb": round(send["rss_mb"], 1), "decisions": pushes, "messages": deliveries, "chunks": chunks,
            "wecom_calls": stand_in.calls, "wecom_calls_min": min_calls, "wecom_stand_in_s": round(stand_in.busy_s, 2),
            "states": {k.value: v for k, v in states.items()}, "seed_s": round(info["seed_s"], 1),
        }
    if args.database_url.startswith("sqlite:///"):
        Path(args.database_url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    main()
