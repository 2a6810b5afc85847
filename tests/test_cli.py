"""The ``linli`` command, run as a real process (``python -m marketplace.cli``) the way
``make run`` and operators run it."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from flask import current_app
from sqlalchemy import create_engine, func, inspect, select

from core.config import ROOT
from core.extensions import get_queue, get_redis
from marketplace.all_models import metadata
from marketplace.demo import banner_lines
from marketplace.supervisor import OutputFilter, banner_text
from merchants.models import Region

LINLI = [sys.executable, "-m", "marketplace.cli"]


def mark_job_ran(key: str) -> None:
    """A job for the worker test: proves it ran inside the app context, on the app's Redis."""
    get_redis().set(key, current_app.config["DATABASE_URL"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def linli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "REDIS_URL", "DATABASE_URL"))}
    env.update(
        INSTANCE_PATH=str(tmp_path / "instance"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'linli.db'}",
        # Nothing listens here: the demo seed must notice quickly and skip the member sync.
        WECOM_API_BASE=f"http://127.0.0.1:{free_port()}/cgi-bin/",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def linli(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    result = subprocess.run(
        LINLI + args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"linli {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_db_upgrade_creates_schema(tmp_path, redis_url):
    env = linli_env(tmp_path, REDIS_URL=redis_url)
    linli(["db", "upgrade"], env)
    engine = create_engine(env["DATABASE_URL"])
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert "alembic_version" in tables
    assert set(metadata.tables) <= tables
    linli(["db", "check"], env)  # the migrated schema is what the models describe


def test_seed_demo_is_idempotent(tmp_path, redis_url):
    env = linli_env(tmp_path, REDIS_URL=redis_url)
    engine = create_engine(env["DATABASE_URL"])
    metadata.create_all(engine)

    def regions() -> list[tuple]:
        with engine.connect() as conn:
            return conn.execute(select(Region.name, Region.level, Region.parent_id).order_by(Region.id)).all()

    first = linli(["seed-demo"], env)
    after_first = regions()
    second = linli(["seed-demo"], env)
    engine.dispose()

    assert ("徐家汇商圈",) in [(r[0],) for r in after_first]
    assert ("上海",) in [(r[0],) for r in after_first]
    assert regions() == after_first
    assert "regions: 0 new" in second.stdout, second.stdout
    assert "not reachable" in first.stdout


def test_worker_burst_runs_queued_job(app, backend, tmp_path, redis_url):
    key = f"linli:test:cli-job:{backend}"
    get_queue("default").enqueue("tests.test_cli.mark_job_ran", key)
    env = linli_env(
        tmp_path,
        INSTANCE_PATH=app.config["INSTANCE_PATH"],
        DATABASE_URL=app.config["DATABASE_URL"],
        REDIS_URL=redis_url,
    )
    linli(["worker", "--burst", "--queues", "high,default,low"], env)
    assert get_redis().get(key) == app.config["DATABASE_URL"].encode()
    assert get_queue("default").count == 0


def test_worker_rejects_unknown_queue(tmp_path, redis_url):
    env = linli_env(tmp_path, REDIS_URL=redis_url)
    result = subprocess.run(
        LINLI + ["worker", "--burst", "--queues", "urgent"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "unknown queue" in result.stderr


def test_seed_demo_syncs_members_from_simulator(app, tmp_path):
    """With the simulator reachable, the seed pulls its members (and who may hold customers)."""
    from core.db import db
    from marketplace.demo import seed_demo
    from merchants.models import Member
    from tests.support.servers import LiveServer
    from wecom.client import WeComClient
    from wecom.simulator import create_simulator_app

    sim_server = LiveServer()
    try:
        sim_server.app = create_simulator_app(
            {
                "WECOM_SIM_DATABASE_URL": f"sqlite:///{tmp_path / 'sim.db'}",
                "WECOM_SIM_PUBLIC_URL": sim_server.url,
            }
        )
        base = f"{sim_server.url}/cgi-bin/"
        client = WeComClient(app.config["WECOM_CORP_ID"], app.config["WECOM_CONTACT_SECRET"], base_url=base)
        try:
            for _ in range(2):
                with db.session.begin():
                    lines = seed_demo(db.session, wecom=client, wecom_base=base)
        finally:
            client.close()
    finally:
        sim_server.stop()
    members = db.session.scalars(select(Member)).all()
    assert members, lines
    assert len({m.userid for m in members}) == len(members)
    assert any(m.can_hold_customers for m in members)
    assert db.session.scalar(select(func.count()).select_from(Region)) > 0


# --------------------------------------------------------------------------- linli run


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, state) for every live process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), fields[0])
    return table


def _descendants(root: int) -> set[int]:
    table = _proc_table()
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - found
        found |= frontier
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


@pytest.mark.slow
def test_run_starts_and_stops_cleanly(tmp_path):
    port, sim_port = free_port(), free_port()
    env = linli_env(tmp_path)
    del env["WECOM_API_BASE"]  # `linli run` points it at its own simulator
    engine = create_engine(env["DATABASE_URL"])
    metadata.create_all(engine)
    engine.dispose()

    proc = subprocess.Popen(
        LINLI + ["run", "--port", str(port), "--sim-port", str(sim_port), "--web-workers", "1"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    # Read the output as it comes: the banner is the supervisor's "ready" signal, printed
    # once its own health checks pass (which may be a moment after ours).
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while "Ctrl-C stops everything" not in "".join(lines):
            assert proc.poll() is None, "linli run exited early:\n" + "".join(lines)
            assert time.monotonic() < deadline, "linli run never printed its banner"
            time.sleep(0.3)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{sim_port}/phone/", timeout=5).status_code == 200
        # the clock's first tick queues every sweep: let the worker run them before stopping
        worker_log = tmp_path / "instance" / "logs" / "worker.log"
        deadline = time.monotonic() + 30
        while "Job OK" not in (worker_log.read_text() if worker_log.exists() else ""):
            assert time.monotonic() < deadline, "the periodic sweeps never ran:\n" + "".join(lines)
            time.sleep(0.3)
        time.sleep(1)
        banner_tail = banner_lines()[-1].strip()

        redis_pid = int((tmp_path / "instance" / "redis.pid").read_text())
        tree = _descendants(proc.pid)
        assert redis_pid in tree
        # redis, simulator, two high-queue workers (LINLI_WORKERS), the worker for every queue,
        # cron, gunicorn (+ its worker)
        assert len(tree) >= 7

        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        reader.join(timeout=10)
        output = "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        proc.stdout.close()
    assert proc.returncode == 0, output
    assert f"http://127.0.0.1:{port}/" in output
    assert f"http://127.0.0.1:{sim_port}/phone/" in output
    # The banner is not buried: the children's start-up and the periodic sweeps went to
    # instance/logs/, and nothing but the banner was printed after it.
    after_banner = output.split("Ctrl-C stops everything", 1)[1]
    assert "demo logins" in after_banner
    assert after_banner.rstrip().endswith(banner_tail), after_banner
    assert (tmp_path / "instance" / "logs" / "web.log").read_text().strip()
    assert "Job OK" in (tmp_path / "instance" / "logs" / "worker.log").read_text()
    for n in (1, 2):
        assert "Listening on high..." in (tmp_path / "instance" / "logs" / f"worker-high-{n}.log").read_text()
    assert "2 on high (LINLI_WORKERS)" in output
    deadline = time.monotonic() + 5
    while any(_running(pid) for pid in tree) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in tree if _running(pid)], "stray processes after linli run stopped"
    assert not (tmp_path / "instance" / "redis.sock").exists() or not _running(redis_pid)


def test_run_shows_only_what_needs_a_person():
    quiet = OutputFilter()
    shown = [line for line in [
        "2026-01-01 10:00:00,000 INFO marketplace.schedule: cron: 5 periodic jobs",
        "10:00:05 default: merchants.jobs.rebalance_all_stores() (cron-channels_rebalance-1)",
        "10:00:05 default: Job OK (cron-channels_rebalance-1)",
        '127.0.0.1 - - [01/Jan/2026 10:00:05] "GET /cgi-bin/gettoken HTTP/1.1" 200 -',
        "[2026-01-01 10:00:00 +0800] [42] [INFO] Booting worker with pid: 42",
        "2026-01-01 10:00:06,000 WARNING merchants.jobs: WeCom said 60020",
        '127.0.0.1 - - [01/Jan/2026 10:00:07] "POST /cgi-bin/x HTTP/1.1" 500 -',
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "ValueError: boom",
        "10:00:08 default: Job OK (cron-tags_sync_pending-1)",
    ] if quiet.shows(line)]
    assert shown == [
        "2026-01-01 10:00:06,000 WARNING merchants.jobs: WeCom said 60020",
        '127.0.0.1 - - [01/Jan/2026 10:00:07] "POST /cgi-bin/x HTTP/1.1" 500 -',
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "ValueError: boom",
    ]
    assert OutputFilter(verbose=True).shows("10:00:05 default: Job OK (cron-x)")


def test_banner_names_the_urls_logins_and_logs(tmp_path):
    env = {"PUBLIC_BASE_URL": "http://127.0.0.1:5000", "WECOM_SIM_PUBLIC_URL": "http://127.0.0.1:5001",
           "WECOM_API_BASE": "http://127.0.0.1:5001/cgi-bin/", "REDIS_URL": "unix:///tmp/r.sock"}
    text = banner_text(env, seed=True, log_dir=tmp_path / "logs", verbose=False)
    assert "http://127.0.0.1:5001/phone/" in text and "demo-admin" in text and "linli-demo" in text
    assert f"{tmp_path / 'logs'}/" in text and "LINLI_RUN_VERBOSE=1" in text
    assert text.rstrip().endswith(banner_lines()[-1].strip())  # the logins come last


def test_home_page_points_to_the_demo_logins_and_the_phone(app, client):
    app.config["WECOM_API_BASE"] = "http://127.0.0.1:5001/cgi-bin/"
    page = client.get("/").get_data(as_text=True)
    assert 'data-testid="demo-help"' in page
    assert "demo-admin" in page and "demo-cashier" in page and "linli-demo" in page
    assert 'href="http://127.0.0.1:5001/phone/"' in page
    app.config["WECOM_CORP_ID"] = "ww-a-real-corp"  # a real corp: no demo logins on the home page
    page = client.get("/").get_data(as_text=True)
    assert "demo-admin" not in page and "/phone/" not in page
