"""Campaign ledger rows for tests that need a diner to have been sent something already."""
from __future__ import annotations

import secrets
from datetime import date

from sqlalchemy import select

from campaigns.models import Decision, Delivery, DeliveryStatus, PlanRound, Push, SendChunk
from merchants.models import Member


def sent_before(session, campaign_id: int, resident_id: int, day: date,
                status: DeliveryStatus = DeliveryStatus.planned) -> Delivery:
    """``campaign_id`` already planned (or sent) one message to the resident on ``day``."""
    member = session.scalar(select(Member).order_by(Member.id)) or Member(userid=f"m{secrets.token_hex(3)}", name="m")
    session.add(member)
    round_ = PlanRound(state="planned", local_day=day)
    session.add(round_)
    session.flush()
    chunk = SendChunk(round_id=round_.id, member_id=member.id, card_set=str(campaign_id), number=0, size=1,
                      token=secrets.token_urlsafe(12))
    session.add(chunk)
    session.flush()
    delivery = Delivery(chunk_id=chunk.id, resident_id=resident_id, local_day=day, status=status)
    session.add(delivery)
    session.flush()
    session.add(Push(campaign_id=campaign_id, resident_id=resident_id, decision=Decision.matched,
                     delivery_id=delivery.id))
    session.flush()
    return delivery
