"""The periodic-job clock: each entry fires once per slot however many clocks tick, every
scheduled path names a real job, and a fired sweep runs through a real worker."""
from __future__ import annotations

import importlib
import inspect
import threading

import pytest
from rq import Queue

from core.extensions import QUEUE_NAMES, JSONSerializer
from marketplace import schedule
from marketplace.schedule import SCHEDULE, Periodic, tick
from marketplace.worker import drain


def _queued(redis_conn) -> list[str]:
    """Scheduled jobs waiting in the queues (ignoring anything else a test left there)."""
    ours = {e.func for e in SCHEDULE}
    return [
        job.func_name
        for name in QUEUE_NAMES
        for job in Queue(name, connection=redis_conn, serializer=JSONSerializer).get_jobs()
        if job.func_name in ours
    ]


@pytest.mark.parametrize("entry", SCHEDULE, ids=lambda e: e.name)
def test_every_entry_is_a_job_without_required_arguments(entry):
    module, _, name = entry.func.rpartition(".")
    func = getattr(importlib.import_module(module), name)
    required = [
        p for p in inspect.signature(func).parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    assert not required, f"{entry.func} needs {required}"
    assert entry.queue in QUEUE_NAMES and entry.every > 0


def test_one_fire_per_slot(app, redis_conn):
    t0 = 1_800_000_000.0
    every = {e.name: e.every for e in SCHEDULE}
    assert sorted(tick(t0)) == sorted(every)
    assert tick(t0 + 1) == []  # same slot for every entry
    later = tick(t0 + 300)  # the 300 s sweeps have a new slot; the 600 s one may not
    assert set(later) == {n for n, e in every.items() if int((t0 + 300) // e) != int(t0 // e)}
    assert len(_queued(redis_conn)) == len(every) + len(later)


def test_concurrent_clocks_fire_each_slot_once(app, redis_conn):
    """Several `linli cron` processes (one per machine) must not double the work."""
    fired: list[str] = []
    barrier = threading.Barrier(6)

    def clock():
        with app.app_context():
            barrier.wait()
            fired.extend(tick(1_800_000_000.0))

    threads = [threading.Thread(target=clock) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(fired) == sorted(e.name for e in SCHEDULE)
    assert len(_queued(redis_conn)) == len(SCHEDULE)


def test_fired_sweeps_run_in_a_worker(app, redis_conn):
    only = (
        Periodic("tags.sync_pending", "residents.jobs.sync_pending_tags", 300),
        Periodic("events.requeue", "core.inbox.jobs.requeue_stranded_events", 300, "high"),
    )
    assert tick(1_800_000_000.0, only) == ["tags.sync_pending", "events.requeue"]
    drain(app)
    for name in QUEUE_NAMES:
        assert Queue(name, connection=redis_conn).count == 0
    from rq.registry import FailedJobRegistry

    assert all(FailedJobRegistry(n, connection=redis_conn).count == 0 for n in QUEUE_NAMES)


def test_run_stops_on_request(app, redis_conn):
    stop = threading.Event()
    thread = threading.Thread(target=schedule.run, args=(app, stop), kwargs={"interval": 0.05})
    thread.start()
    try:
        for _ in range(100):
            if _queued(redis_conn):
                break
            stop.wait(0.05)
        assert _queued(redis_conn), "the clock enqueued nothing"
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
