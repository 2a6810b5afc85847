"""RQ workers that run jobs inside the Flask app context (after flask-rq's job class).

Jobs are plain importable functions over ids; they reach the database through
``db.session`` and WeCom through ``get_wecom()``, both of which need the app context.
"""
from __future__ import annotations

from flask import Flask
from rq import Queue, SimpleWorker, Worker
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import import_attribute

from core.extensions import QUEUE_NAMES, db

_app: Flask | None = None

#: RQ stores a job's function as a dotted path. Jobs queued before a function moved (the
#: house reshaping of 2026-12) still name the old path; workers run them under the new one.
#: Entries may go once no queue holds such jobs (README, "Upgrading").
MOVED_JOBS: dict[str, str] = {
    "marketplace.wecom_events.process_event": "core.inbox.jobs.process_event",
    "marketplace.wecom_events.requeue_stranded_events": "core.inbox.jobs.requeue_stranded_events",
    "marketplace.residents.tags.sync_resident_tags": "residents.jobs.sync_resident_tags",
    "marketplace.residents.tags.refresh_resident_tags": "residents.jobs.refresh_resident_tags",
    "marketplace.residents.tags.sync_pending_tags": "residents.jobs.sync_pending_tags",
    "marketplace.residents.tags.record_redeem_signal": "residents.jobs.record_redeem_signal",
    "marketplace.residents.tags.drop_redeem_signal": "residents.jobs.drop_redeem_signal",
    "marketplace.residents.transfers.send_transfer": "residents.transfers.jobs.send_transfer",
    "marketplace.residents.transfers.poll_transfer": "residents.transfers.jobs.poll_transfer",
    "marketplace.residents.transfers.poll_running_transfers": "residents.transfers.jobs.poll_running_transfers",
}


def bind_app(app: Flask) -> None:
    global _app
    _app = app


class AppJob(Job):
    @property
    def func(self):
        name = self.func_name
        if name is None or self.instance:
            return super().func
        return import_attribute(MOVED_JOBS.get(name, name))

    def perform(self):  # type: ignore[override]
        if _app is None:
            raise RuntimeError("no app bound: start workers through marketplace.worker")
        db.after_fork()
        with _app.app_context():
            try:
                return super().perform()
            finally:
                db.session.remove()


def make_worker(app: Flask, *, simple: bool = False, queues=QUEUE_NAMES) -> Worker:
    """A worker over ``queues`` in priority order (``high`` drains before ``default``)."""
    bind_app(app)
    conn = app.extensions["redis"]
    cls = SimpleWorker if simple else Worker
    return cls(
        [Queue(name, connection=conn, serializer=JSONSerializer) for name in queues],
        connection=conn,
        job_class=AppJob,
        serializer=JSONSerializer,
    )


def drain(app: Flask, queues=QUEUE_NAMES) -> None:
    """Run every queued job in this process until the queues are empty (tests, CLI)."""
    make_worker(app, simple=True, queues=queues).work(burst=True)
