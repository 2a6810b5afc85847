"""Enrolment and review: an owner submits a merchant and its stores, a manager or admin
approves or rejects each store."""
from __future__ import annotations

from dataclasses import dataclass, field

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, selectinload

from accounts.models import Role, User
from core.db import utcnow
from core.errors import NotFound
from core.localtime import WEEKDAYS
from merchants.errors import ServiceError
from merchants.models import CUISINES, Merchant, Region, RegionLevel, ReviewStatus, Store
from merchants.services.regions import with_region_path
from merchants.services.tenancy import get_store_for, stores_visible_to
from merchants.services.validation import validate_credit_code, validate_mobile


@dataclass
class StoreInput:
    name: str
    address: str
    circle_id: int
    cuisines: list[str]
    avg_spend_fen: int
    opening_hours: dict = field(default_factory=dict)


def _check_store_input(session: Session, data: StoreInput) -> None:
    if not (data.name or "").strip() or len(data.name.strip()) > 100:
        raise ServiceError(_l("请填写门店名称（最多 100 字）。"), "store_name")
    if not (data.address or "").strip() or len(data.address.strip()) > 255:
        raise ServiceError(_l("请填写门店地址。"), "address")
    circle = session.get(Region, data.circle_id) if data.circle_id else None
    if circle is None or circle.level != RegionLevel.circle:
        raise ServiceError(_l("请选择门店所在商圈。"), "circle_id")
    if not data.cuisines:
        raise ServiceError(_l("请至少选择一个菜系。"), "cuisines")
    unknown = [c for c in data.cuisines if c not in CUISINES]
    if unknown:
        raise ServiceError(_l("未知菜系：%(c)s", c=", ".join(unknown)), "cuisines")
    if data.avg_spend_fen < 0:
        raise ServiceError(_l("金额不能为负数。"), "avg_spend")
    for day, ranges in (data.opening_hours or {}).items():
        if day not in WEEKDAYS or not isinstance(ranges, list):
            raise ServiceError(_l("营业时间格式不正确。"), "hours")


def add_store(session: Session, merchant: Merchant, data: StoreInput) -> Store:
    """A new store waits for review (pending)."""
    _check_store_input(session, data)
    store = Store(
        merchant_id=merchant.id,
        name=data.name.strip(),
        address=data.address.strip(),
        circle_id=data.circle_id,
        cuisines=[c for c in CUISINES if c in set(data.cuisines)],
        avg_spend_fen=data.avg_spend_fen,
        opening_hours=data.opening_hours or {},
        status=ReviewStatus.pending,
    )
    session.add(store)
    session.flush()
    return store


def update_store(session: Session, store: Store, data: StoreInput) -> Store:
    """Edit a store; a rejected store goes back to the review queue. Approved stores keep their
    approval unless the business circle changes (a different manager must look at it).

    A new name or address of an approved store waits for review in ``pending_name`` /
    ``pending_address``: the approved values stay in ``name``/``address`` (what diners and
    posters see) until a reviewer approves the change (``review_store``)."""
    _check_store_input(session, data)
    moved = data.circle_id != store.circle_id
    name, address = data.name.strip(), data.address.strip()
    if store.status == ReviewStatus.approved and not moved:
        store.pending_name = name if name != store.name else None
        store.pending_address = address if address != store.address else None
        if store.has_pending_change:
            store.change_requested_at = utcnow()
            store.change_reason = None
        else:
            store.change_requested_at = None
    else:
        store.name, store.address = name, address
        store.pending_name = store.pending_address = store.change_requested_at = None
    store.circle_id = data.circle_id
    store.cuisines = [c for c in CUISINES if c in set(data.cuisines)]
    store.avg_spend_fen = data.avg_spend_fen
    store.opening_hours = data.opening_hours or {}
    if store.status == ReviewStatus.rejected or (moved and store.status == ReviewStatus.approved):
        store.status = ReviewStatus.pending
        store.review_reason = None
        store.reviewed_at = None
    session.flush()
    return store


def enrol_merchant(
    session: Session, owner: User, *, name: str, credit_code: str, contact_mobile: str, store: StoreInput
) -> Merchant:
    """An owner submits their merchant and its first store; both wait for review."""
    if owner.role != Role.owner:
        raise ServiceError(_l("只有商户老板可以提交入驻。"))
    if owner.merchant_id is not None:
        raise ServiceError(_l("您已提交过商户资料。"))
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ServiceError(_l("请填写商户名称（最多 100 字）。"), "name")
    code = validate_credit_code(credit_code)
    mobile = validate_mobile(contact_mobile)
    if session.scalar(select(Merchant.id).where(Merchant.credit_code == code)) is not None:
        raise ServiceError(_l("该统一社会信用代码已入驻。"), "credit_code")
    _check_store_input(session, store)
    merchant = Merchant(name=name, credit_code=code, contact_mobile=mobile)
    session.add(merchant)
    session.flush()
    owner.merchant_id = merchant.id
    add_store(session, merchant, store)
    return merchant


def _awaits_review():
    """Pending stores, and approved stores with a name/address change waiting."""
    return or_(
        Store.status == ReviewStatus.pending,
        and_(
            Store.status == ReviewStatus.approved,
            or_(Store.pending_name.is_not(None), Store.pending_address.is_not(None)),
        ),
    )


def review_queue(session: Session, reviewer: User) -> list[Store]:
    """Stores the reviewer may decide on, oldest first: new or edited-after-rejection stores,
    and approved stores whose new name or address waits (``store.has_pending_change``)."""
    if reviewer.role not in (Role.admin, Role.manager):
        return []
    stmt = (
        stores_visible_to(session, reviewer)
        .where(_awaits_review())
        .options(selectinload(Store.merchant), with_region_path(Store.circle))
        .order_by(func.coalesce(Store.change_requested_at, Store.created_at), Store.id)
    )
    return list(session.scalars(stmt))


def recent_reviews(session: Session, reviewer: User, limit: int = 20) -> list[Store]:
    if reviewer.role not in (Role.admin, Role.manager):
        return []
    stmt = (
        stores_visible_to(session, reviewer)
        .where(Store.status != ReviewStatus.pending)
        .order_by(Store.reviewed_at.desc(), Store.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def review_store(session: Session, reviewer: User, store_id: int, *, approve: bool, reason: str = "") -> Store:
    """Approve or reject a pending store, or an approved store's pending name/address change;
    a rejection must say why (the owner reads it). A rejected change leaves the store
    approved under its approved name and address."""
    if reviewer.role not in (Role.admin, Role.manager):
        raise NotFound()
    store = get_store_for(session, reviewer, store_id)
    change = store.status == ReviewStatus.approved and store.has_pending_change
    if store.status != ReviewStatus.pending and not change:
        raise ServiceError(_l("该门店已审核过。"))
    reason = (reason or "").strip()
    if not approve and not reason:
        raise ServiceError(_l("驳回时请填写原因。"), "reason")
    if len(reason) > 500:
        raise ServiceError(_l("原因最多 500 字。"), "reason")
    if change:
        if approve:
            store.name = store.pending_name if store.pending_name is not None else store.name
            store.address = store.pending_address if store.pending_address is not None else store.address
        store.change_reason = None if approve else reason
        store.pending_name = store.pending_address = store.change_requested_at = None
        store.reviewed_at = utcnow()
        session.flush()
        return store
    store.status = ReviewStatus.approved if approve else ReviewStatus.rejected
    store.review_reason = reason or None
    store.reviewed_at = utcnow()
    session.flush()
    return store
