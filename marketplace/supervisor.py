"""``linli run``: the dev stack as child processes of one foreground supervisor.

Each child gets its own process group, so the terminal's Ctrl-C reaches only the supervisor,
which then stops the children in order (web and worker, then the simulator) and the
embedded Redis last — nothing is left running. If any child dies, everything stops and the
supervisor exits non-zero: a half-running stack is worse than none.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from core.config import ROOT, Settings
from core.embedded_redis import EmbeddedRedis
from marketplace.demo import banner_lines

STOP_TIMEOUT = 10.0
START_TIMEOUT = 60.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen


class Stop(Exception):
    """Raised from the signal handler to unwind the supervisor's loop."""

class Supervisor:
    def __init__(self, host: str, port: int, sim_port: int, *, web_workers: int = 2, seed: bool = True):
        self.host, self.port, self.sim_port = host, port, sim_port
        self.web_workers = web_workers
        self.seed = seed
        self.children: list[Child] = []
        self.redis: EmbeddedRedis | None = None

    # -- environment shared by every child
    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        settings = Settings.from_env(env)
        env["INSTANCE_PATH"] = str(settings.INSTANCE_PATH)
        env.setdefault("PUBLIC_BASE_URL", f"http://{self.host}:{self.port}")
        env.setdefault("WECOM_API_BASE", f"http://{self.host}:{self.sim_port}/cgi-bin/")
        env.setdefault("WECOM_SIM_PUBLIC_URL", f"http://{self.host}:{self.sim_port}")
        # WeChat web OAuth for diner pages: the simulator's phone view plays WeChat too.
        env.setdefault("WECHAT_OA_API_BASE", f"http://{self.host}:{self.sim_port}/")
        env.setdefault("WECHAT_OA_AUTHORIZE_URL", f"http://{self.host}:{self.sim_port}/connect/oauth2/authorize")
        env.setdefault("PYTHONUNBUFFERED", "1")
        if not env.get("REDIS_URL"):
            self.redis = EmbeddedRedis(settings.INSTANCE_PATH)
            env["REDIS_URL"] = self.redis.start()
        return env

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        process = subprocess.Popen(
            args, env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL, start_new_session=True
        )
        child = Child(name, process)
        self.children.append(child)
        return child

    def run(self) -> int:
        previous = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        code = 0
        try:
            env = self.child_env()
            linli = [sys.executable, "-m", "marketplace.cli"]
            self.spawn("simulator", linli + ["simulator", "--host", self.host, "--port", str(self.sim_port)], env)
            self._wait_http(f"http://{self.host}:{self.sim_port}/cgi-bin/gettoken", "simulator")
            if self.seed:
                # The simulator answers now, so the demo seed can sync its members.
                result = subprocess.run(linli + ["seed-demo"], env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL)
                if result.returncode != 0:
                    print("linli run: seed-demo failed (did `linli db upgrade` run?)", file=sys.stderr)
            self.spawn("worker", linli + ["worker"], env)
            self.spawn("cron", linli + ["cron"], env)
            self.spawn(
                "web",
                [
                    sys.executable, "-m", "gunicorn",
                    "--bind", f"{self.host}:{self.port}",
                    "--workers", str(self.web_workers),
                    "--threads", "4",
                    "--graceful-timeout", "5",
                    "--no-control-socket",  # two stacks on one machine must not fight over it
                    "marketplace:create_app()",
                ],
                env,
            )
            self._wait_http(f"http://{self.host}:{self.port}/healthz", "web")
            self._banner(env)
            while True:
                for child in self.children:
                    if child.process.poll() is not None:
                        print(
                            f"linli run: {child.name} exited with {child.process.returncode}; stopping",
                            file=sys.stderr,
                        )
                        code = 1
                        raise Stop
                time.sleep(0.2)
        except Stop:
            pass
        except Exception as exc:  # a start-up failure still has to take everything down
            print(f"linli run: {exc}", file=sys.stderr)
            code = 1
        finally:
            # Ignore further signals while stopping: a second Ctrl-C must not strand children.
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            self.stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        raise Stop

    def _wait_http(self, url: str, name: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        child = next(c for c in self.children if c.name == name)
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                raise RuntimeError(f"{name} exited during start-up ({child.process.returncode})")
            try:
                httpx.get(url, timeout=1.0)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"{name} did not answer at {url} within {START_TIMEOUT:.0f}s")

    def _banner(self, env: dict[str, str]) -> None:
        app = env["PUBLIC_BASE_URL"].rstrip("/")
        sim = env["WECOM_SIM_PUBLIC_URL"].rstrip("/")
        print(
            "\n邻里 Linli is running — Ctrl-C stops everything\n"
            f"  app        {app}/\n"
            f"  portal     {app}/auth/login   (linli admin create --username …)\n"
            f"  phone      {sim}/phone/        (simulated diners' WeChat)\n"
            f"  console    {sim}/console/      (staff members' WeCom)\n"
            f"  WeCom API  {env['WECOM_API_BASE']}\n"
            f"  Redis      {env['REDIS_URL']}\n",
            flush=True,
        )
        if self.seed:

            print("".join(f"  {line}\n" for line in banner_lines()), flush=True)

    def stop_all(self) -> None:
        """SIGTERM each child's process group (web and worker first), wait, then SIGKILL."""
        for child in reversed(self.children):
            _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in reversed(self.children):
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for child in self.children:
            # Grandchildren (gunicorn and RQ work horses) share the child's group.
            _signal_group(child.process, signal.SIGKILL)
            child.process.wait()
        self.children.clear()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
