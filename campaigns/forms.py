"""Campaign forms: they parse what was typed (local wall time, HH:MM, numbers) into a
``CampaignInput`` and put the services' errors back on the fields they name. Every rule
lives in ``campaigns.services``; the forms only parse."""
from __future__ import annotations

from datetime import datetime, timezone

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    DateTimeLocalField,
    FloatField,
    IntegerField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Optional

from campaigns.models import Campaign, Channels
from campaigns.services import AudienceRule, CampaignInput
from campaigns.services.audience import MAX_DAYS, MAX_LIST
from campaigns.services.lifecycle import MAX_TEMPLATES, MAX_WINDOW_DAYS, MESSAGE_MAX, NAME_MAX, REASON_MAX
from core.errors import Conflict, DomainError
from core.localtime import LOCAL_TZ, local
from coupons.forms import MultiCheckboxField, TimeOfDayField
from merchants.models import CUISINES

CHANNEL_LABELS = {
    Channels.private: _l("私聊"),
    Channels.groups: _l("客户群"),
    Channels.both: _l("私聊和客户群"),
}
MATCH_LABELS = {"any": _l("喜欢其中任一菜系"), "all": _l("同时喜欢所有选中的菜系")}
DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]

# The services' messages (English, for logs and API callers) as the portal says them, and the
# field each belongs to. Anything not listed is shown as it came, on the form.
_MESSAGES = {
    f"name: 1..{NAME_MAX} characters": ("name", _l("活动名称须为 1 到 %(n)d 个字", n=NAME_MAX)),
    f"message: 1..{MESSAGE_MAX} characters": ("message", _l("推送文案须为 1 到 %(n)d 个字", n=MESSAGE_MAX)),
    f"reason: 1..{REASON_MAX} characters (why the diner gets this)": (
        "reason", _l("请写明推送理由（1 到 %(n)d 个字），顾客会看到", n=REASON_MAX)),
    f"templates: 1..{MAX_TEMPLATES}": ("template_ids", _l("请选择 1 到 %(n)d 张优惠券", n=MAX_TEMPLATES)),
    "template": ("template_ids", _l("所选优惠券不存在或不可用")),
    "a regional campaign hands out platform-funded templates only": (
        "template_ids", _l("区域活动只能发放平台出资的优惠券")),
    "send window: the end comes after the start": ("send_until", _l("结束时间须晚于开始时间")),
    f"send window: at most {MAX_WINDOW_DAYS} days": ("send_until", _l("发送时段最长 %(n)d 天", n=MAX_WINDOW_DAYS)),
    "quiet hours: times of day": ("quiet_start", _l("免打扰时段须为一天中的时间（00:00 到 23:59）")),
    "cuisines: unknown cuisine": ("cuisines", _l("未知的菜系")),
    "match: any or all": ("match", _l("请选择匹配方式")),
    "min_weight: a number": ("min_weight", _l("请填写数字")),
    "min_weight: 0..100": ("min_weight", _l("口味权重须在 0 到 100 之间")),
    f"store_ids: at most {MAX_LIST} ids": ("store_ids", _l("最多选择 %(n)d 家门店", n=MAX_LIST)),
    "store": ("store_ids", _l("所选门店不存在或未通过审核")),
    f"circle_ids: at most {MAX_LIST} ids": ("circle_ids", _l("最多选择 %(n)d 个商圈", n=MAX_LIST)),
    "circle": ("circle_ids", _l("所选商圈不在你的区域内")),
    f"added_within_days: 1..{MAX_DAYS} days": ("added_within_days", _l("天数须在 1 到 %(n)d 之间", n=MAX_DAYS)),
    f"no_redemption_days: 1..{MAX_DAYS} days": ("no_redemption_days", _l("天数须在 1 到 %(n)d 之间", n=MAX_DAYS)),
    "region: one of your regions": ("region_id", _l("请选择你负责的区域")),
    "only a draft can be edited": (None, _l("只有草稿可以修改")),
    "the send window is over": (None, _l("发送时段已经结束，请先修改时间")),
}


def error_text(exc: DomainError):
    """What the portal says for a service error (the services' own text when unknown)."""
    known = _MESSAGES.get(str(exc.message))
    if known is not None:
        return known[1]
    if str(exc.message).startswith("template ") and str(exc.message).endswith(" is not active"):
        return _l("所选优惠券未上架")
    if isinstance(exc, Conflict):  # someone (or the clock) moved the campaign first
        return _l("活动状态已经变化，不能执行这个操作，请刷新后再试")
    return str(exc.message) or _l("操作未能完成")


def _to_utc(value: datetime | None) -> datetime | None:
    """A datetime-local input is Shanghai wall time; the services take aware UTC."""
    return value.replace(tzinfo=LOCAL_TZ).astimezone(timezone.utc) if value is not None else None


def _to_local_input(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return local(value).replace(tzinfo=None)


class CampaignForm(FlaskForm):
    name = StringField(_l("活动名称"))
    message = TextAreaField(_l("推送文案"), description=_l("顾客在优惠券卡片上方读到的话"))
    reason = StringField(_l("推送理由"), description=_l("必填：告诉顾客为什么收到这条推送，例如「你常来我们店吃川菜」"))
    template_ids = MultiCheckboxField(_l("优惠券"), coerce=int, choices=[])
    channels = RadioField(_l("发送渠道"), choices=[], default=Channels.private.value)
    send_from = DateTimeLocalField(_l("开始发送（北京时间）"), format=DATETIME_FORMATS,
                                   validators=[InputRequired(_l("请填写开始时间"))])
    send_until = DateTimeLocalField(_l("停止发送（北京时间）"), format=DATETIME_FORMATS,
                                    validators=[InputRequired(_l("请填写结束时间"))])
    quiet_start = TimeOfDayField(_l("免打扰：从"), default=21 * 60, validators=[InputRequired(_l("请填写时间"))])
    quiet_end = TimeOfDayField(_l("免打扰：到"), default=9 * 60, validators=[InputRequired(_l("请填写时间"))],
                               description=_l("这段时间内不发送；开始晚于结束表示跨过午夜"))
    region_id = SelectField(_l("区域"), coerce=int, choices=[])
    cuisines = MultiCheckboxField(_l("口味：菜系"), choices=[], description=_l("不选表示不限口味"))
    match = RadioField(_l("匹配方式"), choices=[], default="any")
    min_weight = FloatField(_l("口味权重至少"), default=AudienceRule().min_weight,
                            validators=[InputRequired(_l("请填写数字"))])
    store_ids = MultiCheckboxField(_l("门店的顾客"), coerce=int, choices=[], description=_l("不选表示全部门店"))
    circle_ids = MultiCheckboxField(_l("商圈"), coerce=int, choices=[], description=_l("不选表示你负责的全部商圈"))
    added_within_days = IntegerField(_l("最近几天内添加的顾客"), validators=[Optional()],
                                     description=_l("留空表示不限"))
    no_redemption_days = IntegerField(_l("几天内没有核销过的顾客"), validators=[Optional()],
                                      description=_l("留空表示不限"))

    def __init__(self, *args, templates=(), stores=None, circles=None, regions=None, **kwargs):
        """``stores`` for an owner, ``circles`` and ``regions`` for a manager; a field without
        choices is dropped, so neither sees the other's."""
        super().__init__(*args, **kwargs)
        self.template_ids.choices = [SelectChoice(t.id, t.name) for t in templates]
        self.channels.choices = [SelectChoice(c.value, label) for c, label in CHANNEL_LABELS.items()]
        self.cuisines.choices = [SelectChoice(code, label) for code, label in CUISINES.items()]
        self.match.choices = [SelectChoice(k, label) for k, label in MATCH_LABELS.items()]
        if stores is None:
            del self.store_ids
        else:
            self.store_ids.choices = [SelectChoice(s.id, s.name) for s in stores]
        if circles is None:
            del self.circle_ids
        else:
            self.circle_ids.choices = [SelectChoice(c.id, c.name) for c in circles]
        if not regions or len(regions) < 2:
            del self.region_id  # one region (or none): the services pick it
        else:
            self.region_id.choices = [SelectChoice(r.id, r.name) for r in regions]

    def chosen_region_id(self) -> int | None:
        return self.region_id.data if "region_id" in self else None

    def data_input(self) -> CampaignInput:
        """What was typed, as the terms the services check (no rule is applied here)."""
        audience = {
            "cuisines": list(self.cuisines.data or []),
            "match": self.match.data or "any",
            "min_weight": self.min_weight.data,
            "added_within_days": self.added_within_days.data,
            "no_redemption_days": self.no_redemption_days.data,
        }
        if "store_ids" in self:
            audience["store_ids"] = list(self.store_ids.data or [])
        if "circle_ids" in self:
            audience["circle_ids"] = list(self.circle_ids.data or [])
        return CampaignInput(
            name=self.name.data or "", message=self.message.data or "", reason=self.reason.data or "",
            template_ids=list(self.template_ids.data or []), send_from=_to_utc(self.send_from.data),
            send_until=_to_utc(self.send_until.data), channels=Channels(self.channels.data),
            audience=audience, quiet_start=self.quiet_start.data, quiet_end=self.quiet_end.data,
        )

    def fill(self, c: Campaign) -> None:
        """Show a saved draft for editing."""
        rule = AudienceRule.from_dict(c.audience)
        self.name.data, self.message.data, self.reason.data = c.name, c.message, c.reason
        self.template_ids.data = [t.template_id for t in c.templates]
        self.channels.data = c.channels.value
        self.send_from.data, self.send_until.data = _to_local_input(c.send_from), _to_local_input(c.send_until)
        self.quiet_start.data, self.quiet_end.data = c.quiet_start, c.quiet_end
        self.cuisines.data, self.match.data, self.min_weight.data = rule.cuisines, rule.match, rule.min_weight
        self.added_within_days.data, self.no_redemption_days.data = rule.added_within_days, rule.no_redemption_days
        if "store_ids" in self:
            self.store_ids.data = rule.store_ids
        if "circle_ids" in self:
            self.circle_ids.data = rule.circle_ids
        if "region_id" in self:
            self.region_id.data = c.region_id

    def show_error(self, exc: DomainError) -> None:
        """Put a service error on the field it names (else on the form)."""
        known = _MESSAGES.get(str(exc.message))
        name = known[0] if known else exc.field
        field = self._fields.get(name) if name else None
        if field is None:
            self.form_errors.append(error_text(exc))
            return
        field.errors = list(field.errors) + [error_text(exc)]
