"""Daily rollups: one row per (local day, store, template, campaign, channel), 0 for "none",
with the store's merchant and circle (or the campaign's merchant) copied in at roll-up time so
a region's or a merchant's range is an index scan. ``stat_cursor`` is the one row that
serialises roll-ups and rebuilds (locked ``FOR UPDATE``) and says how far they have got."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, Integer
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
        Index("ix_stat_daily_campaign", "campaign_id"),
    )


class StatCursor(Base):
    __tablename__ = "stat_cursor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    rolled: Mapped[int] = mapped_column(BigInteger, default=0)  # tallies rolled up so far
    runs: Mapped[int] = mapped_column(BigInteger, default=0)
    rolled_at: Mapped[datetime | None]
    rebuilt_from: Mapped[date | None]  # the last rebuild's first day (None: from the beginning)
    rebuilt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
