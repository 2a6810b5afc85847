"""Identifier generators shaped like WeCom's (see wecom-api-details.md §0)."""
from __future__ import annotations

import hashlib
import secrets
import string

ALPHABET = string.ascii_letters + string.digits


def _from_bytes(raw: bytes, length: int) -> str:
    number = int.from_bytes(raw, "big")
    chars = []
    for _ in range(length):
        number, rem = divmod(number, len(ALPHABET))
        chars.append(ALPHABET[rem])
    return "".join(chars)


def random_id(prefix: str, length: int) -> str:
    return prefix + _from_bytes(secrets.token_bytes(32), length)


def stable_id(prefix: str, length: int, *parts: str) -> str:
    """Deterministic id (seed data keeps its ids across resets)."""
    return prefix + _from_bytes(hashlib.sha256("|".join(parts).encode()).digest(), length)


def external_userid(corp_id: str, wechat_user: str) -> str:
    return stable_id("wm", 30, corp_id, "external", wechat_user)


def unionid(wechat_user: str) -> str:
    return stable_id("o", 27, "unionid", wechat_user)


def chat_id() -> str:
    return random_id("wr", 30)


def tag_id() -> str:
    return random_id("et", 30)


def msgid() -> str:
    return random_id("msg", 25)


def config_id() -> str:
    return secrets.token_hex(16)


def access_token() -> str:
    return secrets.token_urlsafe(96)


def welcome_code() -> str:
    return secrets.token_urlsafe(32)
