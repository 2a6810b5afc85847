"""Coupon pages: templates (owner), the redemption desk (cashier or owner),
a store's welcome settings (owner).

Thin views: parse a form, call ``coupons.services``, render. Every lookup is scoped to the
signed-in user (templates and redemptions by merchant, stores through
``merchants.services.stores_visible_to``); another merchant's ids are ``NotFound`` (404).
"""
from __future__ import annotations

import base64
import io
import uuid
from datetime import datetime, timezone

import qrcode
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
from flask import (
    session as web_session,
)
from flask_babel import gettext as _
from flask_login import current_user
from wtforms import SelectChoice

from accounts import require_role
from accounts.models import Role
from core.db import db
from core.errors import NotFound
from core.extensions import get_redis
from core.localtime import local_time
from core.money import yuan
from core.txn import transaction
from coupons import services as svc
from coupons.forms import (
    CodeForm,
    ConfirmForm,
    ReverseForm,
    StatusForm,
    TemplateForm,
    WelcomeForm,
)
from coupons.models import Coupon, CouponTemplate, TemplateStatus
from merchants.forms import CsrfForm
from merchants.models import Merchant, ReviewStatus, Store
from merchants.services import (
    get_store_for,
    store_channels,
    stores_visible_to,
)

bp = Blueprint("coupons", __name__)

DESK_ROLES = (Role.owner, Role.cashier)


@bp.app_context_processor
def _coupon_helpers() -> dict:
    return {
        "coupon_headline": svc.headline, "coupon_kind": svc.kind_label, "yuan": yuan,
        "coupon_status": svc.status_label, "weekdays_text": svc.weekdays_text,
        "hours_text": svc.hours_text, "format_code": svc.format_code, "local_time": local_time,
    }


def _merchant_id() -> int:
    if current_user.merchant_id is None:
        raise NotFound()
    return current_user.merchant_id


def _my_stores() -> list[Store]:
    _merchant_id()  # an owner who has not enrolled has no coupons pages yet
    return list(db.session.scalars(stores_visible_to(db.session, current_user).order_by(Store.id)))


def _my_template(template_id: int) -> CouponTemplate:
    return svc.get_template(db.session, template_id, _merchant_id())


def _my_store(store_id: int) -> Store:
    return get_store_for(db.session, current_user, store_id)


# ------------------------------------------------------------------ templates


@bp.get("/portal/coupons/")
@require_role(Role.owner)
def templates():
    items = svc.list_templates(db.session, _merchant_id())
    stats = {s.template_id: s for s in svc.template_stats(db.session, _merchant_id())}
    return render_template("coupons/templates.html", templates=items, stats=stats, status_form=StatusForm())


def _save(form: TemplateForm, template: CouponTemplate | None):
    """Validate and save; returns the template, or None with errors on the form."""
    if not form.validate_on_submit():
        return None
    try:
        with transaction(db.session):
            spec = form.spec()
            if template is None:
                return svc.create_template(db.session, _merchant_id(), spec)
            return svc.update_template(db.session, template, spec)
    except svc.TemplateError as exc:
        form.show_errors(exc.errors)
        return None


@bp.route("/portal/coupons/new", methods=["GET", "POST"])
@require_role(Role.owner)
def new_template():
    stores = _my_stores()
    form = TemplateForm(stores=stores)
    if request.method == "GET":
        form.weekdays.data = list(range(7))
        form.status.data = TemplateStatus.draft.value
        form.per_diner_limit.data = 1
    saved = _save(form, None)
    if saved is not None:
        flash(_("已创建优惠券“%(n)s”", n=saved.name))
        return redirect(url_for("coupons.preview", template_id=saved.id))
    return render_template("coupons/template_form.html", form=form, template=None), (
        400 if request.method == "POST" else 200)


@bp.route("/portal/coupons/<int:template_id>/edit", methods=["GET", "POST"])
@require_role(Role.owner)
def edit_template(template_id: int):
    template = _my_template(template_id)
    form = TemplateForm(stores=_my_stores())
    if request.method == "GET":
        form.fill(template)
    saved = _save(form, template)
    if saved is not None:
        flash(_("已保存"))
        return redirect(url_for("coupons.preview", template_id=saved.id))
    if request.method == "POST":
        db.session.rollback()  # forget the failed edit; the form keeps what was typed
        template = _my_template(template_id)
    return render_template("coupons/template_form.html", form=form, template=template), (
        400 if request.method == "POST" else 200)


@bp.post("/portal/coupons/<int:template_id>/status")
@require_role(Role.owner)
def template_status(template_id: int):
    template = _my_template(template_id)
    form = StatusForm()
    if not form.validate_on_submit():
        abort(400)
    if form.status.data == TemplateStatus.ended.value and request.form.get("confirmed") != "1":
        return redirect(url_for("coupons.end_template", template_id=template.id))  # ask first
    try:
        with transaction(db.session):
            svc.set_template_status(db.session, template, TemplateStatus(form.status.data))
    except svc.TemplateError as exc:
        flash(" ".join(str(m) for m in exc.errors.values()), "error")
    return redirect(url_for("coupons.templates"))


@bp.get("/portal/coupons/<int:template_id>/end")
@require_role(Role.owner)
def end_template(template_id: int):
    """Ending cannot be undone: say what it means, then post the status with ``confirmed``."""
    template = _my_template(template_id)
    if template.status == TemplateStatus.ended:
        return redirect(url_for("coupons.templates"))
    stats = {s.template_id: s for s in svc.template_stats(db.session, _merchant_id())}.get(template.id)
    return render_template("coupons/end_confirm.html", template=template, stats=stats, status_form=StatusForm())


def qr_data_uri(text: str) -> str:
    buf = io.BytesIO()
    qrcode.make(text, box_size=6, border=2).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def desk_url(short_code: str) -> str:
    """What a coupon's QR encodes: the desk page, so any phone camera lands on it."""
    base = current_app.config.get("PUBLIC_BASE_URL", "").rstrip("/")
    return f"{base}/desk/c/{short_code}"


@bp.get("/portal/coupons/<int:template_id>/preview")
@require_role(Role.owner)
def preview(template_id: int):
    template = _my_template(template_id)
    merchant = db.session.get(Merchant, template.merchant_id)
    sample = "0" * svc.CODE_LENGTH
    return render_template(
        "coupons/preview.html", template=template, merchant=merchant,
        sample_code=sample, qr=qr_data_uri(desk_url(sample)),
    )


# ------------------------------------------------------------------ desk


def _desk_store() -> Store:
    """The till's store: a cashier's own; an owner's chosen one (remembered in the session)."""
    if current_user.role == Role.cashier:
        if current_user.store_id is None:
            raise NotFound()
        return _my_store(current_user.store_id)
    wanted = request.values.get("store_id", type=int) or web_session.get("desk_store_id")
    mine = _my_stores()
    stores = [s for s in mine if s.status == ReviewStatus.approved] or mine
    if not stores:
        raise NotFound()
    store = next((s for s in stores if s.id == wanted), stores[0])
    web_session["desk_store_id"] = store.id
    return store


def _throttled_page(store: Store):
    if current_user.role == Role.owner:
        error = _("错误券码太多，核销台已锁定 10 分钟。可以在下方解除锁定。")
    else:
        error = _("错误券码太多，请 10 分钟后再试，或请店主在核销台解除锁定")
    return render_template("coupons/desk.html", form=CodeForm(), store=store, stores=_desk_stores(),
                           error=error, locked=_locked_tills(store)), 429


def _locked_tills(store: Store) -> list[int]:
    """Locked tills at the store, for the owner's desk (a cashier cannot lift a lock)."""
    return svc.locked_tills(get_redis(), store.id) if current_user.role == Role.owner else []


def _desk_stores() -> list[Store]:
    return _my_stores() if current_user.role == Role.owner else []


def _not_found(store: Store, form: CodeForm | None = None):
    svc.record_wrong_code(get_redis(), current_user.id, store.id)
    return render_template("coupons/desk.html", form=form or CodeForm(), store=store, stores=_desk_stores(),
                           error=_("没有找到这张券，请核对券码")), 404


@bp.route("/desk", methods=["GET", "POST"])
@require_role(*DESK_ROLES)
def desk():
    store = _desk_store()
    form = CodeForm()
    if form.validate_on_submit():
        if svc.desk_throttled(get_redis(), current_user.id, store.id):
            return _throttled_page(store)
        code = svc.normalize_code(form.code.data)
        if svc.find_coupon(db.session, code, _merchant_id()) is None:
            return _not_found(store, form)
        return redirect(url_for("coupons.desk_coupon", short_code=code))
    recent = svc.recent_redemptions(db.session, _merchant_id(), store.id, limit=10)
    return render_template("coupons/desk.html", form=form, store=store, stores=_desk_stores(), recent=recent,
                           locked=_locked_tills(store))


@bp.post("/desk/unlock")
@require_role(Role.owner)
def desk_unlock():
    """The owner lifts the wrong-code lock of every till at one of their stores."""
    store = _my_store(request.form.get("store_id", type=int) or 0)
    if not CsrfForm().validate_on_submit():
        abort(400)
    lifted = svc.lift_desk_locks(get_redis(), store.id)
    flash(_("已解除 %(n)s 个核销台的锁定", n=lifted) if lifted else _("核销台没有被锁定"))
    return redirect(url_for("coupons.desk", store_id=store.id))


def _coupon_page(coupon: Coupon, store: Store, form: ConfirmForm, error: str | None = None, status: int = 200):
    problem = error
    if problem is None:
        try:
            svc.check_redeemable(db.session, coupon, store.id, datetime.now(timezone.utc))
        except svc.RedemptionError as exc:
            problem = exc.message
    stores_text = "、".join(s.name for s in coupon.template.stores) or _("全部门店")
    return render_template(
        "coupons/desk_coupon.html", coupon=coupon, template=coupon.template, store=store, form=form,
        problem=problem, holder=svc.mask_holder(coupon.holder_ref), stores_text=stores_text,
    ), status


@bp.route("/desk/c/<short_code>", methods=["GET", "POST"])
@require_role(*DESK_ROLES)
def desk_coupon(short_code: str):
    store = _desk_store()
    redis = get_redis()
    if svc.desk_throttled(redis, current_user.id, store.id):
        return _throttled_page(store)
    coupon = svc.find_coupon(db.session, short_code, _merchant_id())
    if coupon is None:
        return _not_found(store)
    form = ConfirmForm()
    if request.method == "GET":
        form.idempotency_key.data = uuid.uuid4().hex
        form.store_id.data = store.id
        return _coupon_page(coupon, store, form)
    if not form.validate_on_submit():
        return _coupon_page(coupon, store, form, status=400)
    code = coupon.short_code
    try:
        with transaction(db.session):
            result = svc.redeem(db.session, code, store.id, current_user.id, form.bill.data,
                                form.idempotency_key.data, merchant_id=_merchant_id())
    except svc.RedemptionError as exc:
        coupon = svc.find_coupon(db.session, code, _merchant_id())
        form.idempotency_key.data = uuid.uuid4().hex  # a fresh attempt after fixing the input
        return _coupon_page(coupon, store, form, error=exc.message, status=409)
    return redirect(url_for("coupons.desk_result", redemption_id=result.redemption_id))


def _my_redemption(redemption_id: int):
    """(redemption, coupon, template, store) of this merchant; a cashier sees their till's only."""
    return svc.get_redemption(
        db.session, redemption_id, _merchant_id(),
        till_only=current_user.role == Role.cashier, store_id=current_user.store_id,
    )


@bp.get("/desk/r/<int:redemption_id>")
@require_role(*DESK_ROLES)
def desk_result(redemption_id: int):
    red, coupon, template, store = _my_redemption(redemption_id)
    reversible = current_user.role == Role.owner and svc.can_reverse(red)
    return render_template("coupons/desk_result.html", red=red, coupon=coupon, template=template,
                           store=store, reversible=reversible, form=ReverseForm())


@bp.post("/desk/r/<int:redemption_id>/reverse")
@require_role(Role.owner)
def reverse(redemption_id: int):
    red, *_rest = _my_redemption(redemption_id)
    form = ReverseForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        with transaction(db.session):
            svc.reverse(db.session, red.id, current_user, reason=form.reason.data or "")
    except svc.ReversalError as exc:
        flash(exc.message, "error")
    else:
        flash(_("已撤销核销，券已退回顾客"))
    return redirect(url_for("coupons.desk_result", redemption_id=redemption_id))


# ------------------------------------------------------------------ welcome settings


@bp.route("/portal/stores/<int:store_id>/welcome", methods=["GET", "POST"])
@require_role(Role.owner)
def welcome(store_id: int):
    """The text and coupon a diner gets on adding the store's staff on WeCom."""
    store = _my_store(store_id)
    form = WelcomeForm()
    templates = svc.merchant_templates(db.session, store.merchant_id)
    form.template_id.choices = [SelectChoice("", _("（不送券）"))] + [SelectChoice(str(t.id), t.name) for t in templates]
    status = 200
    if request.method == "GET":
        form.welcome_text.data = store.welcome_text
        form.template_id.data = str(store.welcome_template_id or "")
    elif form.validate_on_submit():
        try:
            with transaction(db.session):
                svc.update_welcome(
                    db.session,
                    store,
                    text=form.welcome_text.data or "",
                    template_id=int(form.template_id.data) if form.template_id.data else None,
                )
        except svc.WelcomeError as exc:
            form.welcome_text.errors = [*form.welcome_text.errors, str(exc.message)]
            status = 400
        else:
            flash(_("欢迎设置已保存。"))
            return redirect(url_for("coupons.welcome", store_id=store_id))
    else:
        status = 400
    qr_channels = [c for c in store_channels(db.session, store.id) if c.qr_code]
    return render_template("coupons/welcome.html", store=store, form=form, qr_channels=qr_channels), status


def init_app(app) -> None:
    app.register_blueprint(bp)  # its store links are registered in merchants.views
