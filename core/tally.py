"""Tallies: what the statistics count, written by the domains in the transaction that does
the counted thing (a coupon issued, a redemption, a contact added or lost, a push planned or
answered), keyed by the Asia/Shanghai day it happened on, computed here and then, never per
query.

A tally row is an outbox entry: the statistics' roll-up job (``stats.services.rollup``) moves
a batch of them into the daily rollups and deletes them in one transaction, so each one is
counted exactly once whatever kills the job, and a page adds the few still waiting here to
the rollups it reads. Dimensions are plain ids (0 = none): this floor knows no domain.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Integer, insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.db import Base
from core.localtime import local

# What is counted, in the order pages and CSV files show it. Amounts are fen; a reversal
# counts ``reversed`` and takes its discount and bill back (negative amounts).
METRICS = (
    "new_contacts", "lost_contacts",
    "issued", "claimed", "redeemed", "reversed", "discount_fen", "bill_fen",
    "pushes_planned", "pushes_delivered", "pushes_over_quota",
)
DIMENSIONS = ("local_day", "store_id", "template_id", "campaign_id", "channel_id")


def _metric_column():
    return mapped_column(BigInteger, default=0, server_default="0")


class Metrics:
    """The counted columns, shared by tallies and the rollups they become (``METRICS``)."""

    new_contacts: Mapped[int] = _metric_column()
    lost_contacts: Mapped[int] = _metric_column()
    issued: Mapped[int] = _metric_column()
    claimed: Mapped[int] = _metric_column()
    redeemed: Mapped[int] = _metric_column()
    reversed: Mapped[int] = _metric_column()
    discount_fen: Mapped[int] = _metric_column()
    bill_fen: Mapped[int] = _metric_column()
    pushes_planned: Mapped[int] = _metric_column()
    pushes_delivered: Mapped[int] = _metric_column()
    pushes_over_quota: Mapped[int] = _metric_column()


class Tally(Metrics, Base):
    """Counts not yet rolled up (usually seconds old)."""

    __tablename__ = "stat_tallies"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    local_day: Mapped[date] = mapped_column(Date)
    store_id: Mapped[int] = mapped_column(Integer, default=0)
    template_id: Mapped[int] = mapped_column(Integer, default=0)
    campaign_id: Mapped[int] = mapped_column(Integer, default=0)
    channel_id: Mapped[int] = mapped_column(Integer, default=0)


def local_day(at: datetime) -> date:
    return local(at).date()


def _row(day: date, dims: dict, counts: dict) -> dict:
    unknown = set(counts) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics: {sorted(unknown)}")
    row = {"local_day": day, "store_id": 0, "template_id": 0, "campaign_id": 0, "channel_id": 0}
    row.update({k: int(v or 0) for k, v in dims.items()})
    row.update({m: 0 for m in METRICS})
    row.update({k: int(v) for k, v in counts.items()})
    return row


def count(
    session: Session, at: datetime | date, *, store_id: int | None = None, template_id: int | None = None,
    campaign_id: int | None = None, channel_id: int | None = None, **counts: int,
) -> None:
    """Count something that happened at ``at`` (a timestamp, or the local day it counts for)."""
    day = at if not isinstance(at, datetime) else local_day(at)
    dims = {"store_id": store_id, "template_id": template_id, "campaign_id": campaign_id,
            "channel_id": channel_id}
    session.execute(insert(Tally), [_row(day, dims, counts)])


def count_many(session: Session, rows: list[tuple[date, dict, dict]]) -> None:
    """Many counts in one statement: ``(day, dims, counts)`` each (a planning batch's pushes)."""
    if rows:
        session.execute(insert(Tally), [_row(day, dims, counts) for day, dims, counts in rows])
