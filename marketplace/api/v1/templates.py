"""``/templates``: the merchant's coupon templates — list, read, create, update, change status.

The rules are the portal's own (``coupons.services.templates``): the same validation, the
same frozen terms once a coupon is out, the same status transitions; a refusal is a 400
problem whose ``field`` names the field (a foreign ``store_ids`` entry is a 404, as every
other id of another merchant's). Templates are the owner's business in the portal, so a
store key (a till) may read the templates usable at its store but not create or change any
(403); a merchant key does all. Ending a template is final (the portal asks first)."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from spectree import Response as Doc
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from core.db import db
from core.errors import Forbidden, Invalid, NotFound
from core.txn import transaction
from coupons import services as coupon_svc
from coupons.models import CouponKind, CouponTemplate, TemplateStatus
from marketplace.api.v1 import schemas
from marketplace.api.v1.base import (
    Caller,
    bp,
    json_response,
    merchant_caller,
    mutate,
    page_of,
    spec,
    store_for,
    visible_stores,
)
from merchants.models import Store

ERRORS = {f"HTTP_{code}": schemas.Problem for code in (400, 401, 403, 404, 409, 422, 429)}
API_FIELD = {"weekdays_mask": "weekdays"}  # the service's field names where the API's differ


def _value(enum_or_str) -> str:
    return getattr(enum_or_str, "value", enum_or_str)


def _weekdays(mask: int) -> list[int]:
    return [d + 1 for d in range(7) if mask & (1 << d)]


def _mask(weekdays: list[int]) -> int:
    return sum(1 << (d - 1) for d in set(weekdays))


def template_out(t: CouponTemplate) -> dict:
    return {
        "id": t.id, "name": t.name, "kind": _value(t.kind), "value": t.value, "cap_fen": t.cap_fen,
        "min_spend_fen": t.min_spend_fen, "valid_from": t.valid_from, "valid_until": t.valid_until,
        "valid_days": t.valid_days, "weekdays": _weekdays(t.weekdays_mask), "hours_start": t.hours_start,
        "hours_end": t.hours_end, "store_ids": [s.id for s in t.stores], "total_stock": t.total_stock,
        "issued_count": t.issued_count, "per_diner_limit": t.per_diner_limit, "funded_by": _value(t.funded_by),
        "status": _value(t.status), "description": t.description, "claimable": t.claimable,
        "created_at": t.created_at.isoformat(), "updated_at": t.updated_at.isoformat(),
    }


def _owner_caller() -> Caller:
    """A merchant-wide key: templates are the owner's to change, not a till's."""
    who = merchant_caller()
    if who.store_id is not None:
        raise Forbidden(_l("门店密钥只能读取优惠券模板，创建和修改请用商户密钥"))
    return who


def _visible(who: Caller):
    """``select(CouponTemplate)`` for the key: its merchant's; a store key's, those usable there."""
    stmt = select(CouponTemplate).where(CouponTemplate.merchant_id == who.merchant_id)
    if who.store_id is not None:
        stmt = stmt.where(or_(~CouponTemplate.stores.any(), CouponTemplate.stores.any(Store.id == who.store_id)))
    return stmt.options(selectinload(CouponTemplate.stores))


def _template(session: Session, who: Caller, template_id: int) -> CouponTemplate:
    """The tenant lookup (``coupons.services.get_template``), narrowed for a store key."""
    template = coupon_svc.get_template(session, template_id, who.merchant_id)
    if who.store_id is not None and not coupon_svc.applies_at(template, store_for(session, who, None)):
        raise NotFound()
    return template


def _check_stores(session: Session, who: Caller, store_ids: list[int]) -> None:
    """Every listed store is the key's: another merchant's id is not found, as anywhere else."""
    if not store_ids:
        return
    found = set(session.scalars(visible_stores(who).with_only_columns(Store.id).where(Store.id.in_(store_ids))))
    if found != set(store_ids):
        raise NotFound(_l("没有这家门店"))


def _fields(changes: dict) -> dict:
    """API fields → ``TemplateSpec`` fields (ISO weekdays to the mask, kind and status to enums)."""
    out = dict(changes)
    if "weekdays" in out:
        out["weekdays_mask"] = _mask(out.pop("weekdays"))
    if "kind" in out:
        out["kind"] = CouponKind(out["kind"])
    if "status" in out:
        out["status"] = TemplateStatus(out["status"])
    return out


def _refused(exc: coupon_svc.TemplateError) -> Invalid:
    """The service's refusal as one problem: the first field it names, every message in detail."""
    named = {API_FIELD.get(k, k): v for k, v in exc.errors.items()}
    return Invalid("; ".join(f"{k}: {v}" for k, v in named.items()), field=next(iter(named), None))


@bp.get("/templates")
@spec.validate(query=schemas.TemplatePage, resp=Doc(HTTP_200=schemas.TemplateList, **ERRORS), tags=["templates"])
def list_templates(query: schemas.TemplatePage):
    """The key's templates by id (a store key: those usable at its store), of one `status` if given."""
    who = merchant_caller()
    with transaction(db.session) as session:
        stmt = _visible(who)
        if query.status is not None:
            stmt = stmt.where(CouponTemplate.status == TemplateStatus(query.status))
        rows, more = page_of(session, stmt, CouponTemplate.id, query)
        return json_response({"data": [template_out(t) for t in rows], "has_more": more})


@bp.get("/templates/<int:template_id>")
@spec.validate(resp=Doc(HTTP_200=schemas.TemplateDetail, **ERRORS), tags=["templates"])
def get_template(template_id: int):
    """One of the key's templates, with its issued count."""
    who = merchant_caller()
    with transaction(db.session) as session:
        return json_response(template_out(_template(session, who, template_id)))


@bp.post("/templates")
@spec.validate(json=schemas.TemplateIn, resp=Doc(HTTP_201=schemas.TemplateDetail, **ERRORS), tags=["templates"])
def create_template(json: schemas.TemplateIn):
    """A new template (a merchant key only), validated as the portal's form is: 201 with it."""
    who = _owner_caller()

    def action(session: Session):
        _check_stores(session, who, json.store_ids)
        try:
            template = coupon_svc.create_template(
                session, who.merchant_id, coupon_svc.TemplateSpec(**_fields(json.model_dump())))
        except coupon_svc.TemplateError as exc:
            raise _refused(exc) from exc
        return 201, template_out(template)

    return mutate(action)


@bp.post("/templates/<int:template_id>")
@spec.validate(json=schemas.TemplateUpdate, resp=Doc(HTTP_200=schemas.TemplateDetail, **ERRORS), tags=["templates"])
def update_template(template_id: int, json: schemas.TemplateUpdate):
    """Change the fields sent (a merchant key only); once coupons are out, their terms stay
    as issued (a 400 naming the field). The status changes through `/status`."""
    who = _owner_caller()

    def action(session: Session):
        template = _template(session, who, template_id)
        changes = json.model_dump(include=json.model_fields_set)
        _check_stores(session, who, changes.get("store_ids") or [])
        terms = coupon_svc.TemplateSpec.from_template(template)
        for name, value in _fields(changes).items():
            setattr(terms, name, value)
        try:
            coupon_svc.update_template(session, template, terms)
        except coupon_svc.TemplateError as exc:
            raise _refused(exc) from exc
        return 200, template_out(template)

    return mutate(action)


@bp.post("/templates/<int:template_id>/status")
@spec.validate(json=schemas.TemplateStatusIn, resp=Doc(HTTP_200=schemas.TemplateDetail, **ERRORS),
               tags=["templates"])
def set_template_status(template_id: int, json: schemas.TemplateStatusIn):
    """Activate, pause or end a template (a merchant key only) as the portal allows: draft →
    active or ended, active ⇄ paused, ended is final; another move is a 400 on `status`."""
    who = _owner_caller()

    def action(session: Session):
        template = _template(session, who, template_id)
        try:
            coupon_svc.set_template_status(session, template, TemplateStatus(json.status))
        except coupon_svc.TemplateError as exc:
            raise _refused(exc) from exc
        return 200, template_out(template)

    return mutate(action)
