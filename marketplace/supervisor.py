"""``linli run``: the dev stack as child processes of one foreground supervisor.

Each child gets its own process group, so the terminal's Ctrl-C reaches only the supervisor,
which then stops the children in order (web and worker, then the simulator) and the
embedded Redis last — nothing is left running. If any child dies, everything stops and the
supervisor exits non-zero: a half-running stack is worse than none.

The children's output goes to ``instance/logs/<child>.log``; the terminal gets only what
needs a person (warnings, errors, tracebacks), so the banner with the URLs and the demo
logins is the last thing printed and stays on screen while periodic sweeps run quietly.
``LINLI_RUN_VERBOSE=1`` relays every line as well, prefixed with the child's name.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx

from core.config import ROOT, Settings, parse_bool
from core.embedded_redis import EmbeddedRedis
from marketplace.demo import banner_lines

STOP_TIMEOUT = 10.0
START_TIMEOUT = 60.0


# A line a person should see even when the stack runs quietly: a logged warning or error
# (logging's "WARNING name:", gunicorn's "[ERROR]"), a traceback, a 5xx in an access log.
IMPORTANT = re.compile(
    r"\b(WARNING|ERROR|CRITICAL|FATAL)\b|\[(warning|error|critical)\]|Traceback \(most recent call last\)"
    r'|" 5\d\d ',
    re.IGNORECASE,
)


class OutputFilter:
    """Decides which of a child's lines reach the terminal: with ``verbose`` all of them,
    otherwise the important ones and every line of a traceback (up to its exception line)."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.in_traceback = False

    def shows(self, line: str) -> bool:
        if self.verbose:
            return True
        if self.in_traceback:
            # the frames are indented; the first line that is not ends the traceback
            if not line[:1].isspace() and line.strip():
                self.in_traceback = False
            return True
        if "Traceback (most recent call last)" in line:
            self.in_traceback = True
            return True
        return bool(IMPORTANT.search(line))


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    relay: threading.Thread | None = field(default=None, repr=False)


class Stop(Exception):
    """Raised from the signal handler to unwind the supervisor's loop."""

class Supervisor:
    def __init__(self, host: str, port: int, sim_port: int, *, web_workers: int = 2, seed: bool = True,
                 verbose: bool | None = None, out: TextIO | None = None):
        self.host, self.port, self.sim_port = host, port, sim_port
        self.web_workers = web_workers
        self.seed = seed
        self.verbose = parse_bool(os.environ.get("LINLI_RUN_VERBOSE")) if verbose is None else verbose
        self.out = out or sys.stdout
        self.children: list[Child] = []
        self.redis: EmbeddedRedis | None = None
        self.log_dir: Path | None = None
        self.high_workers = 0
        self._print_lock = threading.Lock()

    # -- environment shared by every child
    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        settings = Settings.from_env(env)
        self.high_workers = settings.LINLI_WORKERS
        env["INSTANCE_PATH"] = str(settings.INSTANCE_PATH)
        self.log_dir = Path(settings.INSTANCE_PATH) / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env.setdefault("PUBLIC_BASE_URL", f"http://{self.host}:{self.port}")
        env.setdefault("WECOM_API_BASE", f"http://{self.host}:{self.sim_port}/cgi-bin/")
        env.setdefault("WECOM_SIM_PUBLIC_URL", f"http://{self.host}:{self.sim_port}")
        # WeChat web OAuth for diner pages: the simulator's phone view plays WeChat too.
        env.setdefault("WECHAT_OA_API_BASE", f"http://{self.host}:{self.sim_port}/")
        env.setdefault("WECHAT_OA_AUTHORIZE_URL", f"http://{self.host}:{self.sim_port}/connect/oauth2/authorize")
        env.setdefault("WEBHOOK_ALLOW_HTTP", "true")  # test receivers on this machine
        env.setdefault("PYTHONUNBUFFERED", "1")
        if not env.get("REDIS_URL"):
            self.redis = EmbeddedRedis(settings.INSTANCE_PATH)
            env["REDIS_URL"] = self.redis.start()
        return env

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        process = subprocess.Popen(
            args, env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace",
        )
        child = Child(name, process)
        child.relay = threading.Thread(target=self._relay, args=(child,), name=f"relay-{name}", daemon=True)
        child.relay.start()
        self.children.append(child)
        return child

    def _log_path(self, name: str) -> Path:
        assert self.log_dir is not None
        return self.log_dir / f"{name}.log"

    def _relay(self, child: Child) -> None:
        """Copy a child's output to its log file; show the lines that need a person."""
        shows = OutputFilter(self.verbose).shows
        with open(self._log_path(child.name), "a", encoding="utf-8") as log:
            for line in child.process.stdout:
                log.write(line)
                log.flush()
                if shows(line):
                    self.say(f"[{child.name}] {line.rstrip()}")

    def say(self, text: str) -> None:
        with self._print_lock:
            print(text, file=self.out, flush=True)

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
                result = subprocess.run(linli + ["seed-demo"], env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL,
                                        capture_output=True, text=True, encoding="utf-8", errors="replace")
                self._log_path("seed-demo").write_text(result.stdout + result.stderr, encoding="utf-8")
                if result.returncode != 0 or self.verbose:
                    self.say((result.stdout + result.stderr).rstrip())
                if result.returncode != 0:
                    print("linli run: seed-demo failed (did `linli db upgrade` run?)", file=sys.stderr)
            # Welcomes have 20 s: workers of their own on ``high``, beside one for every queue.
            for n in range(1, max(0, self.high_workers) + 1):
                self.spawn(f"worker-high-{n}", linli + ["worker", "--queues", "high"], env)
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
                    "marketplace.wsgi:app",
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
        """Printed once everything answers: with the children's chatter in their log files,
        it is the last thing on the terminal."""
        self.say(banner_text(env, seed=self.seed, log_dir=self.log_dir, verbose=self.verbose,
                             high_workers=self.high_workers))

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
        for child in self.children:
            if child.relay is not None:
                child.relay.join(timeout=2)
        self.children.clear()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None


def banner_text(env: dict[str, str], *, seed: bool, log_dir: Path | None, verbose: bool,
                high_workers: int = 0) -> str:
    app = env["PUBLIC_BASE_URL"].rstrip("/")
    sim = env["WECOM_SIM_PUBLIC_URL"].rstrip("/")
    lines = [
        "",
        "邻里 Linli is running — Ctrl-C stops everything",
        f"  app        {app}/",
        f"  portal     {app}/auth/login" + ("" if seed else "   (linli admin create --username …)"),
        f"  phone      {sim}/phone/        (simulated diners' WeChat)",
        f"  console    {sim}/console/      (staff members' WeCom)",
        f"  WeCom API  {env['WECOM_API_BASE']}",
        f"  Redis      {env['REDIS_URL']}",
        f"  workers    {high_workers} on high (LINLI_WORKERS) + 1 on high,default,low",
    ]
    if log_dir is not None:
        lines.append(f"  logs       {log_dir}/" + ("" if verbose else "   (LINLI_RUN_VERBOSE=1 shows them here)"))
    if seed:
        lines.append("")
        lines += [f"  {line}" for line in banner_lines()]
    return "\n".join(lines) + "\n"


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
