"""Portal forms. Rules beyond "present and not too long" live in ``merchants.services``;
views copy a ``ServiceError`` onto the field it names."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    PasswordField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from core.localtime import WEEKDAY_LABELS as DAY_LABELS
from core.localtime import WEEKDAYS
from merchants.errors import ServiceError
from merchants.models import CUISINES, RegionLevel
from merchants.services.hours import build_opening_hours
from merchants.services.validation import (
    validate_credit_code,
    validate_mobile,
    yuan_to_fen,
)

# Display labels through Babel (pybabel sees these literals); same keys and Chinese text as
# ``merchants.models.CUISINES`` (a test keeps them in step).
CUISINE_LABELS = {
    "sichuan": _l("川菜"),
    "hunan": _l("湘菜"),
    "cantonese": _l("粤菜"),
    "dongbei": _l("东北菜"),
    "jiangzhe": _l("江浙菜"),
    "xibei": _l("西北菜"),
    "hotpot": _l("火锅"),
    "bbq": _l("烧烤"),
    "japanese": _l("日料"),
    "korean": _l("韩料"),
    "western": _l("西餐"),
    "fastfood": _l("快餐简餐"),
    "noodles": _l("面馆"),
    "dessert": _l("甜品饮品"),
}

# (code, label) pairs for the opening-hours checkboxes, Monday first.
WEEKDAY_LABELS = list(zip(WEEKDAYS, DAY_LABELS))


def options(pairs) -> list[SelectChoice]:
    """(value, label) pairs as WTForms 3.3 wants them."""
    return [SelectChoice(value, label) for value, label in pairs]


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _service_check(check, *args) -> None:
    """Run one of ``merchants.services``' checks as a field validator, so every field's
    complaint shows on the first submit (the service still checks them all again)."""
    try:
        check(*args)
    except ServiceError as exc:
        raise ValidationError(str(exc.message)) from None


class CsrfForm(FlaskForm):
    """Just the CSRF token, for pages whose inputs are built by hand (staff picker, buttons)."""


class StoreForm(FlaskForm):
    store_name = StringField(_l("门店名称"), validators=[DataRequired(), Length(max=100)])
    address = StringField(_l("门店地址"), validators=[DataRequired(), Length(max=255)])
    circle_id = SelectField(_l("所在商圈"), coerce=int, validators=[DataRequired(message=_l("请选择门店所在商圈。"))])
    cuisines = MultiCheckboxField(_l("菜系（可多选）"), choices=options((code, CUISINE_LABELS.get(code, label)) for code, label in CUISINES.items()))
    avg_spend = StringField(_l("人均消费（元）"), validators=[DataRequired(), Length(max=16)])
    hours_days_1 = MultiCheckboxField(_l("营业日"), choices=options(WEEKDAY_LABELS))
    hours_1 = StringField(_l("营业时间"), validators=[Length(max=200)], description=_l("例如 11:00-14:00,17:00-21:30"))
    hours_days_2 = MultiCheckboxField(_l("其他营业日（可选）"), choices=options(WEEKDAY_LABELS))
    hours_2 = StringField(_l("其他营业时间"), validators=[Length(max=200)], description=_l("例如周末 10:00-22:00"))

    # Field checks the services repeat, run here too so one submit shows every error.
    def validate_cuisines(self, field) -> None:
        if not field.data:
            raise ValidationError(str(_l("请至少选择一个菜系。")))

    def validate_avg_spend(self, field) -> None:
        _service_check(yuan_to_fen, field.data or "", "avg_spend")

    def validate_hours_1(self, field) -> None:
        _service_check(build_opening_hours, [(self.hours_days_1.data or [], field.data or "")])

    def validate_hours_2(self, field) -> None:
        _service_check(build_opening_hours, [(self.hours_days_2.data or [], field.data or "")])


class EnrolForm(StoreForm):
    name = StringField(_l("商户名称"), validators=[DataRequired(), Length(max=100)])
    credit_code = StringField(_l("统一社会信用代码"), validators=[DataRequired(), Length(max=24)])
    contact_mobile = StringField(_l("联系手机号"), validators=[DataRequired(), Length(max=20)])

    def validate_credit_code(self, field) -> None:
        _service_check(validate_credit_code, field.data or "")

    def validate_contact_mobile(self, field) -> None:
        _service_check(validate_mobile, field.data or "")


class ReviewForm(FlaskForm):
    decision = SelectField(_l("审核结果"), choices=options([("approve", _l("通过")), ("reject", _l("驳回"))]))
    reason = TextAreaField(_l("原因（驳回时必填）"), validators=[Optional(), Length(max=500)])


class CashierForm(FlaskForm):
    username = StringField(_l("收银员用户名"), validators=[DataRequired(), Length(min=3, max=64)])
    display_name = StringField(_l("称呼"), validators=[Length(max=64)])
    password = PasswordField(_l("初始密码"), validators=[DataRequired(), Length(min=8, max=256)])


class RegionForm(FlaskForm):
    name = StringField(_l("名称"), validators=[DataRequired(), Length(max=64)])
    level = SelectField(
        _l("级别"),
        choices=options(
            [(RegionLevel.city.value, _l("城市")), (RegionLevel.district.value, _l("区县")), (RegionLevel.circle.value, _l("商圈"))]
        ),
    )
    parent_id = SelectField(_l("上级区域"), coerce=int, default=0)


class ManagerForm(FlaskForm):
    username = StringField(_l("用户名"), validators=[DataRequired(), Length(min=3, max=64)])
    display_name = StringField(_l("称呼"), validators=[Length(max=64)])
    password = PasswordField(_l("初始密码"), validators=[DataRequired(), Length(min=8, max=256)])
    regions = MultiCheckboxField(_l("负责区域"), coerce=int)
