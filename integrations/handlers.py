"""The integrations' signal receivers: facts that merchants' webhooks report.

The signals arrive after the fact's transaction committed (``core.signals``), inside
SQLAlchemy's ``after_commit`` hook where the sender's session can emit no SQL; each receiver
therefore opens a session of its own and writes the event and its pending deliveries in one
short transaction (nothing at all for a merchant without a subscribed endpoint). Sending is
the clock's job (``integrations.jobs.deliver_due``). A failure here is logged by
``core.signals`` and loses that one event, never the fact."""
from __future__ import annotations

from sqlalchemy.orm import Session

from core import signals
from core.db import db
from integrations.services import webhooks
from integrations.webhook_models import EventType


def _write(build, *args) -> None:
    with Session(db.engine, expire_on_commit=False) as session, session.begin():
        webhooks.record(session, build(session, *args))


@signals.coupon_redeemed.connect
def _on_coupon_redeemed(sender, redemption_id: int, **_) -> None:
    _write(webhooks.redemption_fact, redemption_id, EventType.coupon_redeemed)


@signals.redemption_reversed.connect
def _on_redemption_reversed(sender, redemption_id: int, **_) -> None:
    _write(webhooks.redemption_fact, redemption_id, EventType.coupon_reversed)


@signals.coupon_claimed.connect
def _on_coupon_claimed(sender, coupon_id: int, **_) -> None:
    _write(webhooks.claim_fact, coupon_id)


@signals.campaign_finished.connect
def _on_campaign_finished(sender, campaign_id: int, **_) -> None:
    _write(webhooks.campaign_fact, campaign_id)
