"""Portal pages for staff leaving (离职继承) and moving (在职继承): who serves which store, the
handover form, and a progress page per transfer. Views parse, call the transfer services,
render; every lookup there is tenant-scoped (``NotFound``, mapped to 404 by the roof)."""
from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import RadioField, SelectField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from accounts import require_role
from accounts.models import Role
from core.bounds import parse_id
from core.db import db
from core.localtime import local_time
from core.signals import store_staff_changed
from core.txn import transaction
from core.wecom import get_wecom
from merchants.forms import CsrfForm, options
from merchants.services import get_store_for
from merchants.views import register_store_link
from residents.models import TransferItemStatus, TransferKind, TransferStatus
from residents.transfers import jobs, labels, queries
from residents.transfers import services as svc
from wecom.client import WeComError

bp = Blueprint("transfers", __name__, url_prefix="/portal/transfers")

register_store_link("transfers.index", _l("员工交接"))

STAFF = (Role.owner, Role.manager, Role.admin)


class TransferForm(FlaskForm):
    kind = RadioField(
        _l("交接方式"),
        choices=options([
            (TransferKind.resigned.value, _l("离职继承：该成员已在企业微信办理离职")),
            (TransferKind.on_job.value, _l("在职继承：该成员仍在职（顾客可在 24 小时内拒绝）")),
        ]),
        default=TransferKind.resigned.value,
        validators=[DataRequired(message=_l("请选择交接方式。"))],
    )
    takeover = SelectField(_l("接替的同事"), coerce=int, validators=[DataRequired(message=_l("请选择接替的同事。"))])
    success_msg = TextAreaField(
        _l("转接提示语（在职继承，选填）"),
        validators=[Optional(), Length(max=svc.SUCCESS_MSG_MAX, message=_l("转接提示语最多 200 字。"))],
    )


@bp.app_template_filter("transfer_time")
def _transfer_time(value) -> str:
    """Aware UTC → local (Asia/Shanghai) "2025-06-02 12:30"."""
    return local_time(value)


@bp.app_context_processor
def _labels() -> dict:
    return {
        "TRANSFER_ITEM_LABELS": labels.STATUS_LABELS,
        "TRANSFER_KIND_LABELS": labels.KIND_LABELS,
        "TRANSFER_LABELS": labels.TRANSFER_LABELS,
    }


@bp.get("/")
@require_role(*STAFF)
def index():
    store = None
    store_id = request.args.get("store_id", type=parse_id)  # out of range: no store filter
    if store_id is not None:
        store = get_store_for(db.session, current_user, store_id)
    return render_template(
        "transfers/index.html",
        store=store,
        staff=queries.staff_overview(db.session, current_user, store_id),
        transfers=queries.list_transfers(db.session, current_user),
    )


@bp.route("/new/<int:store_id>/<int:member_id>", methods=["GET", "POST"])
@require_role(*STAFF)
def new(store_id: int, member_id: int):
    store, member = svc.get_staff_for(db.session, current_user, store_id, member_id)
    form = TransferForm()
    choices = svc.takeover_choices(db.session, store.merchant_id, member.id)
    form.takeover.choices = options([(0, _("请选择"))] + [(m.id, f"{m.name or m.userid}（{m.userid}）") for m in choices])
    error = None
    if form.validate_on_submit():
        started = _start(store, member, form)
        if isinstance(started, str):
            error = started
        else:
            return redirect(url_for("transfers.detail", transfer_id=started))
    status = 400 if (error or form.errors) else 200
    return render_template(
        "transfers/new.html", store=store, member=member, form=form, error=error, has_choices=bool(choices)
    ), status


def _start(store, member, form: TransferForm) -> int | str:
    """Ask WeCom who the member's customers are, create the transfer, queue the send; the
    transfer id, or the message to show."""
    kind = form.kind.data
    try:
        svc.check_request(
            db.session, store=store, member=member, takeover_id=form.takeover.data or 0, kind=kind,
            success_msg=form.success_msg.data or "",
        )
        customers = svc.wecom_customers_of(get_wecom(), member, kind)
    except svc.TransferError as exc:
        return str(exc.message)
    except WeComError as exc:
        return _("暂时无法从企业微信读取该成员的客户：%(hint)s（错误码 %(code)s）",
                 hint=exc.hint() or exc.errmsg, code=exc.errcode)
    try:
        with transaction(db.session):
            started = svc.start_transfer(
                db.session, current_user, store=store, member=member, takeover_id=form.takeover.data or 0,
                kind=kind, success_msg=form.success_msg.data or "", wecom_customers=customers,
            )
            transfer_id = started.transfer.id
            total = started.transfer.total
    except svc.TransferError as exc:
        return str(exc.message)
    jobs.enqueue_send(transfer_id)
    flash(_("交接已开始：共 %(n)s 位顾客，每批 100 位发送给企业微信。", n=total))
    for changed_store in started.store_ids:  # the leaving member leaves the stores' channel codes
        store_staff_changed.send(current_app._get_current_object(), store_id=changed_store)
    return transfer_id


@bp.get("/<int:transfer_id>")
@require_role(*STAFF)
def detail(transfer_id: int):
    transfer = svc.get_transfer_for(db.session, current_user, transfer_id)
    return render_template(
        "transfers/detail.html",
        p=queries.progress(db.session, transfer),
        form=CsrfForm(),
        Item=TransferItemStatus,
        TransferStatus=TransferStatus,
        refresh_seconds=current_app.config.get("TRANSFER_PAGE_REFRESH_SECONDS", 5),
    )


@bp.post("/<int:transfer_id>/refresh")
@require_role(*STAFF)
def refresh(transfer_id: int):
    """Ask WeCom now instead of waiting for the next scheduled poll."""
    if not CsrfForm().validate_on_submit():
        abort(400)
    transfer = svc.get_transfer_for(db.session, current_user, transfer_id)
    if transfer.status == TransferStatus.running:
        jobs.enqueue_poll(transfer.id)
        flash(_("已请求企业微信的最新结果，稍后刷新即可看到。"))
    return redirect(url_for("transfers.detail", transfer_id=transfer_id))


@bp.post("/<int:transfer_id>/retry")
@require_role(*STAFF)
def retry(transfer_id: int):
    """Send the failed items again (refusals are the customers' answer and stay)."""
    if not CsrfForm().validate_on_submit():
        abort(400)
    with transaction(db.session):
        transfer = svc.get_transfer_for(db.session, current_user, transfer_id)
        count = svc.retry_failed(db.session, transfer)
        running = transfer.status == TransferStatus.running
    if running:
        jobs.enqueue_send(transfer_id)
    flash(_("已重新发送 %(n)s 位失败的顾客。", n=count))
    return redirect(url_for("transfers.detail", transfer_id=transfer_id))
