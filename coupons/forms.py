"""Coupon forms. Money is typed in yuan and parsed straight to integer fen by
``core.money.parse_yuan`` (Decimal, no floats); anything unparseable becomes a form error.
Template rules live in ``coupons.services``."""
from __future__ import annotations

import re

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    Optional,
)
from wtforms.widgets import CheckboxInput, ListWidget

from core.bounds import DateRange, IntRange
from core.errors import Invalid
from core.localtime import WEEKDAY_LABELS, hhmm
from core.money import parse_yuan, yuan
from coupons.models import CouponKind, CouponTemplate, TemplateStatus
from coupons.services.display import kind_label, status_label
from coupons.services.templates import (
    MAX_PER_DINER,
    MAX_STOCK,
    MAX_VALID_DAYS,
    TemplateSpec,
)

_HHMM = re.compile(r"^([01]?\d|2[0-4])[:：]([0-5]\d)$")


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
        except Invalid as exc:  # WTForms shows a ValueError's text as the field's error
            self.data = None
            raise ValueError(str(exc.message)) from None

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
        _l("折扣"), validators=[Optional(), IntRange(1, 99, _l("折扣须在 1 到 99 之间"))],
        description=_l("折扣券填写：85 表示八五折（顾客付 85%）"),
    )
    cap = YuanField(_l("最高优惠（元）"), description=_l("折扣券必填"))
    min_spend = YuanField(_l("使用门槛：消费满（元）"), description=_l("0 或留空表示无门槛"))
    validity_mode = RadioField(
        _l("有效期"), choices=[SelectChoice("range", _l("固定日期")), SelectChoice("days", _l("领取后若干天"))], default="range"
    )
    valid_from = DateField(_l("开始日期"), validators=[Optional(), DateRange()])
    valid_until = DateField(_l("结束日期（含当天）"), validators=[Optional(), DateRange()])
    valid_days = IntegerField(_l("领取后有效天数"), validators=[
        Optional(), IntRange(1, MAX_VALID_DAYS, _l("领取后有效天数须在 1 到 366 之间"))])
    weekdays = MultiCheckboxField(_l("可用日"), coerce=int, choices=[])
    hours_start = TimeOfDayField(_l("可用时段：开始"), description=_l("例如 11:00；留空表示全天"))
    hours_end = TimeOfDayField(_l("可用时段：结束"), description=_l("例如 14:00"))
    store_ids = MultiCheckboxField(_l("适用门店"), coerce=int, choices=[],
                                   description=_l("不选表示全部门店"))
    total_stock = IntegerField(_l("总库存（张）"), validators=[
        Optional(), IntRange(1, MAX_STOCK, _l("库存须大于 0 且最多 %(n)d 张，不限库存请留空", n=MAX_STOCK))],
        description=_l("留空表示不限"))
    per_diner_limit = IntegerField(_l("每人限领（张）"), default=1, validators=[
        DataRequired(_l("请填写每人限领张数")),
        IntRange(1, MAX_PER_DINER, _l("每人限领 1 到 %(n)d 张", n=MAX_PER_DINER))])
    status = SelectField(_l("状态"), choices=[])
    description = TextAreaField(_l("使用说明"), validators=[Optional(), Length(max=500)])
    claimable = BooleanField(_l("允许顾客在门店页领取"),
                             description=_l("勾选后，认识的顾客可在门店页自己领取（受库存和每人限领约束）"))

    def __init__(self, *args, stores=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.kind.choices = [SelectChoice(k.value, kind_label(k)) for k in CouponKind]
        self.status.choices = [SelectChoice(s.value, status_label(s)) for s in TemplateStatus]
        self.weekdays.choices = [SelectChoice(i, label) for i, label in enumerate(WEEKDAY_LABELS)]
        self.store_ids.choices = [SelectChoice(s.id, s.name) for s in stores]

    def spec(self) -> TemplateSpec:
        """What was typed, as the terms the services check (no rule is applied here)."""
        kind = CouponKind(self.kind.data)
        by_range = self.validity_mode.data != "days"
        return TemplateSpec(
            name=self.name.data or "",
            kind=kind,
            value=(self.percent.data if kind == CouponKind.percent_off else self.amount.data) or 0,
            cap_fen=self.cap.data,
            min_spend_fen=self.min_spend.data or 0,
            valid_from=self.valid_from.data if by_range else None,
            valid_until=self.valid_until.data if by_range else None,
            valid_days=None if by_range else (self.valid_days.data or 0),
            weekdays_mask=sum(1 << d for d in set(self.weekdays.data or []) if 0 <= d < 7),
            hours_start=self.hours_start.data,
            hours_end=self.hours_end.data,
            store_ids=list(self.store_ids.data or []),
            total_stock=self.total_stock.data,
            per_diner_limit=self.per_diner_limit.data or 0,
            status=TemplateStatus(self.status.data),
            description=self.description.data or "",
            claimable=bool(self.claimable.data),
        )

    def fill(self, t: CouponTemplate) -> None:
        """Show a saved template for editing."""
        self.name.data, self.kind.data = t.name, t.kind.value
        if t.kind == CouponKind.percent_off:
            self.percent.data = t.value
        else:
            self.amount.data = t.value
        self.cap.data, self.min_spend.data = t.cap_fen, t.min_spend_fen
        self.validity_mode.data = "days" if t.valid_days else "range"
        self.valid_from.data, self.valid_until.data, self.valid_days.data = t.valid_from, t.valid_until, t.valid_days
        self.weekdays.data = [d for d in range(7) if t.weekdays_mask & (1 << d)]
        self.hours_start.data, self.hours_end.data = t.hours_start, t.hours_end
        self.store_ids.data = [s.id for s in t.stores]
        self.total_stock.data, self.per_diner_limit.data = t.total_stock, t.per_diner_limit
        self.status.data, self.description.data = t.status.value, t.description
        self.claimable.data = t.claimable

    def show_errors(self, errors: dict) -> None:
        """Put a ``TemplateError``'s messages on the fields they name (else on the form)."""
        for key, message in errors.items():
            name = _FIELD_FOR.get(key, key)
            if key == "value":
                name = "percent" if self.kind.data == CouponKind.percent_off.value else "amount"
            field = getattr(self, name, None)
            if field is None or not hasattr(field, "errors"):
                self.form_errors.append(str(message))
                continue
            field.errors = list(field.errors) + [str(message)]


# TemplateSpec field -> form field, where the names differ ("value" depends on the kind).
_FIELD_FOR = {
    "value": None, "cap_fen": "cap", "min_spend_fen": "min_spend", "weekdays_mask": "weekdays",
}


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


class WelcomeForm(FlaskForm):
    """A store's welcome text and welcome coupon (choices: the merchant's templates)."""

    welcome_text = TextAreaField(_l("欢迎语"))
    template_id = SelectField(_l("欢迎券"), coerce=str)
    submit = SubmitField(_l("保存"))
