"""Kill tests: a real ``linli worker`` process is killed with SIGKILL at a failpoint — after a
chunk is written and claimed but before the WeCom call, after the call and before the msgid
is stored, between two chunks, and during tracking. After a restart (the clock re-queues what
the dead worker held once its lease runs out) every intended recipient is covered exactly
once, judged by the simulator's own record of tasks: no (member, recipient) twice, none
missing."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from campaigns import jobs
from campaigns.models import Campaign, CampaignState, ChunkState, SendChunk
from core.db import db, utcnow
from core.failpoints import ENV
from core.txn import transaction
from tests.campaigns.test_dispatch import Hood, sent_pairs, state_of

pytestmark = pytest.mark.slow

LINLI = str(Path(sys.executable).parent / "linli")


@pytest.fixture
def fast(stack, monkeypatch):
    """Leases and tracking periods of a second, here and in the worker processes."""
    for key in ("CAMPAIGN_LEASE_SECONDS", "CAMPAIGN_TRACK_SECONDS"):
        monkeypatch.setitem(stack.app.config, key, 1)


def worker(stack, tmp_path: Path, failpoint: str | None = None) -> int:
    """Run a real worker process until the queues are empty (or it is killed); its exit code."""
    cfg = stack.app.config
    env = {
        **os.environ,
        "DATABASE_URL": cfg["DATABASE_URL"], "REDIS_URL": cfg["REDIS_URL"], "INSTANCE_PATH": str(tmp_path / "w"),
        "SECRET_KEY": "test-secret", "WECOM_API_BASE": cfg["WECOM_API_BASE"],
        "PUBLIC_BASE_URL": cfg["PUBLIC_BASE_URL"], "CAMPAIGN_LEASE_SECONDS": "1", "CAMPAIGN_TRACK_SECONDS": "1",
        "WECOM_HTTP_TIMEOUT": "15",
    }
    env.pop(ENV, None)
    if failpoint:
        env[ENV] = failpoint
    proc = subprocess.run([LINLI, "worker", "--burst"], env=env, capture_output=True, text=True, timeout=120)
    return proc.returncode


def restart(stack, tmp_path: Path) -> None:
    """The lease runs out, the clock ticks, a fresh worker runs what it queued."""
    time.sleep(1.2)
    db.session.remove()
    jobs.tick()
    assert worker(stack, tmp_path) == 0


def settle(hood: Hood, stack, tmp_path: Path, campaigns: list[int]) -> None:
    """Tick and work until every task exists; members confirm; tick until the campaigns are done."""
    deadline = time.monotonic() + 60
    while any(state_of(c) in (CampaignState.planning, CampaignState.sending) for c in campaigns):
        assert time.monotonic() < deadline, [state_of(c) for c in campaigns]
        restart(stack, tmp_path)
    hood.confirm_all()
    while any(state_of(c) != CampaignState.done for c in campaigns):
        assert time.monotonic() < deadline, [state_of(c) for c in campaigns]
        restart(stack, tmp_path)


def expected(hood: Hood) -> set[tuple[str, str]]:
    return {("zhangwei", e) for e in hood.ext}


@pytest.mark.parametrize("failpoint", [
    "dispatch.before_call",  # the chunk is written and claimed, the call counted, not made
    "dispatch.after_call",  # WeCom created the task; the msgid is not stored
    "dispatch.after_submit",  # between chunks: the first is stored, the second not begun
])
def test_a_worker_killed_while_sending_leaves_every_recipient_covered_once(stack, fast, tmp_path, failpoint):
    hood = Hood(stack, diners=8, overlap=4)
    campaigns = [hood.campaign(hood.a, hood.ta), hood.campaign(hood.b, hood.tb, name="蜀香周")]
    db.session.remove()
    jobs.tick()  # the round opens; its plan job is queued
    assert worker(stack, tmp_path, failpoint) == -signal.SIGKILL
    db.session.remove()
    states = db.session.scalars(select(SendChunk.state).join(Campaign, Campaign.round_id == SendChunk.round_id)
                                .where(Campaign.id == campaigns[0])).all()
    assert ChunkState.claimed in states or failpoint == "dispatch.after_submit"
    settle(hood, stack, tmp_path, campaigns)
    pairs = sent_pairs(hood.masses())
    assert set(pairs) == expected(hood) and max(pairs.values()) == 1
    db.session.remove()
    chunks = db.session.scalars(select(SendChunk).join(Campaign, Campaign.round_id == SendChunk.round_id)
                                .where(Campaign.id == campaigns[0])).all()
    assert {c.state for c in chunks} == {ChunkState.confirmed}
    assert sum(c.calls for c in chunks) == len(chunks) + (failpoint == "dispatch.before_call")


def test_a_worker_killed_during_tracking_loses_no_result(stack, fast, tmp_path):
    hood = Hood(stack, diners=4, overlap=0)
    campaign_id = hood.campaign(hood.a, hood.ta)
    db.session.remove()
    jobs.tick()
    assert worker(stack, tmp_path) == 0
    hood.confirm_all()
    time.sleep(1.2)
    db.session.remove()
    jobs.tick()  # tracking is queued; the worker dies with the results in hand
    assert worker(stack, tmp_path, "tracking.after_results") == -signal.SIGKILL
    assert state_of(campaign_id) in (CampaignState.sending, CampaignState.tracking)
    settle(hood, stack, tmp_path, [campaign_id])
    pairs = sent_pairs(hood.masses())
    assert set(pairs) == expected(hood) and max(pairs.values()) == 1
    assert all(len(hood.inbox(i)) == 2 for i in range(4))  # each diner: one text, one card, once


def test_a_lease_taken_over_mid_call_withdraws_the_duplicate(stack, fast, tmp_path):
    """WeCom is slow (8 s: longer than a second worker takes to start on a busy machine, so
    the takeover happens while the first call is still out); the lease runs out while the
    first worker waits; a second worker takes
    over, finds nothing yet and creates the task; the first one's answer arrives, it learns it
    lost the chunk and withdraws its own task: one live task."""
    hood = Hood(stack, diners=3, overlap=0)
    stack.http.post(f"{stack.sim_url}/sim/admin/faults",
                    json={"latency_ms": 8000, "path": "externalcontact/add_msg_template"})
    campaign_id = hood.campaign(hood.a, hood.ta)
    db.session.remove()
    jobs.tick()
    cfg = stack.app.config
    env = {**os.environ, "DATABASE_URL": cfg["DATABASE_URL"], "REDIS_URL": cfg["REDIS_URL"],
           "INSTANCE_PATH": str(tmp_path / "slow"), "SECRET_KEY": "test-secret",
           "WECOM_API_BASE": cfg["WECOM_API_BASE"], "PUBLIC_BASE_URL": cfg["PUBLIC_BASE_URL"],
           "CAMPAIGN_LEASE_SECONDS": "1", "WECOM_HTTP_TIMEOUT": "15"}
    env.pop(ENV, None)
    slow = subprocess.Popen([LINLI, "worker", "--burst"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:  # wait until the slow worker is inside the call
            db.session.remove()
            chunk = db.session.scalars(select(SendChunk).where(SendChunk.card_set == str(campaign_id))).first()
            if chunk is not None and chunk.calls == 1:
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.1)  # its lease runs out
        with transaction(db.session) as session:  # the clock would re-queue it: do it now
            session.get(SendChunk, chunk.id).enqueued_at = utcnow() - timedelta(seconds=5)
        jobs.tick()
        assert worker(stack, tmp_path) == 0  # the takeover: nothing found yet, so it creates the task
    finally:
        slow.wait(timeout=60)
    masses = hood.masses()
    live = [m for m in masses if not all(t["cancelled"] for t in m["tasks"])]
    assert len(masses) == 2 and len(live) == 1
    db.session.remove()
    assert db.session.get(SendChunk, chunk.id).msgid == live[0]["msgid"]
