"""What the campaigns hold about one resident, for the privacy export: every campaign planned
to them (and whether the message went out), and every coupon they claimed from one. The
resident's own rows are ``residents.privacy``'s; the roof puts the two together."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.models import Campaign, CampaignClaim, Delivery, Push
from coupons.models import CouponTemplate


def _value(v):
    return getattr(v, "value", v)


def export_for(session: Session, resident_id: int) -> dict[str, Any]:
    pushes = session.execute(
        select(Push, Campaign.name, Delivery)
        .join(Campaign, Campaign.id == Push.campaign_id)
        .outerjoin(Delivery, Delivery.id == Push.delivery_id)
        .where(Push.resident_id == resident_id)
        .order_by(Push.id)
    ).all()
    claims = session.execute(
        select(CampaignClaim, Campaign.name, CouponTemplate.name)
        .join(Campaign, Campaign.id == CampaignClaim.campaign_id)
        .join(CouponTemplate, CouponTemplate.id == CampaignClaim.template_id)
        .where(CampaignClaim.resident_id == resident_id)
        .order_by(CampaignClaim.id)
    ).all()
    return {
        "campaign_messages": [
            {"campaign": {"id": push.campaign_id, "name": name}, "decision": _value(push.decision),
             "planned_at": push.created_at.isoformat(),
             "message": None if delivery is None else {
                 "status": _value(delivery.status), "day": delivery.local_day.isoformat(),
                 "sent_at": delivery.sent_at.isoformat() if delivery.sent_at else None}}
            for push, name, delivery in pushes
        ],
        "campaign_claims": [
            {"campaign": {"id": claim.campaign_id, "name": name}, "coupon_id": claim.coupon_id,
             "template": {"id": claim.template_id, "name": template}, "claimed_at": claim.created_at.isoformat()}
            for claim, name, template in claims
        ],
    }
