"""Plain words for a handover's statuses and WeCom's errcodes, and masked customer names:
what the portal pages show, kept apart from the rules."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l

from coupons.services import mask_holder
from residents.models import TransferItemStatus, TransferKind, TransferStatus
from wecom.client import hint_for

STATUS_LABELS = {
    TransferItemStatus.queued: _l("待发送"),
    TransferItemStatus.waiting: _l("等待接替"),
    TransferItemStatus.done: _l("已完成"),
    TransferItemStatus.refused: _l("被拒绝"),
    TransferItemStatus.failed: _l("失败"),
}
KIND_LABELS = {TransferKind.resigned: _l("离职继承"), TransferKind.on_job: _l("在职继承")}
TRANSFER_LABELS = {TransferStatus.running: _l("进行中"), TransferStatus.done: _l("已完成"), TransferStatus.failed: _l("有失败")}
# Plain words for the errcodes a transfer item can carry (beyond wecom.client's hints).
ERRCODE_LABELS = {
    40003: _l("成员账号无效或已离职"),
    40096: _l("客户 ID 无效"),
    40097: _l("该成员尚未在企业微信办理离职，请改用在职继承或先在管理后台办理离职"),
    40098: _l("接替成员尚未实名认证"),
    40099: _l("接替成员的客户数已达上限"),
    40128: _l("该客户 90 天内转接次数已达上限"),
    40131: _l("该客户已不是原成员的客户"),
    84074: _l("接替成员没有客户联系权限"),
    -1: _l("企业微信暂时不可用"),
}


def mask_name(name: str | None, fallback: str = "") -> str:
    """"张*" for 张三, "王**" for 王小明; an id shows its ends only."""
    name = (name or "").strip()
    if name:
        return name[0] + "*" * max(1, len(name) - 1)
    return mask_holder(fallback)


def errcode_label(code: int | None, status: TransferItemStatus) -> str:
    if status == TransferItemStatus.refused and code is None:
        return str(_l("顾客拒绝转接"))
    if code is None:
        return str(_l("企业微信未返回结果"))
    label = ERRCODE_LABELS.get(code) or hint_for(code) or _l("错误")
    return str(_l("%(label)s（%(code)s）", label=label, code=code))
