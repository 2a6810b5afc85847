"""Who a campaign reaches: the audience rule, and one SQL statement that finds the residents
it matches and sorts each into eligible or the first reason it is excluded.

The exclusions are never optional: erased, opted out ("quiet me": off), unreachable (no open
relationship with any member) and capped (no slot left under WeCom's quota, our marketing cap
or the diner's own cap, see ``budget``). Reachability, opt-out and caps are one query, so the
preview and the planner cannot disagree."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, case, exists, func, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from campaigns.models import Campaign
from campaigns.services import budget
from core.db import utcnow
from core.errors import Invalid
from coupons.models import Coupon
from merchants.models import CUISINES, ReviewStatus, Store
from merchants.services.regions import circle_ids_within
from residents import taste
from residents.models import ContactRelationship, Resident, ResidentTaste

ELIGIBLE = "eligible"
# Exclusion reasons, in the order they are decided (a resident gets the first that applies).
ERASED, OPTED_OUT, UNREACHABLE, CAPPED = "erased", "opted_out", "unreachable", "capped"
REASONS = (ERASED, OPTED_OUT, UNREACHABLE, CAPPED)
MAX_DAYS = 3650
MAX_LIST = 50
SAMPLE = 5
SMALL_SCOPE_STORES = 50


@dataclass
class AudienceRule:
    """What a campaign targets. Empty lists mean "no condition"."""

    cuisines: list[str] = field(default_factory=list)
    match: str = "any"  # any | all of ``cuisines``
    min_weight: float = taste.PREFERENCE_THRESHOLD  # taste-profile weight (decayed) at least
    circle_ids: list[int] = field(default_factory=list)
    store_ids: list[int] = field(default_factory=list)  # contacts of these stores only
    added_within_days: int | None = None
    no_redemption_days: int | None = None
    claimed_template_id: int | None = None
    not_claimed_template_id: int | None = None

    @classmethod
    def from_dict(cls, data: dict | None) -> AudienceRule:
        """Validated; anything absurd is ``Invalid`` with the field named."""
        data = dict(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise Invalid(f"unknown audience fields: {', '.join(sorted(unknown))}")
        rule = cls(**data)
        rule.cuisines = list(dict.fromkeys(rule.cuisines or []))
        if any(c not in CUISINES for c in rule.cuisines):
            raise Invalid("cuisines: unknown cuisine")
        if rule.match not in ("any", "all"):
            raise Invalid("match: any or all")
        try:
            rule.min_weight = float(rule.min_weight)
        except (TypeError, ValueError):
            raise Invalid("min_weight: a number") from None
        if not 0 <= rule.min_weight <= 100:
            raise Invalid("min_weight: 0..100")
        for name in ("circle_ids", "store_ids"):
            values = getattr(rule, name) or []
            if len(values) > MAX_LIST or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
                raise Invalid(f"{name}: at most {MAX_LIST} ids")
            setattr(rule, name, sorted(set(values)))
        for name in ("added_within_days", "no_redemption_days"):
            value = getattr(rule, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_DAYS):
                raise Invalid(f"{name}: 1..{MAX_DAYS} days")
        for name in ("claimed_template_id", "not_claimed_template_id"):
            value = getattr(rule, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise Invalid(f"{name}: a template id")
        return rule

    def to_dict(self) -> dict:
        return asdict(self)


def scope_store_ids(session: Session, campaign: Campaign, rule: AudienceRule) -> list[int]:
    """The approved stores whose contacts the campaign may reach: the merchant's own, or the
    stores in the region's circles; narrowed by the rule's circles and stores."""
    stmt = select(Store.id).where(Store.status == ReviewStatus.approved)
    if campaign.merchant_id is not None:
        stmt = stmt.where(Store.merchant_id == campaign.merchant_id)
    else:
        stmt = stmt.where(Store.circle_id.in_(circle_ids_within(session, [campaign.region_id]) or {-1}))
    if rule.circle_ids:
        stmt = stmt.where(Store.circle_id.in_(rule.circle_ids))
    if rule.store_ids:
        stmt = stmt.where(Store.id.in_(rule.store_ids))
    return list(session.scalars(stmt.order_by(Store.id)))


def classified(session: Session, campaign: Campaign, now: datetime | None = None, *, id_range=None,
               store_ids: list[int] | None = None, planning: bool = False) -> Select:
    """``select(resident_id, reason, name, slots)`` over every resident the rule matches
    (``slots``: messages they may still receive). Every condition is a semi-join the planner
    may drive from an index (a merchant's few stores, one cuisine) or a hash (a whole region);
    reachability is the column ``residents.reachable``. ``id_range`` (low, high] limits it to
    one batch of the planner's walk over resident ids; ``store_ids`` the scope already known.
    ``planning``: the planner's own batch, whose residents cannot hold a message of this
    campaign yet (each resident is in one batch, written after this query), so its own
    messages are not looked up — the walk fills that table, and its statistics lag."""
    now = now or utcnow()
    rule = AudienceRule.from_dict(campaign.audience)
    store_ids = store_ids if store_ids is not None else scope_store_ids(session, campaign, rule)
    rel = ContactRelationship
    scoped = select(rel.resident_id).where(rel.store_id.in_(store_ids))
    if rule.added_within_days:
        scoped = scoped.where(rel.added_at >= now - timedelta(days=rule.added_within_days))
    filters = [Resident.id.in_(scoped)]
    if id_range is not None:
        # the range goes into the relationships' subquery too, so a batch reads its own rows
        # (by the resident_id index) instead of every relationship of the scope each time
        scoped = scoped.where(rel.resident_id > id_range[0], rel.resident_id <= id_range[1])
        filters = [Resident.id.in_(scoped), Resident.id > id_range[0], Resident.id <= id_range[1]]
    if rule.cuisines:
        threshold = taste.score_threshold(rule.min_weight, now)

        def likes(*cuisines):
            return exists().where(
                ResidentTaste.resident_id == Resident.id,
                ResidentTaste.cuisine.in_(cuisines),
                ResidentTaste.score >= threshold,
            )

        filters.append(likes(*rule.cuisines) if rule.match == "any" else and_(*[likes(c) for c in rule.cuisines]))
    if rule.no_redemption_days:
        filters.append(~exists().where(
            Coupon.resident_id == Resident.id, Coupon.redeemed_at >= now - timedelta(days=rule.no_redemption_days)
        ))
    if rule.claimed_template_id:
        filters.append(exists().where(Coupon.resident_id == Resident.id, Coupon.template_id == rule.claimed_template_id))
    if rule.not_claimed_template_id:
        filters.append(~exists().where(
            Coupon.resident_id == Resident.id, Coupon.template_id == rule.not_claimed_template_id
        ))
    caps = budget.caps_on(budget.local_day(max(now, _aware(campaign.send_from))))
    # A few stores' contacts read only their own pushes; a region's read the month's pushes once
    # (restricting them too would hash the region's relationships a second time).
    few = len(store_ids) <= SMALL_SCOPE_STORES
    usage = budget.usage_subquery(caps, exclude_campaign_id=None if planning else campaign.id,
                                  resident_ids=scoped if few else None,
                                  id_range=id_range)
    reason = case(
        (Resident.erased_at.is_not(None), ERASED),
        (Resident.opted_out.is_(True), OPTED_OUT),
        (Resident.reachable.is_(False), UNREACHABLE),
        (budget.over_cap_clause(usage, Resident.monthly_cap, caps), CAPPED),
        else_=ELIGIBLE,
    )
    return (
        select(Resident.id.label("resident_id"), reason.label("reason"), Resident.name.label("name"),
               budget.slots_clause(usage, Resident.monthly_cap, caps).label("slots"))
        .outerjoin(usage, usage.c.resident_id == Resident.id)
        .where(*filters)
    )


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=utcnow().tzinfo)


@dataclass(frozen=True)
class Preview:
    eligible: int
    excluded: dict[str, int]  # reason -> residents
    sample: list[str]  # masked names of a few eligible residents

    @property
    def matched(self) -> int:
        return self.eligible + sum(self.excluded.values())


def mask(name: str) -> str:
    """张** — enough for a merchant to see real people are meant, not who."""
    name = (name or "").strip()
    return (name[0] + "*" * max(1, len(name) - 1)) if name else "**"


def tune_for_counting(session: Session) -> None:
    """PostgreSQL, this transaction only: hashes for a million rows fit in memory, and no JIT
    (compiling the plan costs more than it saves on a statement run once)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL work_mem = '64MB'"))
        session.execute(text("SET LOCAL jit = off"))


def preview(session: Session, campaign: Campaign, now: datetime | None = None) -> Preview:
    """Counts by reason (one aggregate row, no sort) and a masked sample, in two statements."""
    tune_for_counting(session)
    audience = classified(session, campaign, now).subquery("audience")
    names = (ELIGIBLE, *REASONS)
    row = session.execute(
        select(*[func.coalesce(func.sum(case((audience.c.reason == n, 1), else_=0)), 0).label(n) for n in names])
    ).one()
    counts = dict(zip(names, row))
    sample = session.scalars(
        select(audience.c.name).where(audience.c.reason == ELIGIBLE).order_by(audience.c.resident_id).limit(SAMPLE)
    ).all()
    return Preview(
        eligible=counts.get(ELIGIBLE, 0),
        excluded={reason: counts.get(reason, 0) for reason in REASONS},
        sample=[mask(n) for n in sample],
    )
