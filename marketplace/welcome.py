"""Welcome a new contact in WeCom private chat: the store's text and a link card to the
welcome coupon (the last step of the add handler in ``residents.handlers``).

WeCom's welcome code lives 20 seconds and works once, so this runs on the ``high`` queue
straight from the add event, after the coupon is committed. A missed window is logged and
counted, never an error: the coupon is already in the diner's coupon list.
"""
from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

from flask import current_app
from flask_babel import gettext as _

from core.extensions import get_redis
from wecom.client import WeComError

log = logging.getLogger(__name__)

DEFAULT_WELCOME = "欢迎来到邻里！关注本店，享受街坊专属优惠。"
# missing, expired/invalid, already used, already being sent
MISSED_CODES = {41049, 41050, 41051, 41096}
MISS_COUNTER = "linli:welcome:missed"
SENT_PREFIX = "linli:welcome:code:"  # one send per welcome code, whatever retries happen
SENT_TTL = 3600
TITLE_MAX_BYTES = 128  # WeCom's limits on a link attachment
DESC_MAX_BYTES = 512

SENT, MISSED, DUPLICATE = "sent", "missed", "duplicate"


def clip_bytes(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` UTF-8 bytes without splitting a character."""
    raw = text.encode("utf-8")
    return text if len(raw) <= limit else raw[:limit].decode("utf-8", errors="ignore")


def welcome_text(store=None) -> str:
    """The store's own welcome, else the configured default (``WELCOME_TEXT``), else ours."""
    own = (getattr(store, "welcome_text", "") or "").strip()
    return own or current_app.config.get("WELCOME_TEXT") or DEFAULT_WELCOME


def coupon_card(store, coupon, resident_id: int) -> dict:
    """A ``link`` attachment opening the coupon's mobile page, signed for its holder."""
    from coupons.services import LOCAL_TZ, headline
    from residents.tokens import coupon_url

    template = coupon.template
    last_day = (coupon.valid_until - timedelta(seconds=1)).astimezone(LOCAL_TZ).strftime("%Y-%m-%d")
    title = _("%(store)s 送你一张券：%(name)s", store=store.name, name=template.name)
    desc = _("%(headline)s，有效期至 %(day)s。点开查看券码，到店出示即可使用。",
             headline=headline(template), day=last_day)
    return {
        "msgtype": "link",
        "link": {
            "title": clip_bytes(title, TITLE_MAX_BYTES),
            "desc": clip_bytes(desc, DESC_MAX_BYTES),
            "url": coupon_url(coupon.short_code, resident_id),
        },
    }


def compose(store, coupon, resident_id: int) -> tuple[str, list[dict]]:
    """Text and attachments for a new contact (no card without a coupon)."""
    attachments = [coupon_card(store, coupon, resident_id)] if coupon is not None else []
    return welcome_text(store), attachments


def _sent_key(welcome_code: str) -> str:
    return SENT_PREFIX + hashlib.sha256(welcome_code.encode()).hexdigest()[:32]


def send_welcome(welcome_code: str, text: str, attachments: list[dict] | None = None) -> str:
    """Send once per code: ``sent``; ``missed`` (counted) when WeCom says the code can no
    longer be used; ``duplicate`` when this code was already handled (event retries).
    Other WeCom errors propagate and release the code so a retry may still use it."""
    from core.wecom import get_wecom

    redis = get_redis()
    key = _sent_key(welcome_code)
    if not redis.set(key, "1", nx=True, ex=SENT_TTL):
        return DUPLICATE
    try:
        get_wecom().messages.send_welcome(welcome_code, text=text, attachments=attachments or None)
    except Exception as exc:
        if isinstance(exc, WeComError) and exc.errcode in MISSED_CODES:
            redis.incr(MISS_COUNTER)
            log.warning("welcome code unusable (%s): %s", exc.errcode, exc.errmsg)
            return MISSED
        redis.delete(key)
        raise
    return SENT


def missed_count() -> int:
    return int(get_redis().get(MISS_COUNTER) or 0)
