"""RQ workers that run jobs inside the Flask app context (after flask-rq's job class).

Jobs are plain importable functions over ids; they reach the database through
``db.session`` and WeCom through ``get_wecom()``, both of which need the app context.
"""
from __future__ import annotations

from flask import Flask
from rq import Queue, SimpleWorker, Worker
from rq.job import Job
from rq.serializers import JSONSerializer

from core.extensions import QUEUE_NAMES, db

_app: Flask | None = None


def bind_app(app: Flask) -> None:
    global _app
    _app = app


class AppJob(Job):
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
