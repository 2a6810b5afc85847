"""Campaigns as their owners see them: create and edit drafts, the one tenant lookup, and the
state machine whose every move is recorded (from, to, who, when).

draft → scheduled → planning → sending → tracking → done, plus paused (from scheduled,
planning or sending; resuming returns to where it paused) and cancelled (from any state that
has not ended). A move is one conditional UPDATE (``WHERE state = :from``), so two people (or
a person and the clock) moving the same campaign at once cannot both succeed."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from accounts.models import Role, User
from campaigns.models import Campaign, CampaignState, CampaignTemplate, CampaignTransition, Channels
from campaigns.services.audience import AudienceRule, scope_store_ids
from core.db import utcnow
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.signals import campaign_finished, send_after_commit
from coupons.models import CouponTemplate, FundedBy, TemplateStatus
from merchants.models import ReviewStatus, Store
from merchants.services.regions import circle_ids_within

S = CampaignState
MOVES: dict[CampaignState, set[CampaignState]] = {
    S.draft: {S.scheduled, S.cancelled},
    S.scheduled: {S.draft, S.planning, S.paused, S.cancelled},
    S.planning: {S.sending, S.paused, S.cancelled},
    S.sending: {S.tracking, S.paused, S.cancelled},
    S.tracking: {S.done, S.cancelled},
    S.paused: {S.scheduled, S.planning, S.sending, S.cancelled},
    S.done: set(),
    S.cancelled: set(),
}
ENDED = {S.done, S.cancelled}
MAX_TEMPLATES = 9  # one digest carries at most 9 link cards
MAX_WINDOW_DAYS = 31
NAME_MAX, MESSAGE_MAX, REASON_MAX = 64, 1000, 120


@dataclass
class CampaignInput:
    name: str
    message: str
    reason: str
    template_ids: list[int]
    send_from: datetime
    send_until: datetime
    channels: Channels = Channels.private
    audience: dict = field(default_factory=dict)
    quiet_start: int = 21 * 60
    quiet_end: int = 9 * 60


# --------------------------------------------------------------------------- tenancy


def campaigns_visible_to(session: Session, user: User):
    """``select(Campaign)`` limited to ``user``: admin all, an owner their merchant's, a
    manager the campaigns of their own regions."""
    stmt = select(Campaign)
    if user.role == Role.admin:
        return stmt
    if user.role == Role.owner:
        return stmt.where(Campaign.merchant_id == (user.merchant_id or -1))
    if user.role == Role.manager:
        return stmt.where(Campaign.region_id.in_([r.id for r in user.regions] or [-1]))
    return stmt.where(False)


def get_campaign_for(session: Session, user: User, campaign_id: int, *, for_update: bool = False) -> Campaign:
    """By id *and* owner: another tenant's campaign is NotFound, like a made-up id."""
    stmt = campaigns_visible_to(session, user).where(Campaign.id == campaign_id).options(
        selectinload(Campaign.templates), selectinload(Campaign.transitions)
    )
    campaign = session.scalar(stmt.with_for_update(of=Campaign) if for_update else stmt)
    if campaign is None:
        raise NotFound()
    return campaign


# --------------------------------------------------------------------------- drafts


def _owner_of(user: User, region_id: int | None) -> tuple[int | None, int | None]:
    if user.role == Role.owner:
        if user.merchant_id is None:
            raise Forbidden("enrol first")
        return user.merchant_id, None
    if user.role == Role.manager:
        mine = {r.id for r in user.regions}
        region_id = region_id if region_id is not None else (min(mine) if len(mine) == 1 else None)
        if region_id is None or region_id not in mine:
            raise Invalid("region: one of your regions")
        return None, region_id
    raise Forbidden("only merchants and regional managers run campaigns")


def _check(session: Session, data: CampaignInput, merchant_id: int | None, region_id: int | None) -> AudienceRule:
    name, message, reason = data.name.strip(), data.message.strip(), data.reason.strip()
    if not 1 <= len(name) <= NAME_MAX:
        raise Invalid(f"name: 1..{NAME_MAX} characters")
    if not 1 <= len(message) <= MESSAGE_MAX:
        raise Invalid(f"message: 1..{MESSAGE_MAX} characters")
    if not 1 <= len(reason) <= REASON_MAX:
        raise Invalid(f"reason: 1..{REASON_MAX} characters (why the diner gets this)")
    ids = list(dict.fromkeys(data.template_ids))
    if not 1 <= len(ids) <= MAX_TEMPLATES:
        raise Invalid(f"templates: 1..{MAX_TEMPLATES}")
    templates = session.scalars(select(CouponTemplate).where(CouponTemplate.id.in_(ids))).all()
    for template in templates:
        if template.status != TemplateStatus.active:
            raise Invalid(f"template {template.id} is not active")
        if merchant_id is not None and template.merchant_id != merchant_id:
            templates = []  # another merchant's template: as if it did not exist
            break
        if region_id is not None and template.funded_by != FundedBy.platform:
            raise Invalid("a regional campaign hands out platform-funded templates only")
    if len(templates) != len(ids):
        raise NotFound("template")
    if region_id is not None:  # platform-funded, and redeemable somewhere in the region
        circles = circle_ids_within(session, [region_id]) or {-1}
        local = set(session.scalars(select(Store.merchant_id).where(
            Store.circle_id.in_(circles), Store.status == ReviewStatus.approved,
            Store.merchant_id.in_({t.merchant_id for t in templates}))))
        if any(t.merchant_id not in local for t in templates):
            raise NotFound("template")
    if data.send_until <= data.send_from:
        raise Invalid("send window: the end comes after the start")
    if data.send_until - data.send_from > timedelta(days=MAX_WINDOW_DAYS):
        raise Invalid(f"send window: at most {MAX_WINDOW_DAYS} days")
    if not (0 <= data.quiet_start < 1440 and 0 <= data.quiet_end < 1440):
        raise Invalid("quiet hours: times of day")
    return AudienceRule.from_dict(data.audience)


def create_campaign(session: Session, user: User, data: CampaignInput, *, region_id: int | None = None) -> Campaign:
    merchant_id, region_id = _owner_of(user, region_id)
    rule = _check(session, data, merchant_id, region_id)
    campaign = Campaign(
        merchant_id=merchant_id, region_id=region_id, name=data.name.strip(), message=data.message.strip(),
        reason=data.reason.strip(), audience=rule.to_dict(), channels=data.channels, send_from=data.send_from,
        send_until=data.send_until, quiet_start=data.quiet_start, quiet_end=data.quiet_end, created_by_id=user.id,
    )
    campaign.templates = [CampaignTemplate(template_id=t, position=n) for n, t in enumerate(dict.fromkeys(data.template_ids))]
    session.add(campaign)
    session.flush()
    _check_scope(session, campaign, rule)
    session.add(CampaignTransition(campaign_id=campaign.id, from_state=None, to_state=S.draft, user_id=user.id,
                                   note="created"))
    session.flush()
    return campaign


def _check_scope(session: Session, campaign: Campaign, rule: AudienceRule) -> None:
    """Stores and circles named in the rule must be the owner's to name."""
    if rule.store_ids and len(scope_store_ids(session, campaign, AudienceRule(store_ids=rule.store_ids))) != len(
        rule.store_ids
    ):
        raise NotFound("store")
    if rule.circle_ids and campaign.region_id is not None:
        if not set(rule.circle_ids) <= circle_ids_within(session, [campaign.region_id]):
            raise NotFound("circle")


def update_campaign(session: Session, user: User, campaign_id: int, data: CampaignInput) -> Campaign:
    campaign = get_campaign_for(session, user, campaign_id, for_update=True)
    if campaign.state != S.draft:
        raise Conflict("only a draft can be edited")
    rule = _check(session, data, campaign.merchant_id, campaign.region_id)
    campaign.name, campaign.message, campaign.reason = data.name.strip(), data.message.strip(), data.reason.strip()
    campaign.audience, campaign.channels = rule.to_dict(), data.channels
    campaign.send_from, campaign.send_until = data.send_from, data.send_until
    campaign.quiet_start, campaign.quiet_end = data.quiet_start, data.quiet_end
    campaign.templates = [CampaignTemplate(template_id=t, position=n) for n, t in enumerate(dict.fromkeys(data.template_ids))]
    session.flush()
    _check_scope(session, campaign, rule)
    return campaign


# --------------------------------------------------------------------------- the state machine


def move(session: Session, campaign_id: int, to: CampaignState, *, user_id: int | None = None, note: str = "",
         expect: CampaignState | None = None) -> CampaignState:
    """Move the campaign to ``to`` if that is a legal move from its current state (or from
    ``expect`` when given); records the transition. ``Conflict`` otherwise."""
    current = session.scalar(select(Campaign.state).where(Campaign.id == campaign_id))
    if current is None:
        raise NotFound()
    frm = expect or current
    if to not in MOVES[frm]:
        raise Conflict(f"a {frm.value} campaign cannot become {to.value}")
    done = session.execute(
        update(Campaign).where(Campaign.id == campaign_id, Campaign.state == frm)
        .values(state=to, updated_at=utcnow()).execution_options(synchronize_session=False)
    ).rowcount
    if done != 1:
        raise Conflict(f"the campaign is no longer {frm.value}")
    session.add(CampaignTransition(campaign_id=campaign_id, from_state=frm, to_state=to, user_id=user_id,
                                   note=note[:200]))
    session.flush()
    if to in ENDED:
        send_after_commit(session, campaign_finished, campaign_id=campaign_id, state=to.value)
    session.expire_all()
    return to


def launch(session: Session, user: User, campaign_id: int, now: datetime | None = None) -> Campaign:
    """draft → scheduled: the clock starts planning when the window opens."""
    campaign = get_campaign_for(session, user, campaign_id)
    if campaign.send_until <= (now or utcnow()):
        raise Invalid("the send window is over")
    move(session, campaign.id, S.scheduled, user_id=user.id, note="launched", expect=S.draft)
    return get_campaign_for(session, user, campaign_id)


def pause(session: Session, user: User, campaign_id: int) -> Campaign:
    campaign = get_campaign_for(session, user, campaign_id)
    move(session, campaign.id, S.paused, user_id=user.id, note=f"paused while {campaign.state.value}")
    return get_campaign_for(session, user, campaign_id)


def resume(session: Session, user: User, campaign_id: int) -> Campaign:
    """Back to the state it paused in (idempotent for a campaign that is not paused)."""
    campaign = get_campaign_for(session, user, campaign_id)
    if campaign.state != S.paused:
        return campaign
    before = next((t.from_state for t in reversed(campaign.transitions) if t.to_state == S.paused), S.scheduled)
    move(session, campaign.id, before or S.scheduled, user_id=user.id, note="resumed", expect=S.paused)
    return get_campaign_for(session, user, campaign_id)


def cancel(session: Session, user: User, campaign_id: int) -> Campaign:
    campaign = get_campaign_for(session, user, campaign_id)
    move(session, campaign.id, S.cancelled, user_id=user.id, note="cancelled")
    return get_campaign_for(session, user, campaign_id)
