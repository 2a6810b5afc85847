"""Webhooks: a merchant's endpoints, the events that happened to it, and one delivery per
event and endpoint.

Everything scheduled is a row: a delivery is ``pending`` until a POST gets a 2xx
(``succeeded``) or 24 h after its event have passed (``failed``); ``next_attempt_at`` is
when the clock's job may try it next. The endpoint's secret is a shared signing key (the
receiver needs it in clear to check the HMAC, as with Stripe), so it is stored as is."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Enum, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, utcnow

URL_MAX = 500
ERROR_MAX = 200


class EventType(str, enum.Enum):
    coupon_claimed = "coupon.claimed"
    coupon_redeemed = "coupon.redeemed"
    coupon_reversed = "coupon.reversed"
    campaign_finished = "campaign.finished"


class DeliveryStatus(str, enum.Enum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"  # gave up: 24 h of retries


def _enum(cls):
    return Enum(cls, native_enum=False, length=24, values_callable=lambda e: [m.value for m in e])


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    url: Mapped[str] = mapped_column(String(URL_MAX))
    secret: Mapped[str] = mapped_column(String(64))
    events: Mapped[list] = mapped_column(JSON, default=list)  # EventType values
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEvent(Base):
    """What happened, as the receivers will read it (``payload`` is the body's ``data``)."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    type: Mapped[EventType] = mapped_column(_enum(EventType))
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    status: Mapped[DeliveryStatus] = mapped_column(_enum(DeliveryStatus), default=DeliveryStatus.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str] = mapped_column(String(ERROR_MAX), default="")
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )
