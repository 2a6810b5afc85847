"""Welcome a new contact in WeCom private chat.

WeCom's welcome code lives 20 seconds and works once, so this runs on the ``high`` queue
straight from the add event. A missed window is logged and counted, never an error: the
diner-journey code issues the welcome coupon to the diner's coupon list regardless.
"""
from __future__ import annotations

import logging

from flask import current_app

from marketplace.extensions import get_redis
from wecom.client import WeComError
from wecom.events import registry

log = logging.getLogger(__name__)

DEFAULT_WELCOME = "欢迎来到邻里！关注本店，享受街坊专属优惠。"
MISSED_CODES = {41050, 41051, 41096}  # expired/invalid, already used, already being sent
MISS_COUNTER = "linli:welcome:missed"


def send_welcome(welcome_code: str, text: str, attachments: list[dict] | None = None) -> bool:
    """Send the welcome; False (and counted) when WeCom says the code can no longer be used."""
    from marketplace.wecom_setup import get_wecom

    try:
        get_wecom().messages.send_welcome(welcome_code, text=text, attachments=attachments)
    except WeComError as exc:
        if exc.errcode in MISSED_CODES:
            get_redis().incr(MISS_COUNTER)
            log.warning("welcome code unusable (%s): %s", exc.errcode, exc.errmsg)
            return False
        raise
    return True


@registry.on("change_external_contact", "add_external_contact")
def on_add_external_contact(payload: dict) -> None:
    code = payload.get("WelcomeCode")
    if not code:
        return  # a welcome is configured in the WeCom admin console, or the pair already chatted
    text = current_app.config.get("WELCOME_TEXT") or DEFAULT_WELCOME
    send_welcome(code, text)
