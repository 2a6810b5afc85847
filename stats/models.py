"""Rollups. ``stat_daily``: one row per (local day, store, template, campaign, channel), 0 for
"none", with the store's merchant and circle (or the campaign's merchant) copied in at roll-up
time — what a store's, a campaign's or a coupon's drill-down reads. ``stat_store_daily`` and
``stat_store_monthly``: the same counts per store (and merchant) and day (month), about a tenth of the rows,
for every region, circle, merchant and store question that does not split by coupon, campaign
or code; a store-less row (a campaign's pushes) keeps its campaign there, every other row has
campaign 0. ``stat_cursor`` is the one row that serialises roll-ups and rebuilds (locked
``FOR UPDATE``) and says how far they have got."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, Integer, text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, utcnow
from core.tally import Metrics


class DailyStat(Metrics, Base):
    __tablename__ = "stat_daily"

    local_day: Mapped[date] = mapped_column(Date, primary_key=True)
    store_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    template_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(Integer, default=0)
    circle_id: Mapped[int] = mapped_column(Integer, default=0)


    __table_args__ = (
        Index("ix_stat_daily_circle_day", "circle_id", "local_day"),
        Index("ix_stat_daily_merchant_day", "merchant_id", "local_day"),
        Index("ix_stat_daily_store_day", "store_id", "local_day"),
        Index("ix_stat_daily_campaign_day", "campaign_id", "local_day"),
    )


class _ByStore(Metrics):
    """A coarser rollup's columns: day (or month's first day), store, the campaign of a
    store-less row, and the merchant (in the key: store-less rows of different merchants —
    a coupon handed out with no store, say — must not share one)."""

    local_day: Mapped[date] = mapped_column(Date, primary_key=True)
    store_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0 unless store_id is 0
    merchant_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    circle_id: Mapped[int] = mapped_column(Integer, default=0)


def _by_store_indexes(name: str) -> tuple:
    return (
        Index(f"ix_{name}_circle_day", "circle_id", "local_day"),
        Index(f"ix_{name}_merchant_day", "merchant_id", "local_day"),
        Index(f"ix_{name}_store_day", "store_id", "local_day"),
        Index(f"ix_{name}_storeless", "campaign_id", "local_day", postgresql_where=text("store_id = 0"),
              sqlite_where=text("store_id = 0")),
    )


class StoreDayStat(_ByStore, Base):
    __tablename__ = "stat_store_daily"
    __table_args__ = _by_store_indexes("stat_store_daily")


class StoreMonthStat(_ByStore, Base):
    """``local_day`` is the month's first day."""

    __tablename__ = "stat_store_monthly"
    __table_args__ = _by_store_indexes("stat_store_monthly")


class StatCursor(Base):
    __tablename__ = "stat_cursor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    rolled: Mapped[int] = mapped_column(BigInteger, default=0)  # tallies rolled up so far
    runs: Mapped[int] = mapped_column(BigInteger, default=0)
    rolled_at: Mapped[datetime | None]
    rebuilt_from: Mapped[date | None]  # the last rebuild's first day (None: from the beginning)
    rebuilt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
