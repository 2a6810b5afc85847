"""Simulator settings: read once from the environment (or the factory's config dict).

The knobs that tests and the admin page change at run time (token TTL, quota rule, delays)
live in ``Settings`` so ``POST /sim/admin/config`` can adjust them without a restart.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from wecom.defaults import (
    DEMO_AGENT_ID,
    DEMO_CALLBACK_AES_KEY,
    DEMO_CALLBACK_TOKEN,
    DEMO_CONTACT_SECRET,
    DEMO_CORP_ID,
)

QUOTA_RULES = ("days/month", "7/week", "1/day", "4/month")

# Knobs that may be changed at run time through /sim/admin/config.
MUTABLE = (
    "token_ttl",
    "auto_confirm_seconds",
    "quota_rule",
    "transfer_seconds",
    "welcome_code_ttl",
    "callback_url",
    "callback_timeout",
    "callback_tries",
    "callback_retry_delay",
    "tag_concurrency",
)


@dataclass
class Settings:
    corp_id: str = DEMO_CORP_ID
    secret: str = DEMO_CONTACT_SECRET
    callback_token: str = DEMO_CALLBACK_TOKEN
    callback_aes_key: str = DEMO_CALLBACK_AES_KEY
    agent_id: str = DEMO_AGENT_ID
    database_url: str = ""
    public_url: str = "http://127.0.0.1:5001"
    callback_url: str = "http://127.0.0.1:5000/wecom/callback"
    token_ttl: int = 7200
    auto_confirm_seconds: float = 5.0
    quota_rule: str = "days/month"
    transfer_seconds: float = 86400.0
    welcome_code_ttl: float = 20.0
    callback_timeout: float = 5.0
    callback_tries: int = 3
    callback_retry_delay: float = 1.0
    # mark_tag calls in flight at once before WeCom answers 45033 (0: every call does)
    tag_concurrency: int = 3
    faults: list[dict] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        """What GET /sim/admin/config shows (no secrets hidden: it is a local test double)."""
        data = asdict(self)
        data.pop("faults")
        return data

    def update(self, values: dict[str, Any]) -> None:
        types = {f.name: f.type for f in fields(self)}
        for key, value in values.items():
            if key not in MUTABLE:
                raise ValueError(f"unknown or read-only setting: {key}")
            if key == "quota_rule" and value not in QUOTA_RULES:
                raise ValueError(f"quota_rule must be one of {', '.join(QUOTA_RULES)}")
            setattr(self, key, _coerce(types[key], value))


def _coerce(kind: str, value: Any) -> Any:
    """A raw (string or JSON) value as the field's declared type (annotations are strings)."""
    return int(value) if kind == "int" else float(value) if kind == "float" else value


# Setting attribute -> environment / config key.
ENV_NAMES = {
    "corp_id": "WECOM_CORP_ID",
    "secret": "WECOM_CONTACT_SECRET",
    "callback_token": "WECOM_CALLBACK_TOKEN",
    "callback_aes_key": "WECOM_CALLBACK_AES_KEY",
    "agent_id": "WECOM_AGENT_ID",
    "database_url": "WECOM_SIM_DATABASE_URL",
    "public_url": "WECOM_SIM_PUBLIC_URL",
    "callback_url": "WECOM_SIM_CALLBACK_URL",
    "token_ttl": "WECOM_SIM_TOKEN_TTL",
    "auto_confirm_seconds": "WECOM_SIM_AUTO_CONFIRM_SECONDS",
    "quota_rule": "WECOM_SIM_QUOTA_RULE",
    "transfer_seconds": "WECOM_SIM_TRANSFER_SECONDS",
    "welcome_code_ttl": "WECOM_SIM_WELCOME_CODE_TTL",
    "callback_timeout": "WECOM_SIM_CALLBACK_TIMEOUT",
    "callback_tries": "WECOM_SIM_CALLBACK_TRIES",
    "callback_retry_delay": "WECOM_SIM_CALLBACK_RETRY_DELAY",
    "tag_concurrency": "WECOM_SIM_TAG_CONCURRENCY",
    "faults": "WECOM_SIM_FAULTS",
}


def load_settings(config: dict[str, Any], instance_path: str) -> Settings:
    """Config dict first, then the environment, then the defaults above."""
    settings = Settings()
    raw: dict[str, Any] = {}
    for attr, name in ENV_NAMES.items():
        if name in config:
            raw[attr] = config[name]
        elif name in os.environ:
            raw[attr] = os.environ[name]
    if "callback_url" not in raw:
        base = config.get("PUBLIC_BASE_URL") or os.environ.get("PUBLIC_BASE_URL") or "http://127.0.0.1:5000"
        raw["callback_url"] = f"{base.rstrip('/')}/wecom/callback"
    types = {f.name: f.type for f in fields(settings)}
    for attr, value in raw.items():
        if attr == "faults":
            value = json.loads(value) if isinstance(value, str) else value
            value = value if isinstance(value, list) else [value]
        setattr(settings, attr, _coerce(types[attr], value))
    if settings.quota_rule not in QUOTA_RULES:
        raise ValueError(f"WECOM_SIM_QUOTA_RULE must be one of {', '.join(QUOTA_RULES)}")
    if not settings.database_url:
        settings.database_url = f"sqlite:///{os.path.join(instance_path, 'wecom-sim.db')}"
    settings.public_url = settings.public_url.rstrip("/")
    return settings
