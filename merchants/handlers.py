"""Merchants' event handlers (signal receivers), in one place.

``store_staff_changed`` is sent by the staff page after its transaction committed, inside
the owner's request: the codes follow the new staff at once, and a failure is flashed to
the owner and retried in the background.
"""
from __future__ import annotations

from flask import flash
from flask_babel import gettext as _
from rq import Retry

from core.db import db
from core.extensions import QUEUE_DEFAULT, enqueue
from core.signals import store_staff_changed
from core.txn import transaction
from core.wecom import get_wecom
from merchants import jobs
from merchants.errors import ChannelError
from merchants.services import channels
from wecom.client import WeComError

STAFF_RETRY = Retry(max=5, interval=[30, 60, 300, 900, 3600])


@store_staff_changed.connect
def on_staff_changed(sender, store_id: int, **_kw) -> None:
    """Point the store's codes at the new members under the same config_id, so printed
    posters keep working."""
    try:
        with transaction(db.session) as session:
            changed = channels.staff_changed(session, get_wecom(), store_id)
    except (ChannelError, WeComError) as exc:
        message = str(exc) if isinstance(exc, ChannelError) else channels.wecom_error_message(exc)
        flash(_("渠道码暂未更新：%(why)s 系统会稍后自动重试。", why=message), "error")
        enqueue(QUEUE_DEFAULT, jobs.rebalance_store_channels, store_id, retry=STAFF_RETRY)
        return
    if changed:
        flash(_("已更新 %(n)s 个渠道码的接待成员，已印出的海报继续有效。", n=changed))
