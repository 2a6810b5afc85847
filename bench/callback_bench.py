"""How many WeCom callbacks per second can one web process take in?

WeCom gives the app 5 s per callback and retries otherwise; a burst (a poster scanned by a
queue of diners, a mass transfer) arrives at once. This measures the receive path the way it
runs in production — signature check, AES decrypt, defused XML parse, Redis de-duplication,
the event row, the RQ enqueue — through the Flask test client (no network, one thread), so
the figure is the app's own ceiling per process. Duplicates (WeCom's retries) and the bare
crypto are measured separately for comparison.

    make bench            # or: .venv/bin/python bench/callback_bench.py --events 2000
"""
from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from bench.common import bench_app  # noqa: E402
from core.db import db  # noqa: E402
from core.extensions import QUEUE_HIGH, get_queue  # noqa: E402
from wecom.crypto import WeComCrypto  # noqa: E402

EVENT = (
    "<xml><ToUserName><![CDATA[{corp}]]></ToUserName>"
    "<FromUserName><![CDATA[sys]]></FromUserName>"
    "<CreateTime>{ts}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
    "<Event><![CDATA[change_external_contact]]></Event>"
    "<ChangeType><![CDATA[add_external_contact]]></ChangeType>"
    "<UserID><![CDATA[zhangsan]]></UserID>"
    "<ExternalUserID><![CDATA[wm{ext}]]></ExternalUserID>"
    "<State><![CDATA[bench]]></State>"
    "<WelcomeCode><![CDATA[{code}]]></WelcomeCode></xml>"
)
ENVELOPE = "<xml><ToUserName><![CDATA[{corp}]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt><AgentID>1000002</AgentID></xml>"


def make_requests(crypto: WeComCrypto, corp: str, n: int) -> list[tuple[str, bytes]]:
    """``n`` distinct signed callbacks (distinct plaintexts, so none is a duplicate)."""
    out = []
    ts = str(int(time.time()))
    for i in range(n):
        xml = EVENT.format(corp=corp, ts=ts, ext=f"{i:08d}{secrets.token_hex(4)}", code=secrets.token_hex(16))
        nonce = secrets.token_hex(8)
        enc, sig = crypto.encrypt_message(xml, ts, nonce)
        query = urlencode({"msg_signature": sig, "timestamp": ts, "nonce": nonce})
        out.append((f"/wecom/callback?{query}", ENVELOPE.format(corp=corp, enc=enc).encode()))
    return out


def timed(label: str, n: int, fn) -> float:
    latencies = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    rate = n / elapsed
    print(f"  {label:<38} {rate:9.0f} req/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   ({n} in {elapsed:.2f} s)")
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000, help="distinct callbacks to post")
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temp dir (its tables are dropped and recreated!)")
    parser.add_argument("--redis-url", help="default: an embedded redis-server in a temp dir")
    args = parser.parse_args()

    with bench_app(args.database_url, args.redis_url) as app:
        cfg = app.config
        crypto = WeComCrypto(cfg["WECOM_CALLBACK_TOKEN"], cfg["WECOM_CALLBACK_AES_KEY"], cfg["WECOM_CORP_ID"])
        requests = make_requests(crypto, cfg["WECOM_CORP_ID"], args.events)
        client = app.test_client()
        backend = db.engine.dialect.name
        print(f"callback receive, one process, {backend} + Redis ({args.events} events)")

        def post(i: int) -> None:
            url, body = requests[i]
            resp = client.post(url, data=body, content_type="text/xml")
            if resp.status_code != 200:
                raise SystemExit(f"callback refused: {resp.status_code} {resp.get_data(as_text=True)}")

        timed("new events (store + enqueue)", args.events, post)
        timed("WeCom retries (dropped as duplicates)", args.events, post)

        def decrypt(i: int) -> None:
            url, body = requests[i]
            crypto.decrypt(body.decode().split("<![CDATA[")[2].split("]]>")[0])

        timed("AES decrypt alone", args.events, decrypt)

        with app.app_context():
            from core.inbox.models import WeComEvent

            stored = db.session.scalar(select(func.count()).select_from(WeComEvent))
            queued = get_queue(QUEUE_HIGH).count
            get_queue(QUEUE_HIGH).empty()
            db.session.remove()
        print(f"  stored events: {stored}, jobs queued on '{QUEUE_HIGH}': {queued}")
        if stored != args.events or queued != args.events:
            print("  MISMATCH: every distinct callback must be stored and queued once", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
