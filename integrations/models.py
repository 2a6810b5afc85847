"""API keys and idempotency records.

A key is shown once: only its public prefix and the SHA-256 of its secret are kept (the secret
is 32 random bytes, so a fast hash is enough — there is nothing to brute-force). Exactly one
owner kind per key, by a CHECK: a merchant (optionally narrowed to one of its stores) or a
manager (their regions' statistics).

An idempotency record is written in the transaction of the mutation it guards: its unique
(key, Idempotency-Key) is the lock, so fifty concurrent requests with one key make one effect
and the others, once it commits, replay its stored response (Stripe's contract)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, utcnow

PREFIX_LENGTH = 12
IDEMPOTENCY_KEY_MAX = 255


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    prefix: Mapped[str] = mapped_column(String(PREFIX_LENGTH), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(64), default="")
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("(merchant_id IS NULL) <> (manager_id IS NULL)", name="one_owner_kind"),
        CheckConstraint("store_id IS NULL OR merchant_id IS NOT NULL", name="store_key_has_merchant"),
    )

    @property
    def kind(self) -> str:
        return "manager" if self.manager_id else "store" if self.store_id else "merchant"


class IdempotencyRecord(Base):
    __tablename__ = "api_idempotency"

    id: Mapped[int] = mapped_column(primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_MAX))
    request_sha256: Mapped[str] = mapped_column(String(64))  # method, path and body
    status: Mapped[int] = mapped_column(Integer, default=0)
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("api_key_id", "key", name="uq_api_idempotency_key"),
        Index("ix_api_idempotency_created", "created_at"),
    )


class ApiAction(Base):
    """What a key did to a redemption (the desk's redemptions name a cashier; the POS's name
    the key here), kept after the idempotency records are swept."""

    __tablename__ = "api_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))  # redeem | reverse
    redemption_id: Mapped[int] = mapped_column(ForeignKey("redemptions.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
