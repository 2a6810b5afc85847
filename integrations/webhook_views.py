"""The owners' webhooks page: endpoints (create, pause or resume, delete; the signing secret
shown), the latest deliveries and a redeliver button. Every lookup is by id *and* the
owner's merchant (``NotFound``, a 404 from the roof, for another merchant's rows)."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import StringField

from accounts import require_role
from accounts.models import Role
from core.db import db
from core.errors import Conflict, Invalid
from core.localtime import local_time
from core.txn import transaction
from integrations.services import webhooks
from integrations.webhook_models import DeliveryStatus, EventType
from merchants.forms import CsrfForm, MultiCheckboxField, options
from merchants.models import Merchant
from merchants.services import get_merchant_for

bp = Blueprint("webhooks", __name__, url_prefix="/portal/webhooks")

EVENT_LABELS = {
    EventType.coupon_claimed.value: _l("顾客领券"),
    EventType.coupon_redeemed.value: _l("优惠券核销"),
    EventType.coupon_reversed.value: _l("撤销核销"),
    EventType.campaign_finished.value: _l("营销活动结束"),
}
STATUS_LABELS = {
    DeliveryStatus.pending: _l("等待发送"),
    DeliveryStatus.succeeded: _l("成功"),
    DeliveryStatus.failed: _l("已放弃"),
}


class EndpointForm(FlaskForm):
    url = StringField(_l("接收地址"), description=_l("https:// 开头，收到事件后 5 秒内回复 2xx 即为成功"))
    events = MultiCheckboxField(_l("订阅的事件"), choices=options(EVENT_LABELS.items()),
                                default=list(EVENT_LABELS))


def _merchant() -> Merchant | None:
    return get_merchant_for(db.session, current_user)


def _render(merchant: Merchant, form: EndpointForm, status: int = 200):
    return render_template(
        "integrations/webhooks.html",
        merchant=merchant,
        endpoints=webhooks.endpoints_of(db.session, merchant.id),
        log=webhooks.deliveries_of(db.session, merchant.id),
        form=form,
        confirm=CsrfForm(),
        event_labels=EVENT_LABELS,
        status_labels=STATUS_LABELS,
        DeliveryStatus=DeliveryStatus,
        public_id=webhooks.public_id,
        local_time=local_time,
        log_size=webhooks.LOG_SIZE,
    ), status


@bp.get("/")
@require_role(Role.owner)
def index():
    merchant = _merchant()
    if merchant is None:
        return redirect(url_for("merchants.enrol"))
    return _render(merchant, EndpointForm())


@bp.post("/")
@require_role(Role.owner)
def create():
    merchant = _merchant()
    if merchant is None:
        return redirect(url_for("merchants.enrol"))
    form = EndpointForm()
    if not form.validate_on_submit():
        return _render(merchant, form, 400)
    try:
        with transaction(db.session) as session:
            webhooks.create_endpoint(session, merchant.id, form.url.data or "", form.events.data or [],
                                     allow_http=bool(current_app.config.get("WEBHOOK_ALLOW_HTTP")))
    except Invalid as exc:
        target = form.events if exc.field == "events" else form.url
        target.errors = [*target.errors, str(exc.message)]
        return _render(merchant, form, 400)
    flash(_("已添加接收地址，签名密钥见下表。"))
    return redirect(url_for(".index"))


def _endpoint_action(endpoint_id: int, act) -> None:
    """Look the endpoint up for this merchant first (404 for another's), then check CSRF."""
    merchant = _merchant()
    if merchant is None:
        abort(404)
    with transaction(db.session) as session:
        endpoint = webhooks.get_endpoint_for(session, endpoint_id, merchant.id)
        if not CsrfForm().validate_on_submit():
            abort(400)
        act(session, endpoint)


@bp.post("/<int:endpoint_id>/pause")
@require_role(Role.owner)
def pause(endpoint_id: int):
    _endpoint_action(endpoint_id, lambda session, e: webhooks.set_active(session, e, False))
    flash(_("已停用：新事件不再发往这个地址。"))
    return redirect(url_for(".index"))


@bp.post("/<int:endpoint_id>/resume")
@require_role(Role.owner)
def resume(endpoint_id: int):
    _endpoint_action(endpoint_id, lambda session, e: webhooks.set_active(session, e, True))
    flash(_("已启用。"))
    return redirect(url_for(".index"))


@bp.post("/<int:endpoint_id>/delete")
@require_role(Role.owner)
def delete(endpoint_id: int):
    _endpoint_action(endpoint_id, webhooks.delete_endpoint)
    flash(_("已删除接收地址及其发送记录。"))
    return redirect(url_for(".index"))


@bp.post("/deliveries/<int:delivery_id>/redeliver")
@require_role(Role.owner)
def redeliver(delivery_id: int):
    merchant = _merchant()
    if merchant is None:
        abort(404)
    try:
        with transaction(db.session) as session:
            delivery = webhooks.get_delivery_for(session, delivery_id, merchant.id)
            if not CsrfForm().validate_on_submit():
                abort(400)
            webhooks.redeliver(session, delivery)
    except Conflict as exc:
        flash(str(exc.message), "error")
    else:
        flash(_("已安排重发，几秒钟内送出。"))
    return redirect(url_for(".index"))
