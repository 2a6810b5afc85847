"""Redemption at the till: the discount, every rule but single use, the redeem itself,
the owner's ten-minute reversal, and the desk's wrong-code throttle.

Single use is the database's job: a conditional ``UPDATE … WHERE status='issued'`` whose
rowcount decides the winner, backed by a partial unique index on live redemptions.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import select, update
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from accounts.models import Role, User
from core import tally
from core.errors import Conflict, NotFound
from core.localtime import as_utc, local, local_time
from core.money import yuan
from core.signals import coupon_redeemed, redemption_reversed, send_after_commit
from coupons.models import (
    Coupon,
    CouponKind,
    CouponStatus,
    CouponTemplate,
    Redemption,
    RedemptionReversal,
)
from coupons.services.display import hours_text, weekdays_text
from coupons.services.issuing import normalize_code
from coupons.services.templates import TemplateSpec, applies_at
from merchants.models import Store

REVERSAL_WINDOW = timedelta(minutes=10)

# Desk throttling: this many unknown codes per cashier and store in the window -> 429.
WRONG_CODE_LIMIT = 10
WRONG_CODE_WINDOW = 600


def compute_discount(template: CouponTemplate | TemplateSpec, bill_fen: int) -> int:
    """Fen off a bill (integer math; rounding favours the merchant). Never exceeds the bill."""
    if bill_fen <= 0:
        return 0
    if template.kind == CouponKind.percent_off:
        off = bill_fen * (100 - template.value) // 100
    else:
        off = template.value
    if template.cap_fen is not None:
        off = min(off, template.cap_fen)
    return max(0, min(off, bill_fen))


class RedemptionError(Conflict):
    """Why a coupon can't be redeemed; ``message`` is for the cashier (Chinese)."""

    def __init__(self, code: str, message: str, **detail) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail


@dataclass(frozen=True)
class RedemptionResult:
    redemption_id: int
    coupon_id: int
    short_code: str
    store_id: int
    bill_fen: int
    discount_fen: int
    redeemed_at: datetime
    replayed: bool = False  # True: the same idempotency key came back (double tap, retry)

    @property
    def payable_fen(self) -> int:
        return self.bill_fen - self.discount_fen


def find_coupon(session: Session, code: str, merchant_id: int | None = None) -> Coupon | None:
    """A coupon by short code, optionally only if it belongs to ``merchant_id``."""
    stmt = (
        select(Coupon)
        .join(CouponTemplate, Coupon.template_id == CouponTemplate.id)
        .where(Coupon.short_code == normalize_code(code))
        .options(joinedload(Coupon.template).selectinload(CouponTemplate.stores))  # two statements
    )
    if merchant_id is not None:
        stmt = stmt.where(CouponTemplate.merchant_id == merchant_id)
    return session.scalar(stmt)


def get_redemption(
    session: Session, redemption_id: int, merchant_id: int, *, till_only: bool = False, store_id: int | None = None
):
    """The tenant lookup for a redemption: by id *and* merchant (and, with ``till_only``, the
    till's store ``store_id``: a cashier without a store sees none), with its coupon,
    template and store in one query. NotFound otherwise."""
    row = session.execute(
        select(Redemption, Coupon, CouponTemplate, Store)
        .join(Coupon, Coupon.id == Redemption.coupon_id)
        .join(CouponTemplate, CouponTemplate.id == Coupon.template_id)
        .join(Store, Store.id == Redemption.store_id)
        .where(Redemption.id == redemption_id, CouponTemplate.merchant_id == merchant_id)
    ).first()
    if row is None or (till_only and (store_id is None or row[0].store_id != store_id)):
        raise NotFound()
    return row


def _live_redemption(session: Session, coupon_id: int) -> Redemption | None:
    return session.scalar(
        select(Redemption).where(Redemption.coupon_id == coupon_id, Redemption.reversed.is_(False))
    )


def already_redeemed_error(session: Session, coupon: Coupon) -> RedemptionError:
    red = _live_redemption(session, coupon.id)
    when = red.redeemed_at if red else coupon.redeemed_at
    store_id = red.store_id if red else coupon.redeemed_store_id
    store = session.get(Store, store_id) if store_id else None
    where = store.name if store else "?"
    return RedemptionError(
        "already_redeemed",
        str(_l("这张券已于 %(when)s 在 %(where)s 核销", when=local_time(when) or "?", where=where)),
        redeemed_at=when, store_name=where,
    )


def check_redeemable(
    session: Session, coupon: Coupon, store_id: int, now: datetime, bill_fen: int | None = None
) -> None:
    """Every rule except single use (that one is the UPDATE's). Raises RedemptionError."""
    t = coupon.template
    store = session.get(Store, store_id)
    if store is None or not applies_at(t, store):
        names = "、".join(s.name for s in t.stores) if t.stores else ""
        raise RedemptionError(
            "wrong_store",
            str(_l("这张券不能在本店使用")) + (str(_l("，适用门店：%(s)s", s=names)) if names else ""),
        )
    if coupon.status == CouponStatus.redeemed:
        raise already_redeemed_error(session, coupon)
    if coupon.status == CouponStatus.void:
        raise RedemptionError("void", str(_l("这张券已作废")))
    if coupon.status == CouponStatus.expired or now >= coupon.valid_until:
        raise RedemptionError(
            "expired", str(_l("这张券已于 %(t)s 过期", t=local_time(coupon.valid_until))))
    if now < coupon.valid_from:
        raise RedemptionError(
            "not_yet_valid", str(_l("这张券 %(t)s 起才能使用", t=local_time(coupon.valid_from))))
    here = local(now)
    if not t.weekdays_mask & (1 << here.weekday()):
        raise RedemptionError(
            "outside_hours", str(_l("这张券仅限%(d)s使用", d=weekdays_text(t.weekdays_mask))))
    if t.hours_start is not None:
        minute = here.hour * 60 + here.minute
        if not t.hours_start <= minute < t.hours_end:
            raise RedemptionError(
                "outside_hours", str(_l("这张券仅限 %(h)s 使用", h=hours_text(t))))
    if bill_fen is not None:
        if bill_fen <= 0:
            raise RedemptionError("bad_bill", str(_l("请输入正确的消费金额")))
        if bill_fen < t.min_spend_fen:
            raise RedemptionError(
                "below_min_spend",
                str(_l("消费满 %(m)s 元才能使用，本单 %(b)s 元", m=yuan(t.min_spend_fen), b=yuan(bill_fen))),
            )


def _result(red: Redemption, coupon: Coupon, replayed: bool) -> RedemptionResult:
    return RedemptionResult(
        redemption_id=red.id, coupon_id=coupon.id, short_code=coupon.short_code,
        store_id=red.store_id, bill_fen=red.bill_fen, discount_fen=red.discount_fen,
        redeemed_at=red.redeemed_at, replayed=replayed,
    )


def _replay(session: Session, idempotency_key: str, coupon: Coupon | None) -> RedemptionResult | None:
    red = session.scalar(select(Redemption).where(Redemption.idempotency_key == idempotency_key))
    if red is None:
        return None
    if coupon is not None and red.coupon_id != coupon.id:
        raise RedemptionError("key_reused", str(_l("提交编号重复，请刷新页面后重试")))
    return _result(red, coupon or session.get(Coupon, red.coupon_id), replayed=True)


def redeem(
    session: Session,
    code: str,
    store_id: int,
    cashier_id: int | None,
    bill_fen: int,
    idempotency_key: str,
    now: datetime | None = None,
    *,
    merchant_id: int | None = None,
) -> RedemptionResult:
    """Redeem a coupon at a store's till, once. A confirm retried with the same key returns
    the first result; a different key on a used coupon gets ``already_redeemed``. No
    ``cashier_id``: the merchant's POS redeemed it (the API records which key)."""
    now = as_utc(now)
    if not idempotency_key or len(idempotency_key) > 64:
        raise RedemptionError("bad_key", str(_l("提交编号无效，请刷新页面后重试")))
    coupon = find_coupon(session, code, merchant_id)
    if coupon is None:
        raise RedemptionError("not_found", str(_l("没有找到这张券，请核对券码")))
    replay = _replay(session, idempotency_key, coupon)
    if replay is not None:
        return replay
    check_redeemable(session, coupon, store_id, now, bill_fen)
    discount = compute_discount(coupon.template, bill_fen)

    won = session.execute(
        update(Coupon)
        .where(Coupon.id == coupon.id, Coupon.status == CouponStatus.issued)
        .values(status=CouponStatus.redeemed, redeemed_at=now, redeemed_store_id=store_id,
                bill_fen=bill_fen, discount_fen=discount)
        .execution_options(synchronize_session=False)
    )
    if won.rowcount != 1:
        # Someone else got there first. If it was this very confirm (a double tap racing
        # itself), its committed redemption is visible now: answer with it.
        session.expire(coupon)
        replay = _replay(session, idempotency_key, coupon)
        if replay is not None:
            return replay
        raise already_redeemed_error(session, coupon)
    red = Redemption(
        coupon_id=coupon.id, idempotency_key=idempotency_key, store_id=store_id,
        cashier_id=cashier_id, bill_fen=bill_fen, discount_fen=discount, redeemed_at=now,
    )
    session.add(red)
    session.flush()  # the partial unique index on live redemptions is the second lock
    # what the UPDATE wrote, without reading the coupon (and its template) back
    for name, value in (("status", CouponStatus.redeemed), ("redeemed_at", now), ("redeemed_store_id", store_id),
                        ("bill_fen", bill_fen), ("discount_fen", discount)):
        set_committed_value(coupon, name, value)
    _count(session, now, coupon, store_id, redeemed=1, discount_fen=discount, bill_fen=bill_fen)
    send_after_commit(session, coupon_redeemed, coupon_id=coupon.id, redemption_id=red.id, store_id=store_id,
                      resident_id=coupon.resident_id)
    return _result(red, coupon, replayed=False)


def _count(session: Session, at: datetime, coupon: Coupon, store_id: int, **counts: int) -> None:
    """A redemption (or its reversal) is credited to the store of the till and to the
    campaign and contact-me code that brought the coupon."""
    tally.count(session, at, store_id=store_id, template_id=coupon.template_id,
                campaign_id=coupon.origin_campaign_id, channel_id=coupon.origin_channel_id, **counts)


class ReversalError(RedemptionError):
    pass


def reverse(
    session: Session, redemption_id: int, user: User, now: datetime | None = None, reason: str = ""
) -> RedemptionReversal:
    """The owner undoes a redemption within ten minutes: a reversal row, the redemption
    flagged, the coupon back in the diner's hands. Nothing is deleted."""
    if user.merchant_id is None:
        raise ReversalError("not_found", str(_l("没有找到这条核销记录")))
    if user.role != Role.owner:
        _reversible(session, redemption_id, user.merchant_id)  # another merchant's: not found first
        raise ReversalError("forbidden", str(_l("只有店主可以撤销核销")))
    return reverse_for(session, redemption_id, user.merchant_id, user_id=user.id, now=now, reason=reason)


def _reversible(session: Session, redemption_id: int, merchant_id: int) -> tuple[Redemption, Coupon]:
    red = session.get(Redemption, redemption_id)
    coupon = session.get(Coupon, red.coupon_id) if red else None
    template = session.get(CouponTemplate, coupon.template_id) if coupon else None
    if red is None or template.merchant_id != merchant_id:
        raise ReversalError("not_found", str(_l("没有找到这条核销记录")))
    return red, coupon


def reverse_for(
    session: Session, redemption_id: int, merchant_id: int, *, user_id: int | None,
    now: datetime | None = None, reason: str = "",
) -> RedemptionReversal:
    """The reversal itself, for whoever the caller has vouched for: the owner at the desk
    (``user_id``) or the merchant's POS through its API key (no user)."""
    now = as_utc(now)
    red, coupon = _reversible(session, redemption_id, merchant_id)
    if red.reversed:
        raise ReversalError("already_reversed", str(_l("这条核销已撤销")))
    if now - red.redeemed_at > REVERSAL_WINDOW:
        raise ReversalError("too_late", str(_l("核销超过 10 分钟，不能撤销")))
    flipped = session.execute(
        update(Redemption)
        .where(Redemption.id == red.id, Redemption.reversed.is_(False))
        .values(reversed=True)
        .execution_options(synchronize_session=False)
    )
    if flipped.rowcount != 1:
        raise ReversalError("already_reversed", str(_l("这条核销已撤销")))
    session.execute(
        update(Coupon)
        .where(Coupon.id == coupon.id, Coupon.status == CouponStatus.redeemed)
        .values(status=CouponStatus.issued, redeemed_at=None, redeemed_store_id=None,
                bill_fen=None, discount_fen=None)
        .execution_options(synchronize_session=False)
    )
    rev = RedemptionReversal(redemption_id=red.id, user_id=user_id, reason=reason[:255], reversed_at=now)
    session.add(rev)
    session.flush()
    _count(session, now, coupon, red.store_id, reversed=1, discount_fen=-red.discount_fen, bill_fen=-red.bill_fen)
    send_after_commit(session, redemption_reversed, coupon_id=coupon.id, redemption_id=red.id,
                      resident_id=coupon.resident_id)
    session.refresh(red)
    session.refresh(coupon)
    return rev


def can_reverse(red: Redemption, now: datetime | None = None) -> bool:
    now = as_utc(now)
    return not red.reversed and now - red.redeemed_at <= REVERSAL_WINDOW


# ---------------------------------------------------------------- desk throttling


def _wrong_key(user_id: int, store_id: int) -> str:
    return f"linli:desk:wrong:{user_id}:{store_id}"


def desk_throttled(redis, user_id: int, store_id: int) -> bool:
    raw = redis.get(_wrong_key(user_id, store_id))
    return raw is not None and int(raw) >= WRONG_CODE_LIMIT


def _store_tills_key(store_id: int) -> str:
    return f"linli:desk:wrong-tills:{store_id}"


def record_wrong_code(redis, user_id: int, store_id: int) -> int:
    """Count an unknown code; the window starts at the first miss. The store remembers
    which tills missed, so its owner can lift their locks (``lift_desk_locks``)."""
    key = _wrong_key(user_id, store_id)
    tills = _store_tills_key(store_id)
    pipe = redis.pipeline()  # MULTI; works on Redis 6 (no EXPIRE NX)
    pipe.set(key, 0, ex=WRONG_CODE_WINDOW, nx=True)
    pipe.incr(key)
    pipe.sadd(tills, user_id)
    pipe.expire(tills, WRONG_CODE_WINDOW)
    _, count, _, _ = pipe.execute()
    return int(count)


def locked_tills(redis, store_id: int) -> list[int]:
    """Users whose desk at this store is locked by wrong codes right now."""
    ids = sorted(int(u) for u in redis.smembers(_store_tills_key(store_id)))
    return [u for u in ids if desk_throttled(redis, u, store_id)]


def lift_desk_locks(redis, store_id: int) -> int:
    """The owner lifts the wrong-code lock of every till at the store (their own too) and
    resets the counts; returns how many tills were locked. Callers check the store is the
    owner's (``merchants.services.get_store_for``)."""
    tills = _store_tills_key(store_id)
    locked = locked_tills(redis, store_id)
    users = {int(u) for u in redis.smembers(tills)}
    pipe = redis.pipeline()
    for user_id in users:
        pipe.delete(_wrong_key(user_id, store_id))
    pipe.delete(tills)
    pipe.execute()
    return len(locked)
