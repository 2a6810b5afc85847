"""Coupon templates: the terms a merchant offers, their validation, status changes, the one
tenant lookup, and the one rule for "this template applies at this store"."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core.bounds import MAX_DATE, MIN_DATE, in_date_range
from core.errors import Invalid, NotFound
from coupons.models import (
    ALL_WEEKDAYS,
    CouponKind,
    CouponTemplate,
    FundedBy,
    TemplateStatus,
)
from coupons.services.display import status_label
from merchants.models import ReviewStatus, Store

STATUS_TRANSITIONS = {
    TemplateStatus.draft: {TemplateStatus.draft, TemplateStatus.active, TemplateStatus.ended},
    TemplateStatus.active: {TemplateStatus.active, TemplateStatus.paused, TemplateStatus.ended},
    TemplateStatus.paused: {TemplateStatus.paused, TemplateStatus.active, TemplateStatus.ended},
    TemplateStatus.ended: {TemplateStatus.ended},
}
# Terms a diner already holds; frozen once a coupon of the template is out.
FROZEN_TERMS = ("kind", "value", "cap_fen", "min_spend_fen", "valid_from", "valid_until", "valid_days")
# Bounds of a template's numbers (fen values are bounded by ``core.money``'s 1,000,000 yuan);
# dates lie in ``core.bounds``' 2000-01-01..2099-12-31, so a coupon's end always exists.
MAX_FEN = 100_000_000
MAX_VALID_DAYS = 366
MAX_STOCK = 1_000_000
MAX_PER_DINER = 100


class TemplateError(Invalid):
    """Invalid template values; ``errors`` maps field name -> message (shown on the form)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass
class TemplateSpec:
    """A template's terms in fen/ints, as the form or a seed script produces them."""

    name: str
    kind: CouponKind
    value: int
    min_spend_fen: int = 0
    cap_fen: int | None = None
    valid_from: date | None = None
    valid_until: date | None = None
    valid_days: int | None = None
    weekdays_mask: int = ALL_WEEKDAYS
    hours_start: int | None = None  # minutes after local midnight
    hours_end: int | None = None
    store_ids: list[int] = field(default_factory=list)  # empty = every store of the merchant
    total_stock: int | None = None
    per_diner_limit: int = 1
    funded_by: FundedBy = FundedBy.merchant
    status: TemplateStatus = TemplateStatus.draft
    description: str = ""
    claimable: bool = False  # diners may claim it on the store page

    @classmethod
    def from_template(cls, t: CouponTemplate) -> "TemplateSpec":
        return cls(
            name=t.name, kind=t.kind, value=t.value, min_spend_fen=t.min_spend_fen,
            cap_fen=t.cap_fen, valid_from=t.valid_from, valid_until=t.valid_until,
            valid_days=t.valid_days, weekdays_mask=t.weekdays_mask, hours_start=t.hours_start,
            hours_end=t.hours_end, store_ids=[s.id for s in t.stores], total_stock=t.total_stock,
            per_diner_limit=t.per_diner_limit, funded_by=t.funded_by, status=t.status,
            description=t.description, claimable=t.claimable,
        )


def validate_spec(spec: TemplateSpec) -> dict[str, str]:
    """The schema's CHECK rules, worded for a merchant; returns field -> message."""
    e: dict[str, str] = {}
    if not spec.name or not spec.name.strip():
        e["name"] = _l("请填写券名称")
    elif len(spec.name) > 64:
        e["name"] = _l("券名称最多 64 个字")
    if spec.min_spend_fen is None or spec.min_spend_fen < 0:
        e["min_spend_fen"] = _l("最低消费不能为负")
    elif spec.min_spend_fen > MAX_FEN:
        e["min_spend_fen"] = _l("金额过大。")
    if spec.cap_fen is not None and spec.cap_fen > MAX_FEN:
        e["cap_fen"] = _l("金额过大。")
    if spec.kind == CouponKind.percent_off:
        if spec.value is None or not 1 <= spec.value <= 99:
            e["value"] = _l("折扣须在 1 到 99 之间（85 表示八五折）")
        if not spec.cap_fen or spec.cap_fen <= 0:
            e["cap_fen"] = _l("折扣券须设置最高优惠金额")
    else:
        if spec.value is None or spec.value <= 0:
            e["value"] = _l("面额须大于 0")
        elif spec.value > MAX_FEN:
            e["value"] = _l("金额过大。")
        if spec.cap_fen is not None and spec.cap_fen <= 0:
            e["cap_fen"] = _l("最高优惠须大于 0")
    if spec.kind == CouponKind.amount_off and "value" not in e and "min_spend_fen" not in e:
        if spec.min_spend_fen <= 0:
            e["min_spend_fen"] = _l("满减券须设置使用门槛")
        elif spec.min_spend_fen < spec.value:
            e["min_spend_fen"] = _l("使用门槛不能低于减免金额")
    if spec.valid_days is not None:
        if spec.valid_from or spec.valid_until:
            e["valid_days"] = _l("有效期请二选一：日期范围或领取后天数")
        elif spec.valid_days <= 0 or spec.valid_days > MAX_VALID_DAYS:
            e["valid_days"] = _l("领取后有效天数须在 1 到 366 之间")
    else:
        if not spec.valid_from or not spec.valid_until:
            e["valid_from"] = _l("请填写有效期的开始和结束日期，或领取后有效天数")
        elif not in_date_range(spec.valid_from) or not in_date_range(spec.valid_until):
            wrong = "valid_from" if not in_date_range(spec.valid_from) else "valid_until"
            e[wrong] = _l("日期须在 %(low)s 到 %(high)s 之间", low=MIN_DATE.isoformat(), high=MAX_DATE.isoformat())
        elif spec.valid_until < spec.valid_from:
            e["valid_until"] = _l("结束日期不能早于开始日期")
    if not spec.weekdays_mask or not 1 <= spec.weekdays_mask <= ALL_WEEKDAYS:
        e["weekdays_mask"] = _l("至少选择一个可用日")
    if (spec.hours_start is None) != (spec.hours_end is None):
        e["hours_start"] = _l("可用时段须同时填写开始和结束")
    elif spec.hours_start is not None and not (0 <= spec.hours_start < spec.hours_end <= 1440):
        e["hours_start"] = _l("可用时段的开始须早于结束（不支持跨夜）")
    if spec.total_stock is not None and spec.total_stock <= 0:
        e["total_stock"] = _l("库存须大于 0，不限库存请留空")
    elif spec.total_stock is not None and spec.total_stock > MAX_STOCK:
        e["total_stock"] = _l("库存须大于 0 且最多 %(n)d 张，不限库存请留空", n=MAX_STOCK)
    if spec.per_diner_limit is None or spec.per_diner_limit < 1:
        e["per_diner_limit"] = _l("每人限领至少 1 张")
    elif spec.per_diner_limit > MAX_PER_DINER:
        e["per_diner_limit"] = _l("每人限领 1 到 %(n)d 张", n=MAX_PER_DINER)
    return e


# ---------------------------------------------------------------- lookups


def get_template(session: Session, template_id: int, merchant_id: int) -> CouponTemplate:
    """The one tenant lookup: by id *and* merchant, so no caller can forget the scope.
    Another merchant's template is NotFound, exactly like a missing one."""
    template = session.scalar(
        select(CouponTemplate)
        .where(CouponTemplate.id == template_id, CouponTemplate.merchant_id == merchant_id)
        .options(selectinload(CouponTemplate.stores))
    )
    if template is None:
        raise NotFound()
    return template


def list_templates(session: Session, merchant_id: int) -> list[CouponTemplate]:
    return list(
        session.scalars(
            select(CouponTemplate)
            .where(CouponTemplate.merchant_id == merchant_id)
            .options(selectinload(CouponTemplate.stores))
            .order_by(CouponTemplate.id.desc())
        )
    )


# ---------------------------------------------------------------- where a template applies


def applies_at(template: CouponTemplate, store: Store) -> bool:
    """The template is usable at ``store``: a store of its merchant, and the template names
    no stores (= all of them) or names this one."""
    if store.merchant_id != template.merchant_id:
        return False
    return not template.stores or store.id in {s.id for s in template.stores}


def templates_for_store(session: Session, store: Store, *, active_on: date | None = None) -> list[CouponTemplate]:
    """The merchant's active templates usable at ``store`` and, given ``active_on`` (a local
    date), not past their end date."""
    templates = session.scalars(
        select(CouponTemplate)
        .where(CouponTemplate.merchant_id == store.merchant_id, CouponTemplate.status == TemplateStatus.active)
        .options(selectinload(CouponTemplate.stores))
        .order_by(CouponTemplate.id)
    )
    return [
        t for t in templates
        if applies_at(t, store) and (active_on is None or t.valid_until is None or t.valid_until >= active_on)
    ]


def stores_for_templates(session: Session, templates: list[CouponTemplate]) -> dict[int, list[Store]]:
    """Where each template can be used: its own stores, or every approved store of the
    merchant when it names none. One query for those, whatever the number of templates."""
    merchant_ids = {t.merchant_id for t in templates if not t.stores}
    by_merchant: dict[int, list[Store]] = {}
    if merchant_ids:
        rows = session.scalars(
            select(Store)
            .where(Store.merchant_id.in_(merchant_ids), Store.status == ReviewStatus.approved)
            .order_by(Store.id)
        )
        for store in rows:
            by_merchant.setdefault(store.merchant_id, []).append(store)
    return {t.id: list(t.stores) or by_merchant.get(t.merchant_id, []) for t in templates}


# ---------------------------------------------------------------- changes


def _stores_of(session: Session, merchant_id: int, store_ids: list[int]) -> list[Store]:
    if not store_ids:
        return []
    stores = list(
        session.scalars(select(Store).where(Store.id.in_(store_ids), Store.merchant_id == merchant_id))
    )
    if len(stores) != len(set(store_ids)):
        raise TemplateError({"store_ids": _l("只能选择本商户的门店")})
    return stores


def _apply(t: CouponTemplate, spec: TemplateSpec, stores: list[Store]) -> None:
    for name in (
        "name", "kind", "value", "min_spend_fen", "cap_fen", "valid_from", "valid_until",
        "valid_days", "weekdays_mask", "hours_start", "hours_end", "total_stock",
        "per_diner_limit", "funded_by", "status", "description", "claimable",
    ):
        setattr(t, name, getattr(spec, name))
    t.name = spec.name.strip()
    t.stores = stores


def create_template(session: Session, merchant_id: int, spec: TemplateSpec) -> CouponTemplate:
    errors = validate_spec(spec)
    if errors:
        raise TemplateError(errors)
    stores = _stores_of(session, merchant_id, spec.store_ids)
    t = CouponTemplate(merchant_id=merchant_id, issued_count=0)
    _apply(t, spec, stores)
    session.add(t)
    session.flush()
    return t


def _transition_error(old: TemplateStatus, new: TemplateStatus) -> str:
    return _l("不能从“%(a)s”改为“%(b)s”", a=status_label(old), b=status_label(new))


def update_template(session: Session, template: CouponTemplate, spec: TemplateSpec) -> CouponTemplate:
    """Edit a template. Once coupons are out, their terms are frozen (diners hold them)."""
    errors = validate_spec(spec)
    if spec.status not in STATUS_TRANSITIONS[template.status]:
        errors["status"] = _transition_error(template.status, spec.status)
    if template.issued_count:
        for name in FROZEN_TERMS:
            if getattr(spec, name) != getattr(template, name):
                errors[name] = _l("已有券发出，面额、门槛和有效期不能再改")
        if spec.total_stock is not None and spec.total_stock < template.issued_count:
            errors["total_stock"] = _l("库存不能少于已发出的 %(n)d 张", n=template.issued_count)
    if errors:
        raise TemplateError(errors)
    stores = _stores_of(session, template.merchant_id, spec.store_ids)
    _apply(template, spec, stores)
    session.flush()
    return template


def set_template_status(session: Session, template: CouponTemplate, status: TemplateStatus) -> None:
    if status not in STATUS_TRANSITIONS[template.status]:
        raise TemplateError({"status": _transition_error(template.status, status)})
    template.status = status
    session.flush()
