"""Coupons at the POS: look one up by its short code (status, rules, the discount for a bill),
redeem it, reverse the redemption within the desk's window; the redemptions made.

The coupon rules are the desk's own (``coupons.services``): one rule book for the cashier and
the POS. A redemption is keyed twice: the request's Idempotency-Key (``base.mutate``) and, as
the desk's, a redemption key derived from it, so even a record swept away cannot double one."""
from __future__ import annotations

import hashlib

from flask import request
from flask_babel import lazy_gettext as _l
from spectree import Response as Doc
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import db, utcnow
from core.errors import Forbidden, NotFound
from core.txn import transaction
from coupons import services as coupon_svc
from coupons.models import Coupon, CouponStatus, Redemption
from integrations.models import ApiAction
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
CODE_MAX = 32


def _value(enum_or_str) -> str:
    return getattr(enum_or_str, "value", enum_or_str)


def template_out(t) -> dict:
    return {"id": t.id, "name": t.name, "kind": _value(t.kind), "value": t.value, "cap_fen": t.cap_fen,
            "min_spend_fen": t.min_spend_fen, "funded_by": _value(t.funded_by), "status": _value(t.status)}


def redemption_out(red: Redemption | coupon_svc.RedemptionResult, code: str, reversed_: bool | None = None) -> dict:
    """A redemption as the API shows it, from its row or from the desk's fresh result (which
    is live: not reversed)."""
    gone = red.reversed if reversed_ is None else reversed_
    return {
        "id": getattr(red, "redemption_id", None) or red.id, "code": code, "store_id": red.store_id,
        "bill_fen": red.bill_fen, "discount_fen": red.discount_fen, "payable_fen": red.bill_fen - red.discount_fen,
        "redeemed_at": red.redeemed_at.isoformat(), "status": "reversed" if gone else "redeemed",
        "reversible_until": None if gone else (red.redeemed_at + coupon_svc.REVERSAL_WINDOW).isoformat(),
    }


def _coupon(session: Session, who: Caller, code: str) -> Coupon:
    coupon = coupon_svc.find_coupon(session, code, who.merchant_id) if len(code) <= CODE_MAX else None
    if coupon is None:
        raise NotFound(_l("没有找到这张券，请核对券码"))
    return coupon


@bp.get("/coupons/<code>")
@spec.validate(query=schemas.CouponQuery, resp=Doc(HTTP_200=schemas.Coupon, **ERRORS), tags=["coupons"])
def get_coupon(code: str, query: schemas.CouponQuery):
    """A coupon by its short code, priced for `bill_fen` and checked for `store_id` now."""
    who = merchant_caller()
    with transaction(db.session) as session:
        coupon = _coupon(session, who, code)
        store = store_for(session, who, query.store_id)
        now = utcnow()
        reason = message = None
        try:
            coupon_svc.check_redeemable(session, coupon, store.id, now, query.bill_fen)
        except coupon_svc.RedemptionError as exc:
            reason, message = exc.code, exc.message
        discount = coupon_svc.compute_discount(coupon.template, query.bill_fen) if query.bill_fen else None
        return json_response({
            "code": coupon.short_code, "status": _value(coupon.status), "template": template_out(coupon.template),
            "valid_from": coupon.valid_from.isoformat(), "valid_until": coupon.valid_until.isoformat(),
            "redeemable": reason is None and coupon.status == CouponStatus.issued, "reason": reason,
            "message": message, "discount_fen": discount,
            "payable_fen": query.bill_fen - discount if discount is not None else None,
        })


def _desk_key(who: Caller) -> str:
    """The desk's redemption key for this request's Idempotency-Key (≤ 64 characters)."""
    raw = f"{who.key_id}:{request.headers.get('Idempotency-Key', '')}".encode()
    return "api:" + hashlib.sha256(raw).hexdigest()[:56]


@bp.post("/redemptions")
@spec.validate(json=schemas.RedeemIn, resp=Doc(HTTP_201=schemas.Redemption, **ERRORS), tags=["redemptions"])
def redeem(json: schemas.RedeemIn):
    """Redeem a coupon at a store for a bill: 201 with the redemption, once per
    Idempotency-Key (a retry replays it); a refusal is a 409 whose `reason` names the rule."""
    who = merchant_caller()

    def action(session: Session):
        store = store_for(session, who, json.store_id)
        result = coupon_svc.redeem(session, json.code, store.id, None, json.bill_fen, _desk_key(who),
                                   merchant_id=who.merchant_id)
        if result.replayed:  # the desk key met a redemption made before: show it as it is now
            return 201, redemption_out(session.get(Redemption, result.redemption_id), result.short_code)
        session.add(ApiAction(api_key_id=who.key_id, action="redeem", redemption_id=result.redemption_id))
        return 201, redemption_out(result, result.short_code, reversed_=False)

    return mutate(action)


def _redemption(session: Session, who: Caller, redemption_id: int) -> tuple[Redemption, Coupon]:
    """The tenant lookup: by id and merchant (a store key: and its store)."""
    red, coupon, _template, _store = coupon_svc.get_redemption(
        session, redemption_id, who.merchant_id, till_only=who.store_id is not None, store_id=who.store_id)
    return red, coupon


@bp.get("/redemptions/<int:redemption_id>")
@spec.validate(resp=Doc(HTTP_200=schemas.Redemption, **ERRORS), tags=["redemptions"])
def get_redemption(redemption_id: int):
    """One redemption of the key's stores, as it stands (redeemed or reversed)."""
    who = merchant_caller()
    with transaction(db.session) as session:
        red, coupon = _redemption(session, who, redemption_id)
        return json_response(redemption_out(red, coupon.short_code))


@bp.get("/redemptions")
@spec.validate(query=schemas.RedemptionPage, resp=Doc(HTTP_200=schemas.RedemptionList, **ERRORS),
               tags=["redemptions"])
def list_redemptions(query: schemas.RedemptionPage):
    """The key's redemptions by id (a store's with `store_id`), reversed ones included."""
    who = merchant_caller()
    with transaction(db.session) as session:
        stmt = select(Redemption)
        if query.store_id is not None or who.store_id is not None:
            stmt = stmt.where(Redemption.store_id == store_for(session, who, query.store_id).id)
        else:
            stmt = stmt.where(Redemption.store_id.in_(visible_stores(who).with_only_columns(Store.id)))
        rows, more = page_of(session, stmt, Redemption.id, query)
        codes = dict(session.execute(select(Coupon.id, Coupon.short_code).where(
            Coupon.id.in_([r.coupon_id for r in rows]))).all()) if rows else {}
        return json_response({"data": [redemption_out(r, codes[r.coupon_id]) for r in rows], "has_more": more})


@bp.post("/redemptions/<int:redemption_id>/reverse")
@spec.validate(json=schemas.ReverseIn, resp=Doc(HTTP_200=schemas.Redemption, **ERRORS), tags=["redemptions"])
def reverse(redemption_id: int, json: schemas.ReverseIn):
    """Undo a redemption within the desk's window (10 minutes); the coupon is the diner's again.
    A merchant-wide key only: at the desk only the owner may reverse, not a till (403 for a
    store key)."""
    who = merchant_caller()
    if who.store_id is not None:
        raise Forbidden(_l("门店密钥不能撤销核销，请用商户密钥（与核销台一样，只有店主可以撤销）"))

    def action(session: Session):
        red, coupon = _redemption(session, who, redemption_id)
        coupon_svc.reverse_for(session, red.id, who.merchant_id, user_id=None, reason=json.reason)
        session.add(ApiAction(api_key_id=who.key_id, action="reverse", redemption_id=red.id))
        return 200, redemption_out(red, coupon.short_code)

    return mutate(action)

