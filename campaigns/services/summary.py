"""The campaigns page's headline: this month's messages carrying the owner's cards, against the
room left in their contacts' caps — so a merchant (or a regional manager, per region) sees how
much of the month's budget is spent before planning another campaign."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask_babel import gettext as _
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from accounts.models import Role, User
from campaigns.models import Campaign, Channels, Delivery, DeliveryStatus, Push
from campaigns.services import budget
from campaigns.services.audience import preview
from merchants.models import Merchant


@dataclass(frozen=True)
class QuotaRow:
    label: str  # the merchant, or the region
    sent: int  # messages delivered this month carrying its cards
    pending: int  # planned, not yet confirmed by the member
    not_delivered: int  # over quota, not a contact, unsent
    room: int  # contacts who may still get a message this month
    capped: int  # contacts with no slot left this month
    reach: int  # contacts in scope (not erased, not opted out, reachable)


def quota_summary(session: Session, user: User, now: datetime) -> list[QuotaRow]:
    owners: list[tuple[str, dict]] = []
    if user.role == Role.owner and user.merchant_id:
        name = session.scalar(select(Merchant.name).where(Merchant.id == user.merchant_id)) or ""
        owners.append((name, {"merchant_id": user.merchant_id}))
    elif user.role == Role.manager:
        owners += [(r.name, {"region_id": r.id}) for r in sorted(user.regions, key=lambda r: r.id)]
    month = budget.month_period(budget.local_day(now), 0)
    rows = []
    for label, owner in owners:
        campaign_ids = select(Campaign.id).filter_by(**owner)
        counts = dict(session.execute(
            select(Delivery.status, func.count(func.distinct(Delivery.id)))
            .join(Push, Push.delivery_id == Delivery.id)
            .where(Push.campaign_id.in_(campaign_ids), Delivery.local_day >= month.start, Delivery.local_day < month.end)
            .group_by(Delivery.status)
        ).all())
        # everyone in the owner's reach, as a campaign with no condition would see them now
        everyone = Campaign(name="", message="", reason="", audience={}, channels=Channels.private, send_from=now,
                            send_until=now, **owner)
        p = preview(session, everyone, now)
        rows.append(QuotaRow(
            label=label or _("未命名"), sent=counts.get(DeliveryStatus.sent, 0), pending=counts.get(DeliveryStatus.planned, 0),
            not_delivered=sum(n for s, n in counts.items() if s not in (DeliveryStatus.sent, DeliveryStatus.planned)),
            room=p.eligible, capped=p.excluded.get("capped", 0), reach=p.eligible + p.excluded.get("capped", 0),
        ))
    return rows
