""""Why did I (not) get this?": a diner's recent campaign decisions in their own words, read
from the ledger the planner wrote (nothing is recomputed, so the page says what was decided).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.models import Campaign, Decision, Delivery, DeliveryStatus, Push, SendChunk
from campaigns.services import budget
from campaigns.services.dispatch import in_quiet_hours, owner_names
from core.localtime import hhmm

RECENT_DAYS = 60


@dataclass(frozen=True)
class Why:
    campaign: str  # its name
    owner: str  # the merchant (or the region) that ran it
    reason: str  # why it was meant for you (the campaign's own words)
    outcome: str  # what happened, in words
    code: str  # sent | pending | quiet | not_delivered | outbid | capped | opted_out | unreachable | erased
    at: datetime


def for_resident(session: Session, resident_id: int, now: datetime, limit: int = 20) -> list[Why]:
    rows = session.execute(
        select(Push, Campaign, Delivery.status, SendChunk.state)
        .join(Campaign, Campaign.id == Push.campaign_id)
        .outerjoin(Delivery, Delivery.id == Push.delivery_id)
        .outerjoin(SendChunk, SendChunk.id == Delivery.chunk_id)
        .where(Push.resident_id == resident_id, Push.created_at >= now - timedelta(days=RECENT_DAYS))
        .order_by(Push.created_at.desc(), Push.id.desc())
        .limit(limit)
    ).all()
    owners = owner_names(session, list({c.id: c for _p, c, _s, _cs in rows}.values()))
    out = []
    for push, campaign, status, _chunk_state in rows:
        code, outcome = _outcome(push.decision, status, campaign, now)
        out.append(Why(campaign.name, owners[campaign.id], campaign.reason, outcome, code, push.created_at))
    return out


def _outcome(decision: Decision, status: DeliveryStatus | None, campaign: Campaign, now: datetime) -> tuple[str, str]:
    if decision == Decision.matched:
        if status == DeliveryStatus.sent:
            return "sent", _("已发给你")
        if status == DeliveryStatus.planned:
            if in_quiet_hours(campaign, now):
                return "quiet", _("免打扰时段，%(t)s 以后再发", t=hhmm(campaign.quiet_end))
            return "pending", _("即将发给你")
        if status == DeliveryStatus.over_quota:
            return "not_delivered", _("企业微信本期可收的推送已满，没有发出")
        return "not_delivered", _("没有发出（店员未确认发送，或你已不是联系人）")
    return decision.value, {
        Decision.outbid: _("同一时间有更适合你的优惠，这次没有发给你"),
        Decision.capped: _("你本月可收的推送已用完（你自己设的上限或平台上限），这次没有发"),
        Decision.opted_out: _("你关闭了推送，所以没有发"),
        Decision.unreachable: _("你已不是店员的联系人，所以没有发"),
        Decision.erased: _("你的资料已删除，所以没有发"),
    }[decision]


def slots_left(session: Session, resident, now: datetime) -> int:
    """Pushes this diner may still get this month (0 when opted out)."""
    if resident.opted_out:
        return 0
    return budget.remaining_slots(session, resident.id, resident.monthly_cap, budget.local_day(now))
