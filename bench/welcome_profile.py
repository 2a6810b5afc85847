"""Where the time of one add event goes: WeCom calls, SQL statements, the follow-up jobs and
RQ's fork per job, measured in one process against the WeCom simulator over real HTTP.

K diners scan a demo store's code in the simulator; each add event is stored as the callback
receiver would (``record``) and its ``high``-queue job runs in this process (``SimpleWorker``,
burst), with every HTTP request to WeCom and every SQL statement timed. The follow-up jobs
(``default``: taste signals, channel counters, corp tags) run next, measured the same way.
Last, the same number of trivial jobs through a forking ``Worker`` and a ``SimpleWorker``
shows what the fork per job costs with the app loaded.

    .venv/bin/python bench/welcome_profile.py --events 100

The last line is a JSON summary.
"""
from __future__ import annotations

import argparse
import json
import logging
import secrets
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from rq import SimpleWorker, Worker  # noqa: E402
from sqlalchemy import event, select  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from bench.common import bench_app  # noqa: E402
from core.db import db  # noqa: E402
from core.extensions import QUEUE_DEFAULT, QUEUE_HIGH, enqueue, get_queue  # noqa: E402
from core.inbox.jobs import process_event  # noqa: E402
from core.inbox.services import record  # noqa: E402
from core.txn import transaction  # noqa: E402
from marketplace.demo import seed_demo  # noqa: E402
from marketplace.worker import make_worker  # noqa: E402
from merchants.models import Channel, Store  # noqa: E402
from wecom.simulator import create_simulator_app  # noqa: E402


class Meter:
    """Counts and times HTTP requests (by WeCom path) and SQL statements while ``on``."""

    def __init__(self) -> None:
        self.on = False
        self.http: dict[str, list[float]] = defaultdict(list)
        self.sql_count = 0
        self.sql_time = 0.0
        self._starts: dict[int, float] = {}

    def reset(self) -> None:
        self.http.clear()
        self.sql_count, self.sql_time = 0, 0.0

    def wrap_httpx(self) -> None:
        original = httpx.Client.send
        meter = self

        def send(client, request, **kwargs):
            start = time.perf_counter()
            try:
                return original(client, request, **kwargs)
            finally:
                if meter.on:
                    path = request.url.path.split("/cgi-bin/")[-1]
                    meter.http[path].append(time.perf_counter() - start)

        httpx.Client.send = send

    def watch(self, engine) -> None:
        @event.listens_for(engine, "before_cursor_execute")
        def _before(conn, cursor, statement, params, context, executemany):  # noqa: ARG001
            self._starts[id(cursor)] = time.perf_counter()

        @event.listens_for(engine, "after_cursor_execute")
        def _after(conn, cursor, statement, params, context, executemany):  # noqa: ARG001
            start = self._starts.pop(id(cursor), None)
            if self.on and start is not None:
                self.sql_count += 1
                self.sql_time += time.perf_counter() - start

    def report(self, label: str, n: int, wall: float) -> dict:
        http_time = sum(sum(v) for v in self.http.values())
        print(f"{label}: {wall / n * 1000:.1f} ms per event ({n} in {wall:.2f} s)")
        print(f"  SQL       {self.sql_count / n:5.1f} statements, {self.sql_time / n * 1000:6.1f} ms per event")
        print(f"  WeCom     {sum(len(v) for v in self.http.values()) / n:5.1f} calls,      "
              f"{http_time / n * 1000:6.1f} ms per event")
        for path, times in sorted(self.http.items(), key=lambda kv: -sum(kv[1])):
            print(f"    {path:<40} {len(times) / n:4.1f} × {sum(times) / len(times) * 1000:6.1f} ms")
        rest = wall - self.sql_time - http_time
        print(f"  the rest  (Python: ORM, templates, RQ, Redis)  {rest / n * 1000:6.1f} ms per event")
        return {"ms_per_event": round(wall / n * 1000, 2), "sql_per_event": round(self.sql_count / n, 1),
                "sql_ms": round(self.sql_time / n * 1000, 2), "wecom_calls": round(
                    sum(len(v) for v in self.http.values()) / n, 2), "wecom_ms": round(http_time / n * 1000, 2),
                "rest_ms": round(rest / n * 1000, 2)}


def serve(app) -> tuple[str, object]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--database-url", help="default: a SQLite file in a temp dir (tables dropped!)")
    args = parser.parse_args()
    n = args.events
    for name in ("rq", "werkzeug", "wecom", "marketplace", "residents"):
        logging.getLogger(name).setLevel(logging.WARNING)

    meter = Meter()
    meter.wrap_httpx()
    sim_dir = tempfile.TemporaryDirectory(prefix="linli-profile-sim-")
    sim_app = create_simulator_app(
        {"WECOM_SIM_DATABASE_URL": f"sqlite:///{sim_dir.name}/sim.db", "WECOM_SIM_CALLBACK_URL": ""})
    sim_url, sim_server = serve(sim_app)
    sim = httpx.Client(base_url=sim_url, timeout=30)
    with bench_app(args.database_url, None, WECOM_API_BASE=f"{sim_url}/cgi-bin/") as app:
        with app.app_context():
            meter.watch(db.engine)
            with transaction(db.session) as session:
                print("\n".join(seed_demo(session, wecom_base=f"{sim_url}/cgi-bin/")))
            config_id = db.session.scalar(
                select(Channel.config_id).join(Store, Store.id == Channel.store_id)
                .where(Channel.config_id.is_not(None), Store.welcome_template_id.is_not(None)).order_by(Channel.id)
            )
            db.session.remove()
            make_worker(app, simple=True).work(burst=True)  # the seed's own jobs
            handles = [f"prof{secrets.token_hex(3)}_{i}" for i in range(n)]
            sim.post("/sim/admin/wechat_users", json={"handles": handles}).raise_for_status()
            ids = []
            for handle in handles:
                scan = sim.post("/sim/admin/scan", json={"wechat_user": handle, "config_id": config_id}).json()
                if not scan.get("added"):
                    raise SystemExit(f"scan of {config_id} failed: {scan}")
                payload = {"ToUserName": app.config["WECOM_CORP_ID"], "FromUserName": "sys",
                           "CreateTime": str(int(time.time())), "MsgType": "event",
                           "Event": "change_external_contact", "ChangeType": "add_external_contact",
                           "UserID": scan["userid"], "ExternalUserID": scan["external_userid"],
                           "State": scan["state"], "WelcomeCode": scan["welcome_code"]}
                with transaction(db.session) as session:
                    ids.append(record(session, payload, secrets.token_hex(16)).id)
            db.session.remove()
            for event_id in ids:
                enqueue(QUEUE_HIGH, process_event, event_id)

            summary: dict = {"events": n, "database": db.engine.dialect.name}
            meter.on = True
            start = time.perf_counter()
            make_worker(app, simple=True, queues=(QUEUE_HIGH,)).work(burst=True)
            summary["add_job"] = meter.report("add event job (high)", n, time.perf_counter() - start)
            meter.reset()
            follow_ups = get_queue(QUEUE_DEFAULT).count
            start = time.perf_counter()
            make_worker(app, simple=True, queues=(QUEUE_DEFAULT,)).work(burst=True)
            summary["follow_up_jobs"] = meter.report(
                f"follow-up jobs (default, {follow_ups} for {n} events)", n, time.perf_counter() - start)
            meter.on = False

            for label, simple in (("forking Worker", False), ("SimpleWorker", True)):
                for _ in range(n):
                    enqueue(QUEUE_HIGH, time.time)
                start = time.perf_counter()
                make_worker(app, simple=simple, queues=(QUEUE_HIGH,)).work(burst=True)
                per_job = (time.perf_counter() - start) / n * 1000
                print(f"{label}: {per_job:.1f} ms per trivial job")
                summary["fork_ms" if not simple else "simple_ms"] = round(per_job, 2)
            db.session.remove()
    sim_server.shutdown()
    sim_dir.cleanup()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
