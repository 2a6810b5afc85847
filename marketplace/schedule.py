"""Periodic jobs: a tiny clock process (``linli cron``) that enqueues sweeps on a schedule.

RQ's own worker scheduler only fires ``enqueue_in``/``enqueue_at``; its ``CronScheduler``
enqueues with the default pickle serializer, which our JSON workers cannot read. This clock
is a dozen lines instead: each entry fires once per time slot (``now // every``), claimed
with ``SET NX`` in Redis, so any number of clocks may run (one per machine, say) without a
job firing twice. Jobs are named by dotted path, so importing this module imports none of
them, and each is an idempotent sweep: a slot missed while no clock ran costs nothing.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass

from flask import Flask

from core.extensions import QUEUE_DEFAULT, QUEUE_HIGH, QUEUE_LOW, get_queue, get_redis

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Periodic:
    name: str
    func: str  # dotted path of an RQ job function taking no arguments
    every: int  # seconds
    queue: str = QUEUE_LOW


SCHEDULE: tuple[Periodic, ...] = (
    # Codes over their members' daily add caps move to backup members; midnight resets.
    Periodic("channels.rebalance", "merchants.jobs.rebalance_all_stores", 600, QUEUE_DEFAULT),
    # Auto-accept on only during opening hours, for codes that ask for it.
    Periodic("channels.opening_hours", "merchants.jobs.apply_opening_hours", 300, QUEUE_DEFAULT),
    # Tag writes WeCom refused (45033, outages) until they stick; local rows are the truth.
    Periodic("tags.sync_pending", "residents.jobs.sync_pending_tags", 300),
    # Callbacks stored while Redis was away never got their job.
    Periodic("events.requeue", "core.inbox.jobs.requeue_stranded_events", 300, QUEUE_HIGH),
    # Customer handovers: poll WeCom for results until every customer has moved.
    # Customer groups: the full list once an hour (events keep them current in between).
    Periodic("groups.sync", "residents.jobs.sync_all_groups", 3600, QUEUE_DEFAULT),
    # Campaigns: rounds to plan, chunks to send, tasks to track, states to move (rows, not timers).
    Periodic("campaigns.tick", "campaigns.jobs.tick", 30, QUEUE_DEFAULT),
    # Statistics: waiting tallies into the daily rollups (pages add what is still waiting).
    Periodic("stats.roll_up", "stats.jobs.roll_up", 15, QUEUE_DEFAULT),
    # Webhooks: due deliveries POSTed, failures retried with backoff for 24 h (rows, not timers).
    Periodic("webhooks.deliver", "integrations.jobs.deliver_due", 15, QUEUE_DEFAULT),
    # Their settled events and delivery log after 30 days (pending ones are kept).
    Periodic("webhooks.sweep", "integrations.jobs.sweep_webhooks", 86400, QUEUE_DEFAULT),
    Periodic("transfers.poll", "residents.transfers.jobs.poll_running_transfers", 120, QUEUE_DEFAULT),
    # The API's idempotency records past their 48 h (a replay window, not an archive).
    Periodic("api.sweep_idempotency", "integrations.jobs.sweep_idempotency", 3600, QUEUE_DEFAULT),
)

KEY = "linli:cron:{name}:{slot}"


def tick(now: float | None = None, schedule: tuple[Periodic, ...] = SCHEDULE) -> list[str]:
    """Enqueue every entry whose current slot nobody has claimed yet; returns their names."""
    now = time.time() if now is None else now
    redis = get_redis()
    fired = []
    for entry in schedule:
        slot = int(now // entry.every)
        if redis.set(KEY.format(name=entry.name, slot=slot), "1", nx=True, ex=entry.every * 2):
            get_queue(entry.queue).enqueue(entry.func, job_id=f"cron-{entry.name.replace('.', '_')}-{slot}")
            fired.append(entry.name)
    if fired:  # every few minutes, all day: not worth a line at INFO
        log.debug("cron: enqueued %s", ", ".join(fired))
    return fired


def run(app: Flask, stop: threading.Event | None = None, interval: float = 5.0) -> None:
    """Tick until SIGINT/SIGTERM (or ``stop`` is set)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    with app.app_context():
        log.info("cron: %d periodic jobs", len(SCHEDULE))
        while not stop.is_set():
            try:
                tick()
            except Exception:  # Redis away: try again next tick, never die
                log.exception("cron tick failed")
            stop.wait(interval)
