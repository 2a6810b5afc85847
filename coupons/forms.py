"""Coupon forms. Money is typed in yuan and parsed straight to integer fen (Decimal, no floats);
anything unparseable becomes a form error. Template rules live in ``coupons.services``."""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    DateField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from coupons.models import CouponKind, TemplateStatus
from coupons.services import WEEKDAY_LABELS, hhmm, kind_label, status_label, yuan

MAX_YUAN = Decimal(1_000_000)
_HHMM = re.compile(r"^([01]?\d|2[0-4])[:：]([0-5]\d)$")


def parse_yuan(text: str) -> int:
    """'58', '58.5', '¥58.50' -> fen. Raises ValueError with a message for the cashier."""
    cleaned = (text or "").strip().replace("¥", "").replace("￥", "").replace(",", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(_l("请输入金额，例如 58 或 58.50")) from None
    if not value.is_finite() or value < 0:
        raise ValueError(_l("金额不能为负数"))
    if value != value.quantize(Decimal("0.01")):
        raise ValueError(_l("金额最多两位小数"))
    if value > MAX_YUAN:
        raise ValueError(_l("金额过大"))
    return int(value * 100)


def parse_hhmm(text: str) -> int | None:
    """'11:00' -> 660 minutes; '' -> None."""
    text = (text or "").strip()
    if not text:
        return None
    m = _HHMM.match(text)
    if not m or (int(m.group(1)) == 24 and m.group(2) != "00"):
        raise ValueError(_l("请按 11:00 的格式填写时间"))
    return int(m.group(1)) * 60 + int(m.group(2))


class YuanField(StringField):
    """Typed in yuan, ``.data`` is integer fen (None when left empty)."""

    def process_formdata(self, valuelist):
        raw = valuelist[0] if valuelist else ""
        self.raw_text = raw
        if not (raw or "").strip():
            self.data = None
            return
        try:
            self.data = parse_yuan(raw)
        except ValueError as exc:
            self.data = None
            raise ValueError(str(exc)) from None

    def _value(self):
        if getattr(self, "raw_text", None) is not None:
            return self.raw_text
        return yuan(self.data)


class TimeOfDayField(StringField):
    """'HH:MM' in, minutes after midnight out."""

    def process_formdata(self, valuelist):
        raw = valuelist[0] if valuelist else ""
        self.raw_text = raw
        try:
            self.data = parse_hhmm(raw)
        except ValueError as exc:
            self.data = None
            raise ValueError(str(exc)) from None

    def _value(self):
        if getattr(self, "raw_text", None) is not None:
            return self.raw_text
        return hhmm(self.data)


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class TemplateForm(FlaskForm):
    name = StringField(_l("券名称"), validators=[DataRequired(), Length(max=64)])
    kind = SelectField(_l("类型"), choices=[])
    amount = YuanField(_l("面额 / 减免金额（元）"), description=_l("满减券和代金券填写"))
    percent = IntegerField(
        _l("折扣"), validators=[Optional(), NumberRange(1, 99, _l("折扣须在 1 到 99 之间"))],
        description=_l("折扣券填写：85 表示八五折（顾客付 85%）"),
    )
    cap = YuanField(_l("最高优惠（元）"), description=_l("折扣券必填"))
    min_spend = YuanField(_l("使用门槛：消费满（元）"), description=_l("0 或留空表示无门槛"))
    validity_mode = RadioField(
        _l("有效期"), choices=[SelectChoice("range", _l("固定日期")), SelectChoice("days", _l("领取后若干天"))], default="range"
    )
    valid_from = DateField(_l("开始日期"), validators=[Optional()])
    valid_until = DateField(_l("结束日期（含当天）"), validators=[Optional()])
    valid_days = IntegerField(_l("领取后有效天数"), validators=[Optional()])
    weekdays = MultiCheckboxField(_l("可用日"), coerce=int, choices=[])
    hours_start = TimeOfDayField(_l("可用时段：开始"), description=_l("例如 11:00；留空表示全天"))
    hours_end = TimeOfDayField(_l("可用时段：结束"), description=_l("例如 14:00"))
    store_ids = MultiCheckboxField(_l("适用门店"), coerce=int, choices=[],
                                   description=_l("不选表示全部门店"))
    total_stock = IntegerField(_l("总库存（张）"), validators=[Optional()], description=_l("留空表示不限"))
    per_diner_limit = IntegerField(_l("每人限领（张）"), default=1, validators=[DataRequired(_l("请填写每人限领张数"))])
    status = SelectField(_l("状态"), choices=[])
    description = TextAreaField(_l("使用说明"), validators=[Optional(), Length(max=500)])

    def __init__(self, *args, stores=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.kind.choices = [SelectChoice(k.value, kind_label(k)) for k in CouponKind]
        self.status.choices = [SelectChoice(s.value, status_label(s)) for s in TemplateStatus]
        self.weekdays.choices = [SelectChoice(i, label) for i, label in enumerate(WEEKDAY_LABELS)]
        self.store_ids.choices = [SelectChoice(s.id, s.name) for s in stores]


class StatusForm(FlaskForm):
    status = SelectField(choices=[SelectChoice(s.value, s.value) for s in TemplateStatus])


class CodeForm(FlaskForm):
    """The desk's type-the-code box."""

    code = StringField(_l("券码"), validators=[DataRequired(_l("请输入券码")), Length(max=32)])
    store_id = HiddenField()


class ConfirmForm(FlaskForm):
    """Bill amount and the idempotency key minted when the page was rendered."""

    bill = YuanField(_l("本单消费金额（元）"), validators=[InputRequired(_l("请输入消费金额"))])
    idempotency_key = HiddenField(validators=[DataRequired(), Length(max=64)])
    store_id = HiddenField()


class ReverseForm(FlaskForm):
    reason = StringField(_l("撤销原因"), validators=[Optional(), Length(max=255)])
