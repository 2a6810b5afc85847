"""What the benchmarks share: an app on a throwaway schema and an embedded Redis if none given."""
from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine  # noqa: E402

from marketplace import create_app  # noqa: E402
from marketplace.all_models import metadata  # noqa: E402
from core.db import db  # noqa: E402
from core.embedded_redis import EmbeddedRedis  # noqa: E402


@contextmanager
def bench_app(database_url: str | None, redis_url: str | None, *, fresh: bool = True, **config) -> Iterator:
    """The app on ``database_url`` (default: a SQLite file in a temp dir) with its tables
    dropped and recreated, and ``redis_url`` (default: an embedded redis-server); ``config``
    overrides settings (``WECOM_API_BASE`` of a simulator, say). ``fresh=False`` keeps the
    tables and rows already there (a bench re-timing what an earlier run seeded)."""
    with tempfile.TemporaryDirectory(prefix="linli-bench-") as tmp:
        tmp_path = Path(tmp)
        redis_server = None
        if not redis_url:
            redis_server = EmbeddedRedis(tmp_path / "redis")
            redis_url = redis_server.start()
        database_url = database_url or f"sqlite:///{tmp_path / 'bench.db'}"
        if fresh:
            engine = create_engine(database_url)
            metadata.drop_all(engine)
            metadata.create_all(engine)
            engine.dispose()
        try:
            app = create_app(
                {"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": database_url, "REDIS_URL": redis_url,
                 "WECOM_API_BASE": "http://127.0.0.1:9/cgi-bin/",  # demo secrets: never the real WeCom
                 **config}
            )
            logging.getLogger().setLevel(logging.WARNING)
            yield app
        finally:
            db.session.remove()
            if db.engine is not None:
                db.engine.dispose()
            if redis_server is not None:
                redis_server.stop()
