"""How fast does a POS redeem through the API, one till alone and fifty at once?

Starts the app under gunicorn (as ``linli run`` does) on the benchmark's database and an
embedded Redis, seeds a merchant with stores, a template and issued coupons (bulk rows:
issuing is not what is measured) and one merchant API key, then drives it over real HTTP:

0. statements: one lookup and one redemption through the test client, every SQL statement
   counted (where the time goes before any concurrency);
1. one client alone: lookup → redeem, coupon after coupon;
2. N clients at once (asyncio + httpx, one connection each): the same on distinct coupons.

Each redemption is a ``GET /coupons/{code}`` then a ``POST /redemptions`` with its own
Idempotency-Key; every answer must be 200/201 (asserted). Latencies are per request, the
rate is redemptions (lookup + redeem pairs) per second of wall time. The client runs on the
same two cores as gunicorn and the database: the figure is the machine's, not the app's alone.

    BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:55432/linli_bench \\
        .venv/bin/python bench/api_bench.py --clients 50 --per-client 40 --workers 4
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import event, insert  # noqa: E402

from bench.common import bench_app  # noqa: E402
from core.db import db  # noqa: E402
from core.localtime import local  # noqa: E402
from coupons import services as svc  # noqa: E402
from coupons.models import Coupon, CouponKind, CouponStatus, TemplateStatus  # noqa: E402
from integrations.services import keys  # noqa: E402
from merchants.models import Merchant, Region, RegionLevel, ReviewStatus, Store  # noqa: E402

BILL_FEN = 12800
STORES = 4


def seed(app, coupons_needed: int) -> tuple[str, list[int], list[str]]:
    now = datetime.now(timezone.utc)
    today = local(now).date()
    with app.app_context(), db.session.begin():
        s = db.session
        city = Region(name="上海", level=RegionLevel.city)
        s.add(city)
        s.flush()
        merchant = Merchant(name="蜀味小馆", credit_code="91310000MAAPIB001", contact_mobile="13800138000")
        s.add(merchant)
        s.flush()
        stores = [Store(merchant_id=merchant.id, name=f"蜀味小馆·{i + 1}号店", address=f"幸福路 {i + 1} 号",
                        circle_id=city.id, cuisines=["sichuan"], status=ReviewStatus.approved) for i in range(STORES)]
        s.add_all(stores)
        s.flush()
        template = svc.create_template(s, merchant.id, svc.TemplateSpec(
            name="满100减20", kind=CouponKind.amount_off, value=2000, min_spend_fen=10000,
            valid_from=today - timedelta(days=7), valid_until=today + timedelta(days=30),
            status=TemplateStatus.active))
        token = keys.create_key(s, merchant_id=merchant.id, label="bench").token
        store_ids, template_id = [st.id for st in stores], template.id
    codes = list({svc.new_short_code() for _ in range(coupons_needed * 2)})[:coupons_needed]
    issued = now - timedelta(days=1)
    with app.app_context(), db.engine.begin() as conn:
        rows = [{"template_id": template_id, "holder_ref": f"wm_api_{i:07d}", "holder_seq": 1, "short_code": code,
                 "issued_at": issued, "valid_from": issued, "valid_until": now + timedelta(days=30),
                 "status": CouponStatus.issued} for i, code in enumerate(codes)]
        for chunk in range(0, len(rows), 1000):
            conn.execute(insert(Coupon), rows[chunk:chunk + 1000])
    return token, store_ids, codes


def count_statements(app, token: str, store_id: int, code: str) -> tuple[int, int]:
    """Statements for one lookup and one redemption, through the app in this process."""
    seen: list[str] = []
    with app.app_context():
        listener = lambda *args: seen.append(args[2])  # noqa: E731 - (conn, cursor, statement, ...)
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            client = app.test_client()
            headers = {"Authorization": f"Bearer {token}"}
            assert client.get(f"/api/v1/coupons/{code}?store_id={store_id}&bill_fen={BILL_FEN}",
                              headers=headers).status_code == 200
            lookup = len(seen)
            resp = client.post("/api/v1/redemptions", json={"code": code, "store_id": store_id, "bill_fen": BILL_FEN},
                               headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
            assert resp.status_code == 201, resp.get_data(as_text=True)
            return lookup, len(seen) - lookup
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def client_run(base: str, token: str, store_id: int, codes: list[str], lat: dict[str, list[float]]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
        for code in codes:
            t0 = time.perf_counter()
            resp = await http.get(f"/api/v1/coupons/{code}", params={"store_id": store_id, "bill_fen": BILL_FEN})
            t1 = time.perf_counter()
            assert resp.status_code == 200 and resp.json()["redeemable"], resp.text
            resp = await http.post("/api/v1/redemptions", json={"code": code, "store_id": store_id, "bill_fen": BILL_FEN},
                                   headers={"Idempotency-Key": uuid.uuid4().hex})
            t2 = time.perf_counter()
            assert resp.status_code == 201, resp.text
            lat["lookup"].append(t1 - t0)
            lat["redeem"].append(t2 - t1)


async def drive(base: str, token: str, store_ids: list[int], batches: list[list[str]]) -> tuple[float, dict]:
    lat: dict[str, list[float]] = {"lookup": [], "redeem": []}
    t0 = time.perf_counter()
    await asyncio.gather(*(client_run(base, token, store_ids[i % len(store_ids)], codes, lat)
                           for i, codes in enumerate(batches)))
    return time.perf_counter() - t0, lat


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


def summary(label: str, elapsed: float, lat: dict) -> dict:
    n = len(lat["redeem"])
    out = {"redemptions": n, "per_s": round(n / elapsed, 1)}
    for kind in ("lookup", "redeem"):
        out[kind] = {"p50_ms": round(statistics.median(lat[kind]) * 1000, 1),
                     "p95_ms": round(pct(lat[kind], 0.95), 1), "p99_ms": round(pct(lat[kind], 0.99), 1)}
    print(f"  {label:<22} {out['per_s']:7.1f} redemptions/s   "
          + "   ".join(f"{k} p50 {out[k]['p50_ms']:.1f} / p95 {out[k]['p95_ms']:.1f} / p99 {out[k]['p99_ms']:.1f} ms"
                       for k in ("lookup", "redeem")))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--per-client", type=int, default=40)
    parser.add_argument("--alone", type=int, default=200, help="redemptions of the lone client")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker")
    args = parser.parse_args()
    database_url = os.environ.get("BENCH_DATABASE_URL")
    needed = args.clients * args.per_client + args.alone + 21  # + one counted, twenty to warm up
    with bench_app(database_url, os.environ.get("BENCH_REDIS_URL")) as app:
        token, store_ids, codes = seed(app, needed)
        lookup_n, redeem_n = count_statements(app, token, store_ids[0], codes.pop())
        backend = app.config["DATABASE_URL"].split(":", 1)[0]
        print(f"POS API, {backend}, gunicorn {args.workers}×{args.threads}; statements: lookup {lookup_n}, "
              f"redeem {redeem_n}")
        port = free_port()
        env = {**os.environ, "DATABASE_URL": app.config["DATABASE_URL"], "REDIS_URL": app.config["REDIS_URL"],
               "WECOM_API_BASE": "http://127.0.0.1:9/cgi-bin/", "API_RATE_LIMIT": "1000000/minute",
               "SECRET_KEY": "bench", "INSTANCE_PATH": app.instance_path}
        web = subprocess.Popen([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers",
                                str(args.workers), "--threads", str(args.threads), "--no-control-socket",
                                "--log-level", "warning", "marketplace.wsgi:app"],
                               cwd=str(ROOT), env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            warm, rest = codes[:20], codes[20:]
            asyncio.run(drive(base, token, store_ids, [warm[i::4] for i in range(4)]))  # every worker warm
            alone, rest = rest[:args.alone], rest[args.alone:]
            one = summary("1 client", *asyncio.run(drive(base, token, store_ids, [alone])))
            batches = [rest[i * args.per_client:(i + 1) * args.per_client] for i in range(args.clients)]
            many = summary(f"{args.clients} clients", *asyncio.run(drive(base, token, store_ids, batches)))
        finally:
            web.terminate()
            web.wait(10)
    targets = many["redeem"]["p95_ms"] < 150 and many["per_s"] >= 300
    print(json.dumps({"bench": "api", "backend": backend, "workers": args.workers, "threads": args.threads,
                      "statements": {"lookup": lookup_n, "redeem": redeem_n}, "alone": one,
                      "concurrent": {"clients": args.clients, **many}, "targets_met": targets}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
