"""Shared extensions and the RQ queues, wired to an app by ``create_app``.

Queue names live here and nowhere else: ``high`` (callbacks, welcome messages — WeCom's
welcome code dies in 20 s), ``default``, ``low`` (bulk sends, rollups).
"""
from __future__ import annotations

import atexit

import redis
from flask import Flask, current_app
from flask_babel import Babel
from rq import Queue
from rq.serializers import JSONSerializer

from core.db import db  # noqa: F401  (re-exported: one import site for extensions)
from core.embedded_redis import EmbeddedRedis, is_alive, socket_path, url_for_socket

QUEUE_HIGH = "high"
QUEUE_DEFAULT = "default"
QUEUE_LOW = "low"
QUEUE_NAMES = (QUEUE_HIGH, QUEUE_DEFAULT, QUEUE_LOW)

babel = Babel()


def resolve_redis_url(app: Flask) -> str:
    """``REDIS_URL`` if set; otherwise the embedded server, started here if nobody else has."""
    url = app.config.get("REDIS_URL")
    if url:
        return url
    sock = socket_path(app.config["INSTANCE_PATH"])
    if is_alive(sock):
        return url_for_socket(sock)
    server = EmbeddedRedis(app.config["INSTANCE_PATH"])
    url = server.start()
    atexit.register(server.stop)  # this process owns it, so it takes it down
    return url


def init_redis(app: Flask) -> None:
    url = resolve_redis_url(app)
    app.config["REDIS_URL"] = url
    app.extensions["redis"] = redis.Redis.from_url(url)


def get_redis() -> redis.Redis:
    return current_app.extensions["redis"]


def get_queue(name: str = QUEUE_DEFAULT) -> Queue:
    if name not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {name!r}")
    return Queue(name, connection=get_redis(), serializer=JSONSerializer)


def enqueue(queue: str, func, *args, **kwargs):
    """Enqueue ``func(*args)`` on a named queue (JSON-serialised plain arguments: ids, not ORM
    objects); ``job_id``/``retry`` etc. pass through."""
    return get_queue(queue).enqueue(func, *args, **kwargs)
