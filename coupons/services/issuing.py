"""Issuing: a diner claims a coupon of a template. Stock and the per-diner limit are held by
the database (a conditional UPDATE and a unique key), never by a check in Python."""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import tally
from core.bounds import in_date_range
from core.errors import Conflict
from core.localtime import as_utc, local_midnight
from core.signals import coupon_claimed, send_after_commit
from coupons.models import CLAIMED_SOURCES, Coupon, CouponSource, CouponStatus, CouponTemplate, TemplateStatus
from coupons.services.templates import MAX_VALID_DAYS

# Crockford base32: no I, L, O, U. 10 symbols x 5 bits = 50 bits of entropy per code.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 10
_CODE_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})


class IssueError(Conflict):
    """Why a claim got no coupon; ``code`` is for callers, ``message`` for the diner."""

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


def _validity(t: CouponTemplate, now: datetime) -> tuple[datetime, datetime]:
    if t.valid_days is not None:
        return now, now + timedelta(days=t.valid_days)
    return local_midnight(t.valid_from), local_midnight(t.valid_until + timedelta(days=1))


def _bad_terms() -> IssueError:
    return IssueError("bad_terms", str(_l("这张券的有效期设置有误，暂不可领取")))


def _checked_validity(t: CouponTemplate, now: datetime) -> tuple[datetime, datetime]:
    """The coupon's validity, or ``bad_terms`` for a template whose dates no coupon can have:
    one stored before the bounds (``valid_until`` 9999-12-31 overflowed ``date + 1 day``
    and failed every welcome of its store), outside 2000..2099, or with a missing end."""
    if t.valid_days is None and not (t.valid_from and t.valid_until
                                     and in_date_range(t.valid_from) and in_date_range(t.valid_until)):
        raise _bad_terms()
    if t.valid_days is not None and not 0 < t.valid_days <= MAX_VALID_DAYS:
        raise _bad_terms()
    try:
        valid_from, valid_until = _validity(t, now)
    except (OverflowError, ValueError):
        raise _bad_terms() from None
    return valid_from, valid_until


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
    source: CouponSource = CouponSource.other,
    store_id: int | None = None,
    channel_id: int | None = None,
    campaign_id: int | None = None,
) -> Coupon:
    """Give a diner one coupon. Stock is a conditional UPDATE on ``issued_count``; the
    per-diner limit is the unique (template, holder, seq) key, so racing claims can't overshoot.
    ``source`` and the origin ids say what the statistics credit it to."""
    now = as_utc(now)
    t = session.get(CouponTemplate, template_id)
    if t is None:
        raise IssueError("not_found", str(_l("券不存在")))
    if t.status != TemplateStatus.active:
        raise IssueError("inactive", str(_l("这张券当前不可领取")))
    valid_from, valid_until = _checked_validity(t, now)
    if t.valid_until is not None and now >= valid_until:
        raise IssueError("ended", str(_l("这张券已过领取期")))
    held = _held(session, t.id, holder_ref)
    if held >= t.per_diner_limit:
        raise IssueError("limit", str(_l("每人限领 %(n)d 张，您已领过", n=t.per_diner_limit)))
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
                    source=source, origin_store_id=store_id, origin_channel_id=channel_id,
                    origin_campaign_id=campaign_id,
                )
                session.add(coupon)
                session.flush()
                tally.count(session, now, store_id=store_id, template_id=t.id, campaign_id=campaign_id,
                            channel_id=channel_id, issued=1, claimed=int(source in CLAIMED_SOURCES))
        except IntegrityError:
            # a racing claim by the same diner took this seq, or (2^-50) a code collision
            held = _held(session, t.id, holder_ref)
            if held >= t.per_diner_limit:
                raise IssueError("limit", str(_l("每人限领 %(n)d 张，您已领过", n=t.per_diner_limit)))
            continue
        session.refresh(t, ["issued_count"])
        if source in CLAIMED_SOURCES:
            send_after_commit(session, coupon_claimed, coupon_id=coupon.id)
        return coupon
    raise IssueError("busy", str(_l("领取人数过多，请稍后再试")))
