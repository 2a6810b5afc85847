"""The welcome under a burst: N diners scan one store's code at R per second, through the
stack ``linli run`` starts (gunicorn, the RQ workers, the clock, the embedded Redis, the WeCom
simulator), and WeCom's own record says who was welcomed in time.

WeCom's welcome code lives 20 seconds and works once. The simulator creates the code when the
diner scans and stamps it when ``send_welcome_msg`` uses it, so the latency printed is from the
event's creation (WeCom's side) to the welcome (WeCom's side): the callback's trip, the web
process, the queue and the job. Afterwards it checks that nothing was lost or done twice (one
resident, one open relationship, one welcome coupon and one welcome message per diner, every
event ``done``) and waits for the corp tags, which follow on the lower queue.

    .venv/bin/python bench/welcome_bench.py --adds 200 --rate 20           # default stack
    .venv/bin/python bench/welcome_bench.py --adds 200 --rate 20 --workers 1
    BENCH_DATABASE_URL=postgresql+psycopg://… .venv/bin/python bench/welcome_bench.py

The last line is a JSON summary.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from redis import Redis
from rq import Worker
from sqlalchemy import bindparam, create_engine, text

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 20.0  # WeCom's welcome code lifetime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; ``inf`` entries (never welcomed) count as slowest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class Stack:
    """``linli run`` in a temp instance, on free ports."""

    def __init__(self, tmp: Path, database_url: str | None, workers: int | None) -> None:
        self.port, self.sim_port = free_port(), free_port()
        self.app_url = f"http://127.0.0.1:{self.port}"
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("LINLI_", "WECOM_", "REDIS_URL"))}
        self.env.update(INSTANCE_PATH=str(tmp / "instance"), PYTHONUNBUFFERED="1")
        self.env["DATABASE_URL"] = database_url or f"sqlite:///{tmp / 'instance' / 'linli.db'}"
        if workers is not None:
            self.env["LINLI_WORKERS"] = str(workers)
        self.log_path = tmp / "run.log"
        self.process: subprocess.Popen | None = None
        self.redis_url: str | None = None

    def start(self) -> None:
        linli = [sys.executable, "-m", "marketplace.cli"]
        subprocess.run(linli + ["db", "upgrade"], env=self.env, cwd=ROOT, check=True, capture_output=True)
        self._log = open(self.log_path, "w", encoding="utf-8")
        self.process = subprocess.Popen(
            linli + ["run", "--port", str(self.port), "--sim-port", str(self.sim_port)],
            env=self.env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"linli run exited ({self.process.returncode}); see {self.log_path}")
            found = re.search(r"Redis\s+((?:redis|unix)://\S+)", self.log_path.read_text(encoding="utf-8"))
            if found:
                self.redis_url = found.group(1)
                return
            time.sleep(0.3)
        raise SystemExit(f"linli run did not start in 120 s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(2)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adds", type=int, default=200, help="diners who scan (default 200)")
    parser.add_argument("--rate", type=float, default=20.0, help="scans per second (default 20)")
    parser.add_argument("--workers", type=int, default=None,
                        help="LINLI_WORKERS for the stack (default: the stack's own default)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"),
                        help="default: a SQLite file in the temp instance (a PostgreSQL database is emptied!)")
    parser.add_argument("--tag-wait", type=float, default=300.0, help="seconds to wait for the corp tags")
    parser.add_argument("--keep", action="store_true", help="keep the temp instance and print its path")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="linli-welcome-bench-"))
    if args.database_url:
        engine = create_engine(args.database_url)
        with engine.begin() as conn:  # a clean schema: the bench counts rows
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()
    stack = Stack(tmp, args.database_url, args.workers)
    stack.start()
    try:
        summary = run(stack, args)
    finally:
        stack.stop()
    if args.keep:
        print(f"instance kept at {tmp}")
    print(json.dumps(summary))


def run(stack: Stack, args) -> dict:
    http = httpx.Client(timeout=30)
    engine = create_engine(stack.env["DATABASE_URL"])
    channel = None
    deadline = time.monotonic() + 60
    while channel is None and time.monotonic() < deadline:  # the demo seed writes the channels
        with engine.connect() as conn:
            channel = conn.execute(text(
                "SELECT c.config_id, s.name FROM channels c JOIN stores s ON s.id = c.store_id "
                "WHERE c.active AND c.config_id IS NOT NULL AND s.welcome_template_id IS NOT NULL "
                "ORDER BY c.id LIMIT 1"
            )).first()
        time.sleep(0.5)
    if channel is None:
        raise SystemExit("no demo channel with a welcome coupon appeared")
    config_id, store_name = channel
    workers = _worker_count(stack)

    run_id = secrets.token_hex(3)
    handles = [f"bench{run_id}_{i:05d}" for i in range(args.adds)]
    made = http.post(f"{stack.sim_url}/sim/admin/wechat_users", json={"handles": handles}).json()
    externals = made["external_userids"]
    print(f"stack: {workers} high-queue worker(s); {args.adds} diners scan {store_name}'s code at {args.rate:g}/s")

    t0 = time.time() + 1.0
    errors: list[str] = []

    def scan(i: int) -> None:
        delay = t0 + i / args.rate - time.time()
        if delay > 0:
            time.sleep(delay)
        response = http.post(f"{stack.sim_url}/sim/admin/scan", json={"wechat_user": handles[i], "config_id": config_id})
        if response.status_code != 200 or not response.json().get("added"):
            errors.append(f"{handles[i]}: {response.status_code} {response.text[:200]}")

    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(scan, range(args.adds)))
    scans_done = time.time()
    if errors:
        print(f"{len(errors)} scans failed, e.g. {errors[0]}")

    ours = set(externals.values())

    def codes() -> list[dict]:
        rows = http.get(f"{stack.sim_url}/sim/admin/welcome_codes", params={"since": t0 - 5}).json()["welcome_codes"]
        return [c for c in rows if c["external_userid"] in ours]

    while True:  # every code used, or every unused one past its lifetime
        rows = codes()
        pending = [c for c in rows if c["used_at"] is None and time.time() - c["created_at"] < WINDOW + 2]
        if not pending and len(rows) >= args.adds - len(errors):
            break
        time.sleep(0.5)
    latencies = [(c["used_at"] - c["created_at"]) if c["used_at"] is not None else math.inf for c in rows]
    welcomed = sum(1 for v in latencies if v <= WINDOW)
    p50, p95, worst = (percentile(latencies, q) for q in (0.50, 0.95, 1.0))

    def show(v: float) -> str:
        return f"{v:.2f} s" if math.isfinite(v) else "never"

    print(f"welcomed inside {WINDOW:.0f} s: {welcomed}/{args.adds}")
    print(f"creation → send_welcome_msg: p50 {show(p50)}, p95 {show(p95)}, max {show(worst)}")
    print(f"scans took {scans_done - t0:.1f} s (asked {args.adds / args.rate:.1f} s)")

    # Nothing lost, nothing twice: once the events are done, count rows per diner.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            open_events = conn.execute(text(
                "SELECT count(*) FROM wecom_events WHERE status <> 'done'")).scalar_one()
        if open_events == 0:
            break
        time.sleep(0.5)
    checks = _integrity(engine, ours, http, stack, handles)
    for name, value in checks.items():
        print(f"  {name}: {value}")

    tag_start = time.time()
    tagged = 0
    while time.time() - tag_start < args.tag_wait:
        contacts = http.get(f"{stack.sim_url}/sim/admin/contacts").json()["contacts"]
        tagged = sum(1 for c in contacts if c["external_userid"] in ours and c["tag_ids"])
        if tagged >= len(ours):
            break
        time.sleep(1.0)
    tags_s = time.time() - t0
    print(f"corp tags on {tagged}/{len(ours)} contacts, {tags_s:.0f} s after the first scan")

    with engine.connect() as conn:
        signals = conn.execute(text(
            "SELECT count(DISTINCT r.id) FROM residents r JOIN taste_signals t ON t.resident_id = r.id "
            "WHERE r.external_userid IN :ids").bindparams(_expanding("ids")), {"ids": list(ours)}).scalar_one()
    print(f"taste signals for {signals}/{len(ours)} residents")
    engine.dispose()
    return {
        "adds": args.adds, "rate": args.rate, "workers": workers, "database": engine.dialect.name,
        "welcomed_in_window": welcomed, "p50_s": _num(p50), "p95_s": _num(p95), "max_s": _num(worst),
        "scan_errors": len(errors), **checks, "tagged": tagged, "tags_done_s": round(tags_s, 1),
        "taste_signals": signals,
    }


def _expanding(name: str):
    return bindparam(name, expanding=True)


def _num(value: float) -> float | None:
    return round(value, 3) if math.isfinite(value) else None


def _worker_count(stack: Stack) -> int:
    """High-queue workers registered in Redis (what the stack really runs)."""
    deadline = time.monotonic() + 30
    count = 0
    while time.monotonic() < deadline:
        workers = Worker.all(connection=Redis.from_url(stack.redis_url))
        count = sum(1 for w in workers if "high" in w.queue_names())
        if count:
            break
        time.sleep(0.5)
    return count


def _integrity(engine, ours: set[str], http: httpx.Client, stack: Stack, handles: list[str]) -> dict:
    ids = list(ours)
    with engine.connect() as conn:
        def one(sql: str) -> int:
            return conn.execute(text(sql).bindparams(_expanding("ids")), {"ids": ids}).scalar_one()

        residents = one("SELECT count(*) FROM residents WHERE external_userid IN :ids")
        relationships = one(
            "SELECT count(*) FROM contact_relationships c JOIN residents r ON r.id = c.resident_id "
            "WHERE r.external_userid IN :ids AND c.status = 'open'")
        coupons = one(
            "SELECT count(*) FROM coupons c JOIN residents r ON r.id = c.resident_id WHERE r.external_userid IN :ids")
        diners_with_coupon = one(
            "SELECT count(DISTINCT c.resident_id) FROM coupons c JOIN residents r ON r.id = c.resident_id "
            "WHERE r.external_userid IN :ids")
        not_done = conn.execute(text("SELECT count(*) FROM wecom_events WHERE status <> 'done'")).scalar_one()
    welcome_messages = welcome_cards = 0
    for handle in handles:
        messages = http.get(f"{stack.sim_url}/sim/admin/inbox/{handle}").json().get("messages", [])
        welcome_messages += sum(1 for m in messages if m.get("source") == "welcome" and m.get("msgtype") == "text")
        welcome_cards += sum(1 for m in messages if m.get("source") == "welcome" and m.get("msgtype") == "link")
    return {"residents": residents, "open_relationships": relationships, "coupons": coupons,
            "diners_with_coupon": diners_with_coupon, "welcome_messages": welcome_messages, "welcome_cards": welcome_cards,
            "events_not_done": not_done}


if __name__ == "__main__":
    main()
