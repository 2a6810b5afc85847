"""Coupon rules: templates, issuing, discount math, redemption and reversal.

Every function takes a ``Session`` and never commits; the caller owns the transaction.
Single use is the database's job: a conditional ``UPDATE … WHERE status='issued'`` whose
rowcount decides the winner, backed by a partial unique index on live redemptions.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from flask_babel import get_locale, lazy_gettext as _l
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from coupons.models import (
    ALL_WEEKDAYS,
    Coupon,
    CouponKind,
    CouponStatus,
    CouponTemplate,
    FundedBy,
    Redemption,
    RedemptionReversal,
    TemplateStatus,
)
from core.signals import coupon_redeemed, redemption_reversed, send_after_commit
from accounts.models import Role, User
from merchants.models import Store

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
REVERSAL_WINDOW = timedelta(minutes=10)

# Crockford base32: no I, L, O, U. 10 symbols x 5 bits = 50 bits of entropy per code.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 10
_CODE_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})

WEEKDAY_LABELS = (_l("周一"), _l("周二"), _l("周三"), _l("周四"), _l("周五"), _l("周六"), _l("周日"))

# Desk throttling: this many unknown codes per cashier and store in the window -> 429.
WRONG_CODE_LIMIT = 10
WRONG_CODE_WINDOW = 600

STATUS_TRANSITIONS = {
    TemplateStatus.draft: {TemplateStatus.draft, TemplateStatus.active, TemplateStatus.ended},
    TemplateStatus.active: {TemplateStatus.active, TemplateStatus.paused, TemplateStatus.ended},
    TemplateStatus.paused: {TemplateStatus.paused, TemplateStatus.active, TemplateStatus.ended},
    TemplateStatus.ended: {TemplateStatus.ended},
}
# Terms a diner already holds; frozen once a coupon of the template is out.
FROZEN_TERMS = ("kind", "value", "cap_fen", "min_spend_fen", "valid_from", "valid_until", "valid_days")


# ---------------------------------------------------------------- templates


class TemplateError(ValueError):
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

    @classmethod
    def from_template(cls, t: CouponTemplate) -> "TemplateSpec":
        return cls(
            name=t.name, kind=t.kind, value=t.value, min_spend_fen=t.min_spend_fen,
            cap_fen=t.cap_fen, valid_from=t.valid_from, valid_until=t.valid_until,
            valid_days=t.valid_days, weekdays_mask=t.weekdays_mask, hours_start=t.hours_start,
            hours_end=t.hours_end, store_ids=[s.id for s in t.stores], total_stock=t.total_stock,
            per_diner_limit=t.per_diner_limit, funded_by=t.funded_by, status=t.status,
            description=t.description,
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
    if spec.kind == CouponKind.percent_off:
        if spec.value is None or not 1 <= spec.value <= 99:
            e["value"] = _l("折扣须在 1 到 99 之间（85 表示八五折）")
        if not spec.cap_fen or spec.cap_fen <= 0:
            e["cap_fen"] = _l("折扣券须设置最高优惠金额")
    else:
        if spec.value is None or spec.value <= 0:
            e["value"] = _l("面额须大于 0")
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
        elif spec.valid_days <= 0 or spec.valid_days > 366:
            e["valid_days"] = _l("领取后有效天数须在 1 到 366 之间")
    else:
        if not spec.valid_from or not spec.valid_until:
            e["valid_from"] = _l("请填写有效期的开始和结束日期，或领取后有效天数")
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
    if spec.per_diner_limit is None or spec.per_diner_limit < 1:
        e["per_diner_limit"] = _l("每人限领至少 1 张")
    return e


def get_template(session: Session, merchant_id: int, template_id: int) -> CouponTemplate | None:
    """The one tenant lookup: by id *and* merchant, so no caller can forget the scope."""
    return session.scalar(
        select(CouponTemplate)
        .where(CouponTemplate.id == template_id, CouponTemplate.merchant_id == merchant_id)
        .options(selectinload(CouponTemplate.stores))
    )


def list_templates(session: Session, merchant_id: int) -> list[CouponTemplate]:
    return list(
        session.scalars(
            select(CouponTemplate)
            .where(CouponTemplate.merchant_id == merchant_id)
            .options(selectinload(CouponTemplate.stores))
            .order_by(CouponTemplate.id.desc())
        )
    )


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
        "per_diner_limit", "funded_by", "status", "description",
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


def update_template(session: Session, template: CouponTemplate, spec: TemplateSpec) -> CouponTemplate:
    """Edit a template. Once coupons are out, their terms are frozen (diners hold them)."""
    errors = validate_spec(spec)
    if spec.status not in STATUS_TRANSITIONS[template.status]:
        errors["status"] = _l("不能从“%(a)s”改为“%(b)s”", a=status_label(template.status),
                              b=status_label(spec.status))
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
        raise TemplateError({"status": _l("不能从“%(a)s”改为“%(b)s”", a=status_label(template.status),
                                          b=status_label(status))})
    template.status = status
    session.flush()


# ---------------------------------------------------------------- labels and math


def yuan(fen: int | None) -> str:
    """12345 -> '123.45', 2000 -> '20' (display only; never parse this back)."""
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}" if cents == 0 else f"{sign}{whole}.{cents:02d}"


def status_label(status) -> str:
    return str({
        "draft": _l("草稿"), "active": _l("进行中"), "paused": _l("已暂停"), "ended": _l("已结束"),
        "issued": _l("未使用"), "redeemed": _l("已核销"), "expired": _l("已过期"), "void": _l("已作废"),
    }[getattr(status, "value", status)])


def kind_label(kind: CouponKind) -> str:
    return str({CouponKind.amount_off: _l("满减券"), CouponKind.percent_off: _l("折扣券"),
                CouponKind.voucher: _l("代金券")}[kind])


def _chinese() -> bool:
    locale = get_locale()
    return locale is None or locale.language == "zh"


def headline(t: CouponTemplate | TemplateSpec) -> str:
    """The big line on a coupon card: 满100减20 / 8.5折 最高减30元 / 20元代金券."""
    if t.kind == CouponKind.amount_off:
        return str(_l("满%(m)s减%(v)s", m=yuan(t.min_spend_fen), v=yuan(t.value)))
    if t.kind == CouponKind.percent_off:
        if _chinese():
            # 8.5折 = pay 85%: the way Chinese menus say it
            fold = f"{t.value // 10}" if t.value % 10 == 0 else f"{t.value / 10:g}"
            text = str(_l("%(f)s折", f=fold))
        else:  # other languages say what comes off
            text = str(_l("减%(off)s%%", off=100 - t.value))
        if t.cap_fen:
            text += " " + str(_l("最高减%(c)s元", c=yuan(t.cap_fen)))
        return text
    text = str(_l("%(v)s元代金券", v=yuan(t.value)))
    if t.min_spend_fen:
        text += " " + str(_l("满%(m)s可用", m=yuan(t.min_spend_fen)))
    return text


def weekdays_text(mask: int) -> str:
    if mask == ALL_WEEKDAYS:
        return str(_l("每天"))
    if mask == 0b0011111:
        return str(_l("周一至周五"))
    if mask == 0b1100000:
        return str(_l("周末"))
    return "、".join(str(WEEKDAY_LABELS[i]) for i in range(7) if mask & (1 << i))


def hhmm(minutes: int | None) -> str:
    if minutes is None:
        return ""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def hours_text(t) -> str:
    if t.hours_start is None:
        return str(_l("全天"))
    return f"{hhmm(t.hours_start)}-{hhmm(t.hours_end)}"


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


# ---------------------------------------------------------------- issuing


class IssueError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def new_short_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(raw: str) -> str:
    """What a cashier types: any case, spaces or dashes, O for 0, I/L for 1."""
    return "".join(ch for ch in (raw or "").upper() if ch.isalnum()).translate(_CODE_ALIASES)


def format_code(code: str) -> str:
    return f"{code[:5]}-{code[5:]}" if len(code) == CODE_LENGTH else code


def local_midnight(d: date) -> datetime:
    """Start of a local calendar day, as UTC (SQLite stores wall time without a zone)."""
    return datetime.combine(d, time(0), tzinfo=LOCAL_TZ).astimezone(timezone.utc)


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise ValueError("naive datetime")
    return now.astimezone(timezone.utc)


def _validity(t: CouponTemplate, now: datetime) -> tuple[datetime, datetime]:
    if t.valid_days is not None:
        return now, now + timedelta(days=t.valid_days)
    return local_midnight(t.valid_from), local_midnight(t.valid_until + timedelta(days=1))


def _held(session: Session, template_id: int, holder_ref: str) -> int:
    """The highest ``holder_seq`` this diner holds of the template (0 = none yet)."""
    return session.scalar(
        select(func.coalesce(func.max(Coupon.holder_seq), 0)).where(
            Coupon.template_id == template_id, Coupon.holder_ref == holder_ref
        )
    )


def issue_coupon(
    session: Session,
    template_id: int,
    holder_ref: str,
    *,
    resident_id: int | None = None,
    now: datetime | None = None,
) -> Coupon:
    """Give a diner one coupon. Stock is a conditional UPDATE on ``issued_count``; the
    per-diner limit is the unique (template, holder, seq) key, so racing claims can't overshoot."""
    now = _utc(now)
    t = session.get(CouponTemplate, template_id)
    if t is None:
        raise IssueError("not_found", str(_l("券不存在")))
    if t.status != TemplateStatus.active:
        raise IssueError("inactive", str(_l("这张券当前不可领取")))
    if t.valid_until is not None and now >= local_midnight(t.valid_until + timedelta(days=1)):
        raise IssueError("ended", str(_l("这张券已过领取期")))
    held = _held(session, t.id, holder_ref)
    if held >= t.per_diner_limit:
        raise IssueError("limit", str(_l("每人限领 %(n)d 张，您已领过", n=t.per_diner_limit)))
    valid_from, valid_until = _validity(t, now)
    for _attempt in range(5):
        try:
            with session.begin_nested():
                taken = session.execute(
                    update(CouponTemplate)
                    .where(
                        CouponTemplate.id == t.id,
                        or_(CouponTemplate.total_stock.is_(None),
                            CouponTemplate.issued_count < CouponTemplate.total_stock),
                    )
                    .values(issued_count=CouponTemplate.issued_count + 1)
                    .execution_options(synchronize_session=False)
                )
                if taken.rowcount != 1:
                    raise IssueError("sold_out", str(_l("券已领完")))
                coupon = Coupon(
                    template_id=t.id, holder_ref=holder_ref, resident_id=resident_id,
                    holder_seq=held + 1, short_code=new_short_code(), issued_at=now,
                    valid_from=valid_from, valid_until=valid_until, status=CouponStatus.issued,
                )
                session.add(coupon)
                session.flush()
        except IntegrityError:
            # a racing claim by the same diner took this seq, or (2^-50) a code collision
            held = _held(session, t.id, holder_ref)
            if held >= t.per_diner_limit:
                raise IssueError("limit", str(_l("每人限领 %(n)d 张，您已领过", n=t.per_diner_limit)))
            continue
        session.refresh(t, ["issued_count"])
        return coupon
    raise IssueError("busy", str(_l("领取人数过多，请稍后再试")))


# ---------------------------------------------------------------- redemption


class RedemptionError(Exception):
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
        .options(selectinload(Coupon.template).selectinload(CouponTemplate.stores))
    )
    if merchant_id is not None:
        stmt = stmt.where(CouponTemplate.merchant_id == merchant_id)
    return session.scalar(stmt)


def _local(dt: datetime) -> datetime:
    return dt.astimezone(LOCAL_TZ)


def local_time(dt: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """An aware timestamp as local wall time ('' for None); also the templates' ``local_time``."""
    return _local(dt).strftime(fmt) if dt else ""


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
    if store is None or store.merchant_id != t.merchant_id or (
        t.stores and store_id not in {s.id for s in t.stores}
    ):
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
    local = _local(now)
    if not t.weekdays_mask & (1 << local.weekday()):
        raise RedemptionError(
            "outside_hours", str(_l("这张券仅限%(d)s使用", d=weekdays_text(t.weekdays_mask))))
    if t.hours_start is not None:
        minute = local.hour * 60 + local.minute
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
    cashier_id: int,
    bill_fen: int,
    idempotency_key: str,
    now: datetime | None = None,
    *,
    merchant_id: int | None = None,
) -> RedemptionResult:
    """Redeem a coupon at a store's till, once. A confirm retried with the same key returns
    the first result; a different key on a used coupon gets ``already_redeemed``."""
    now = _utc(now)
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
    session.refresh(coupon)
    send_after_commit(session, coupon_redeemed, coupon_id=coupon.id, redemption_id=red.id, store_id=store_id,
                      resident_id=coupon.resident_id)
    return _result(red, coupon, replayed=False)


class ReversalError(RedemptionError):
    pass


def reverse(
    session: Session, redemption_id: int, user: User, now: datetime | None = None, reason: str = ""
) -> RedemptionReversal:
    """The owner undoes a redemption within ten minutes: a reversal row, the redemption
    flagged, the coupon back in the diner's hands. Nothing is deleted."""
    now = _utc(now)
    red = session.get(Redemption, redemption_id)
    coupon = session.get(Coupon, red.coupon_id) if red else None
    template = session.get(CouponTemplate, coupon.template_id) if coupon else None
    if red is None or user.merchant_id is None or template.merchant_id != user.merchant_id:
        raise ReversalError("not_found", str(_l("没有找到这条核销记录")))
    if user.role != Role.owner:
        raise ReversalError("forbidden", str(_l("只有店主可以撤销核销")))
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
    rev = RedemptionReversal(redemption_id=red.id, user_id=user.id, reason=reason[:255], reversed_at=now)
    session.add(rev)
    session.flush()
    send_after_commit(session, redemption_reversed, coupon_id=coupon.id, redemption_id=red.id,
                      resident_id=coupon.resident_id)
    session.refresh(red)
    session.refresh(coupon)
    return rev


def can_reverse(red: Redemption, now: datetime | None = None) -> bool:
    now = _utc(now)
    return not red.reversed and now - red.redeemed_at <= REVERSAL_WINDOW


# ---------------------------------------------------------------- desk throttling


def _wrong_key(user_id: int, store_id: int) -> str:
    return f"linli:desk:wrong:{user_id}:{store_id}"


def desk_throttled(redis, user_id: int, store_id: int) -> bool:
    raw = redis.get(_wrong_key(user_id, store_id))
    return raw is not None and int(raw) >= WRONG_CODE_LIMIT


def record_wrong_code(redis, user_id: int, store_id: int) -> int:
    """Count an unknown code; the window starts at the first miss."""
    key = _wrong_key(user_id, store_id)
    pipe = redis.pipeline()  # MULTI; works on Redis 6 (no EXPIRE NX)
    pipe.set(key, 0, ex=WRONG_CODE_WINDOW, nx=True)
    pipe.incr(key)
    _, count = pipe.execute()
    return int(count)


# ---------------------------------------------------------------- statistics


def _local_day(session: Session, column):
    """A UTC timestamp column as its Asia/Shanghai calendar day (text 'YYYY-MM-DD')."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("Asia/Shanghai", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column, "+8 hours")


@dataclass
class TemplateStats:
    template_id: int
    name: str
    status: str
    issued: int
    redeemed: int
    discount_fen: int
    bill_fen: int

    @property
    def rate(self) -> float:
        return self.redeemed / self.issued if self.issued else 0.0


def template_stats(session: Session, merchant_id: int, store_id: int | None = None) -> list[TemplateStats]:
    """Issued and redeemed per template (two grouped queries); redemptions limited to
    ``store_id`` when given. Reversed redemptions don't count."""
    red_filter = [Redemption.reversed.is_(False)]
    if store_id is not None:
        red_filter.append(Redemption.store_id == store_id)
    redeemed = (
        select(
            Coupon.template_id.label("tid"),
            func.count(Redemption.id).label("n"),
            func.coalesce(func.sum(Redemption.discount_fen), 0).label("disc"),
            func.coalesce(func.sum(Redemption.bill_fen), 0).label("bill"),
        )
        .join(Coupon, Coupon.id == Redemption.coupon_id)
        .join(CouponTemplate, CouponTemplate.id == Coupon.template_id)
        # this merchant's redemptions only: a small shop must not pay for the chain's history
        .where(*red_filter, CouponTemplate.merchant_id == merchant_id)
        .group_by(Coupon.template_id)
        .subquery()
    )
    rows = session.execute(
        select(
            CouponTemplate.id, CouponTemplate.name, CouponTemplate.status, CouponTemplate.issued_count,
            func.coalesce(redeemed.c.n, 0), func.coalesce(redeemed.c.disc, 0),
            func.coalesce(redeemed.c.bill, 0),
        )
        .outerjoin(redeemed, redeemed.c.tid == CouponTemplate.id)
        .where(CouponTemplate.merchant_id == merchant_id)
        .order_by(CouponTemplate.id)
    )
    return [
        TemplateStats(tid, name, getattr(status, "value", status), issued, int(n), int(d), int(b))
        for tid, name, status, issued, n, d, b in rows
    ]


@dataclass
class DayStats:
    day: str
    issued: int = 0
    redeemed: int = 0
    discount_fen: int = 0
    bill_fen: int = 0


def daily_stats(
    session: Session, merchant_id: int, store_id: int | None = None, days: int = 30,
    now: datetime | None = None,
) -> list[DayStats]:
    """Per local day over the last ``days``: coupons issued, redemptions, discount, bills."""
    now = _utc(now)
    since = local_midnight(_local(now).date() - timedelta(days=days - 1))
    issued_day = _local_day(session, Coupon.issued_at)
    issued = session.execute(
        select(issued_day, func.count(Coupon.id))
        .join(CouponTemplate, CouponTemplate.id == Coupon.template_id)
        .where(CouponTemplate.merchant_id == merchant_id, Coupon.issued_at >= since)
        .group_by(issued_day)
    )
    red_day = _local_day(session, Redemption.redeemed_at)
    conds = [CouponTemplate.merchant_id == merchant_id, Redemption.redeemed_at >= since,
             Redemption.reversed.is_(False)]
    if store_id is not None:
        conds.append(Redemption.store_id == store_id)
    redeemed = session.execute(
        select(red_day, func.count(Redemption.id), func.sum(Redemption.discount_fen),
               func.sum(Redemption.bill_fen))
        .join(Coupon, Coupon.id == Redemption.coupon_id)
        .join(CouponTemplate, CouponTemplate.id == Coupon.template_id)
        .where(*conds)
        .group_by(red_day)
    )
    out: dict[str, DayStats] = {}
    for day, n in issued:
        out.setdefault(day, DayStats(day)).issued = int(n)
    for day, n, disc, bill in redeemed:
        s = out.setdefault(day, DayStats(day))
        s.redeemed, s.discount_fen, s.bill_fen = int(n), int(disc or 0), int(bill or 0)
    return [out[d] for d in sorted(out, reverse=True)]


def recent_redemptions(session: Session, merchant_id: int, store_id: int | None = None, limit: int = 20):
    """Latest redemptions with coupon, template and store in one query (desk history)."""
    stmt = (
        select(Redemption, Coupon, CouponTemplate, Store)
        .join(Coupon, Coupon.id == Redemption.coupon_id)
        .join(CouponTemplate, CouponTemplate.id == Coupon.template_id)
        .join(Store, Store.id == Redemption.store_id)
        .where(CouponTemplate.merchant_id == merchant_id)
        .order_by(Redemption.redeemed_at.desc(), Redemption.id.desc())
        .limit(limit)
    )
    if store_id is not None:
        stmt = stmt.where(Redemption.store_id == store_id)
    return list(session.execute(stmt))


def mask_holder(holder_ref: str) -> str:
    """Enough for a cashier to tell diners apart, not enough to identify one."""
    if not holder_ref:
        return "***"
    if len(holder_ref) <= 4:
        return holder_ref[0] + "***"
    return f"{holder_ref[:2]}***{holder_ref[-2:]}"
