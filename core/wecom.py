"""Wires WeCom into the app: the API client (token cached in Redis for every process) and
the callback receiver, whose events land in the event log (``core.inbox``)."""
from __future__ import annotations

from flask import Flask, current_app

from core.inbox import jobs as inbox
from wecom.callback import CallbackSettings, create_callback_blueprint
from wecom.client import RedisTokenStore, WeComClient


def init_app(app: Flask) -> None:
    cfg = app.config
    app.extensions["wecom"] = WeComClient(
        cfg["WECOM_CORP_ID"],
        cfg["WECOM_CONTACT_SECRET"],
        base_url=cfg["WECOM_API_BASE"],
        token_store=RedisTokenStore(app.extensions["redis"], cfg["WECOM_CORP_ID"], cfg["WECOM_CONTACT_SECRET"]),
        timeout=cfg["WECOM_HTTP_TIMEOUT"],
        max_retries=cfg["WECOM_MAX_RETRIES"],
    )
    settings = CallbackSettings(
        token=cfg["WECOM_CALLBACK_TOKEN"],
        encoding_aes_key=cfg["WECOM_CALLBACK_AES_KEY"],
        receive_id=cfg["WECOM_CORP_ID"],
        max_age=cfg["WECOM_CALLBACK_MAX_AGE"],
        max_bytes=cfg["WECOM_CALLBACK_MAX_BYTES"],
        dedupe_ttl=cfg["WECOM_CALLBACK_DEDUPE_TTL"],
    )
    app.register_blueprint(
        create_callback_blueprint(
            settings=lambda: settings,
            redis=lambda: current_app.extensions["redis"],
            sink=inbox.accept_callback,
        )
    )


def get_wecom() -> WeComClient:
    return current_app.extensions["wecom"]
