"""The campaign claim page's rules (``/m/o/<campaign>``, the link every card of a campaign's
message opens): which campaigns a link opens, the coupons it offers, who may claim, the claim,
and the contact-me code shown to a visitor who is not our contact.

A link opens once the campaign has sent (sending, tracking, done, or paused after it began
sending: cards already in diners' chats keep working) and stays open until each coupon's own
validity ends, which ``issue_coupon`` enforces with the stock and the per-diner limit (a
conditional UPDATE and a unique key, whatever the number of racing claims). A draft,
scheduled, planning or cancelled campaign is ``NotFound``, like a made-up id.

The card link's ``k`` names the send chunk it came from; it is stored with the claim for
attribution and trusted for nothing else: who the diner is comes from ``residents.identity``.
Functions take a session and never commit."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from campaigns.models import Campaign, CampaignClaim, CampaignState
from campaigns.services.audience import AudienceRule, scope_store_ids
from core.errors import Forbidden, NotFound
from core.localtime import local
from coupons.models import Coupon, CouponSource, CouponStatus, CouponTemplate, TemplateStatus
from coupons.services import issue_coupon
from merchants.models import Channel, Merchant, Store
from residents import claims as resident_claims
from residents.models import ContactRelationship, RelationshipStatus, Resident
from residents.services import holder_ref

S = CampaignState
OPEN = {S.sending, S.tracking, S.done}  # its cards are (or were) out: their links claim
TOKEN_MAX = 40
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,%d}" % TOKEN_MAX)

# What a card shows for one diner.
CLAIM, HELD, SOLD_OUT, ENDED = "claim", "held", "sold_out", "ended"


class NotContact(Forbidden):
    """The visitor is not (or no longer) our contact: the page shows the store's contact-me
    code, and the claim works once they have added the staff member."""

    def __init__(self) -> None:
        super().__init__(_l("添加店员后即可领取"))


@dataclass
class Offers:
    campaign: Campaign
    templates: list[CouponTemplate]  # in the campaign's card order
    merchants: dict[int, Merchant]


@dataclass
class Card:
    template: CouponTemplate
    merchant: Merchant
    state: str  # CLAIM, HELD, SOLD_OUT or ENDED
    coupon_code: str | None = None  # HELD: the diner's latest coupon of it


def clean_token(raw: object) -> str:
    """The card link's chunk token if it looks like one ([A-Za-z0-9_-], at most 40), else ""."""
    return raw if isinstance(raw, str) and _TOKEN.fullmatch(raw) else ""


def is_open(campaign: Campaign) -> bool:
    if campaign.state in OPEN:
        return True
    return campaign.state == S.paused and any(t.to_state == S.sending for t in campaign.transitions)


def is_contact(resident: Resident | None) -> bool:
    """Someone our members can still message (an open relationship) and not erased."""
    return resident is not None and resident.erased_at is None and bool(resident.reachable)


def campaign_offers(session: Session, campaign_id: int, now: datetime) -> Offers:
    """The campaign a claim link opens and its coupons, in card order; ``NotFound`` unless it
    has sent (a draft, scheduled, planning or cancelled campaign, or no such id). Coupons past
    their validity on ``now`` stay listed (``cards`` shows them as over), so a late visitor
    learns why rather than meeting a missing page."""
    campaign = session.scalar(
        select(Campaign)
        .where(Campaign.id == campaign_id)
        .options(selectinload(Campaign.templates), selectinload(Campaign.transitions))
    )
    if campaign is None or not is_open(campaign):
        raise NotFound()
    ids = [ct.template_id for ct in campaign.templates]
    by_id = {
        t.id: t
        for t in session.scalars(
            select(CouponTemplate).where(CouponTemplate.id.in_(ids or [-1])).options(selectinload(CouponTemplate.stores))
        )
    }
    templates = [by_id[i] for i in ids if i in by_id]
    merchant_ids = {t.merchant_id for t in templates}
    merchants = {m.id: m for m in session.scalars(select(Merchant).where(Merchant.id.in_(merchant_ids or {-1})))}
    return Offers(campaign, templates, merchants)


def cards(session: Session, offers: Offers, resident: Resident | None, now: datetime) -> list[Card]:
    """Each coupon as this diner sees it: claimable, already held up to the limit (with the
    diner's coupon), sold out, or over (not active, or past its last day)."""
    ids = [t.id for t in offers.templates]
    held = resident_claims.held(session, resident.id, ids) if resident is not None else {}
    today = local(now).date()
    out = []
    for t in offers.templates:
        card = Card(t, offers.merchants[t.merchant_id], CLAIM)
        seq, coupon_id = held.get(t.id, (0, None))
        if t.status != TemplateStatus.active or (t.valid_until is not None and t.valid_until < today):
            card.state = ENDED
        elif seq >= t.per_diner_limit:
            card.state = HELD
        elif t.total_stock is not None and t.issued_count >= t.total_stock:
            card.state = SOLD_OUT
        if coupon_id is not None and card.state != CLAIM:
            coupon = session.get(Coupon, coupon_id)
            if coupon is not None and coupon.resident_id == resident.id and coupon.status == CouponStatus.issued:
                card.coupon_code = coupon.short_code
        out.append(card)
    return out


def _credited_store(session: Session, offers: Offers, template_id: int, resident_id: int) -> int | None:
    """The store a campaign claim counts for: the diner's own store of the coupon's merchant
    (an open relationship first), so a region's statistics see the claim where it will be used."""
    merchant_id = next(t.merchant_id for t in offers.templates if t.id == template_id)
    return session.scalar(
        select(ContactRelationship.store_id)
        .join(Store, Store.id == ContactRelationship.store_id)
        .where(ContactRelationship.resident_id == resident_id, Store.merchant_id == merchant_id)
        .order_by((ContactRelationship.status == RelationshipStatus.open).desc(), ContactRelationship.id)
        .limit(1)
    )


def claim(session: Session, campaign_id: int, template_id: int, resident: Resident | None, token: str,
          now: datetime) -> Coupon:
    """One coupon of the campaign's ``template_id`` for ``resident``, recorded with the card
    link's ``token``. ``NotFound`` for a campaign that is not open or a template that is not
    one of its coupons; ``NotContact`` for a visitor who is not our contact; ``IssueError``
    (a ``Conflict``) when the coupon is over, sold out or the diner holds their limit."""
    offers = campaign_offers(session, campaign_id, now)
    if template_id not in {t.id for t in offers.templates}:
        raise NotFound()
    if not is_contact(resident):
        raise NotContact()
    coupon = issue_coupon(session, template_id, holder_ref(resident.id), resident_id=resident.id, now=now,
                          source=CouponSource.campaign, campaign_id=offers.campaign.id,
                          store_id=_credited_store(session, offers, template_id, resident.id))
    session.add(CampaignClaim(campaign_id=offers.campaign.id, coupon_id=coupon.id, template_id=template_id,
                              resident_id=resident.id, token=clean_token(token), created_at=now))
    session.flush()
    return coupon


def contact_code(session: Session, offers: Offers) -> Channel | None:
    """The contact-me code a visitor who is not our contact is shown: an active channel code
    of a store in the campaign's scope (the audience rule's stores and circles first, then the
    owner's whole scope), stores of the merchants whose coupons it offers before others; None
    when no store has one."""
    campaign = offers.campaign
    narrowed = scope_store_ids(session, campaign, AudienceRule.from_dict(campaign.audience))
    everywhere = scope_store_ids(session, campaign, AudienceRule())
    order = {store_id: n for n, store_id in enumerate(dict.fromkeys(narrowed + everywhere))}
    if not order:
        return None
    rows = session.execute(
        select(Channel, Store.merchant_id)
        .join(Store, Store.id == Channel.store_id)
        .where(Channel.store_id.in_(list(order)), Channel.active.is_(True), Channel.qr_code != "",
               Channel.config_id.is_not(None))
        .options(selectinload(Channel.store))
    ).all()
    if not rows:
        return None
    offered = {t.merchant_id for t in offers.templates}
    channel, _merchant = min(rows, key=lambda r: (r[1] not in offered, order[r[0].store_id], r[0].id))
    return channel
