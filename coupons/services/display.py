"""How coupons read to people: status and kind labels, the card's headline, usable days and
hours, a masked holder. Pure functions over templates (or specs); no queries."""
from __future__ import annotations

from flask_babel import get_locale
from flask_babel import lazy_gettext as _l

from core.localtime import WEEKDAY_LABELS, hhmm
from core.money import yuan
from coupons.models import ALL_WEEKDAYS, CouponKind


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


def headline(t) -> str:
    """The big line on a coupon card: 满100减20 / 8.5折 最高减30元 / 20元代金券 (a template
    or a ``TemplateSpec``)."""
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


def hours_text(t) -> str:
    if t.hours_start is None:
        return str(_l("全天"))
    return f"{hhmm(t.hours_start)}-{hhmm(t.hours_end)}"


def mask_holder(holder_ref: str) -> str:
    """Enough for a cashier to tell diners apart, not enough to identify one."""
    if not holder_ref:
        return "***"
    if len(holder_ref) <= 4:
        return holder_ref[0] + "***"
    return f"{holder_ref[:2]}***{holder_ref[-2:]}"
