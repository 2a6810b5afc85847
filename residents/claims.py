"""Store-page claims: a diner we know takes one of a store's coupons themselves, where the
merchant allows it (``CouponTemplate.claimable``, the template form's "允许顾客在门店页领取").

``claimable_at`` is the one rule for "this template may be claimed at this store";
``claim_at_store`` applies it and issues through ``coupons.services.issue_coupon``, whose
conditional UPDATE on the stock and unique (template, holder, seq) key hold under racing
claims. The holder key is the resident's own (``services.holder_ref``), the one the welcome
coupon uses, so a template's per-diner limit counts every coupon the diner got of it, however
it came. Functions take a session and never commit."""
from __future__ import annotations

from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound
from core.localtime import local
from coupons.models import Coupon, CouponSource, CouponTemplate, TemplateStatus
from coupons.services import applies_at, get_template, issue_coupon
from merchants.models import ReviewStatus, Store
from residents.models import Resident
from residents.services import holder_ref


class ClaimRefused(Conflict):
    """The template is not one diners may claim here; ``message`` is for the diner (409)."""


def claimable_at(template: CouponTemplate, store: Store, now: datetime) -> bool:
    """Diners may claim ``template`` on ``store``'s page: the merchant allows it, it is active,
    usable at that store, and not past its last day (local date)."""
    return (
        template.claimable
        and template.status == TemplateStatus.active
        and applies_at(template, store)
        and (template.valid_until is None or template.valid_until >= local(now).date())
    )


def approved_store(session: Session, store_id: int) -> Store:
    store = session.get(Store, store_id)
    if store is None or store.status != ReviewStatus.approved:
        raise NotFound()
    return store


def held(session: Session, resident_id: int, template_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Per template, how many coupons the resident has taken (what the limit counts) and the
    latest one's id (a page links to it)."""
    if not template_ids:
        return {}
    rows = session.execute(
        select(Coupon.template_id, func.max(Coupon.holder_seq), func.max(Coupon.id))
        .where(Coupon.holder_ref == holder_ref(resident_id), Coupon.template_id.in_(template_ids))
        .group_by(Coupon.template_id)
    )
    return {template_id: (taken, coupon_id) for template_id, taken, coupon_id in rows}


def held_counts(session: Session, resident_id: int, template_ids: list[int]) -> dict[int, int]:
    """How many coupons of each template the resident has taken."""
    return {template_id: taken for template_id, (taken, _latest) in held(session, resident_id, template_ids).items()}


def claim_at_store(session: Session, store_id: int, template_id: int, resident: Resident, now: datetime) -> Coupon:
    """One coupon of ``template_id`` for ``resident``, claimed on ``store_id``'s page.

    ``NotFound`` for a store that is not open to diners and for a template that is not the
    store's merchant's (like a made-up id); ``ClaimRefused`` when the merchant does not let
    diners claim it here; ``IssueError`` (a ``Conflict``) when it is not active, over, sold out
    or the diner already holds their limit."""
    if resident.erased_at is not None:
        raise NotFound()
    store = approved_store(session, store_id)
    template = get_template(session, template_id, store.merchant_id)
    if not template.claimable:
        raise ClaimRefused(_l("这张券不能在门店页领取"))
    if not applies_at(template, store):
        raise ClaimRefused(_l("这张券不能在本店使用，请到适用门店的页面领取"))
    return issue_coupon(session, template.id, holder_ref(resident.id), resident_id=resident.id, now=now,
                        source=CouponSource.store, store_id=store.id)
