"""The merchant portal: enrolment, stores, serving staff, cashiers, and the review queue.
Views parse, call ``merchants.services``, render; every store lookup is tenant-scoped."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy.exc import IntegrityError

from accounts import require_role
from accounts.models import Role
from core.db import db
from core.money import fen_to_yuan
from core.signals import store_staff_changed
from core.txn import transaction
from core.wecom import get_wecom
from merchants import services
from merchants.forms import (
    CUISINE_LABELS,
    WEEKDAY_LABELS,
    CashierForm,
    CsrfForm,
    EnrolForm,
    ReviewForm,
    StoreForm,
    options,
)
from merchants.models import ReviewStatus, Store
from merchants.services import ServiceError, StaffChoice
from wecom.client import WeComError

bp = Blueprint("merchants", __name__, url_prefix="/portal")

# Other packages add per-store pages (channels, coupons, statistics) to the store page:
# ``register_store_link("channels.index", _l("渠道活码"))``; the endpoint takes ``store_id``.
STORE_LINKS: list[tuple[str, object]] = []


def register_store_link(endpoint: str, label) -> None:
    if endpoint not in (e for e, _label in STORE_LINKS):
        STORE_LINKS.append((endpoint, label))


# Pages other packages serve per store; shown only when the endpoint exists.
register_store_link("channels.index", _l("渠道活码"))
register_store_link("coupons.welcome", _l("欢迎语"))


@bp.app_template_filter("yuan")
def _yuan(fen) -> str:
    return fen_to_yuan(fen)


@bp.app_template_filter("cuisine")
def _cuisine(code: str) -> str:
    return str(CUISINE_LABELS.get(code, code))


@bp.app_context_processor
def _portal_context() -> dict:
    return {"ReviewStatus": ReviewStatus, "Role": Role, "WEEKDAY_LABELS": dict(WEEKDAY_LABELS)}


def _show_error(form, exc: ServiceError) -> None:
    """Put a service's complaint on the field it names (or on the whole form)."""
    name = {"hours": "hours_1"}.get(exc.field or "", exc.field or "")
    target = getattr(form, name, None) if name else None
    if target is not None and hasattr(target, "errors"):
        if not isinstance(target.errors, list):
            target.errors = list(target.errors)
        target.errors.append(str(exc.message))
    else:
        form.form_errors.append(str(exc.message))


def _store_input(form: StoreForm) -> services.StoreInput:
    """Form → StoreInput; raises ServiceError for money and hours it cannot parse."""
    return services.StoreInput(
        name=form.store_name.data or "",
        address=form.address.data or "",
        circle_id=form.circle_id.data or 0,
        cuisines=list(form.cuisines.data or []),
        avg_spend_fen=services.yuan_to_fen(form.avg_spend.data or "", "avg_spend"),
        opening_hours=services.build_opening_hours(
            [(form.hours_days_1.data or [], form.hours_1.data or ""), (form.hours_days_2.data or [], form.hours_2.data or "")]
        ),
    )


def _fill_store_form(form: StoreForm, store) -> None:
    """Prefill an edit form from a store (the opening hours folded back into two groups)."""
    # an approved store's change waiting for review is what the owner last asked for
    form.store_name.data = store.pending_name if store.pending_name is not None else store.name
    form.address.data = store.pending_address if store.pending_address is not None else store.address
    form.circle_id.data = store.circle_id
    form.cuisines.data = list(store.cuisines or [])
    form.avg_spend.data = fen_to_yuan(store.avg_spend_fen)
    groups: dict[str, list[str]] = {}
    for day, ranges in (store.opening_hours or {}).items():
        groups.setdefault(",".join(f"{a}-{b}" for a, b in ranges), []).append(day)
    items = list(groups.items())
    if items:
        form.hours_1.data, form.hours_days_1.data = items[0]
    if len(items) > 1:
        form.hours_2.data, form.hours_days_2.data = items[1]


def _my_merchant():
    return services.get_merchant_for(db.session, current_user)


# --------------------------------------------------------------------------- owner pages


@bp.get("/")
@require_role(Role.owner)
def portal_home():
    merchant = _my_merchant()
    if merchant is None:
        return redirect(url_for("merchants.enrol"))
    stores = list(db.session.scalars(services.stores_visible_to(db.session, current_user).order_by(Store.id)))
    return render_template("merchants/home.html", merchant=merchant, stores=stores)


@bp.route("/enrol", methods=["GET", "POST"])
@require_role(Role.owner)
def enrol():
    if _my_merchant() is not None:
        return redirect(url_for("merchants.portal_home"))
    form = EnrolForm()
    form.circle_id.choices = options([(0, _("请选择"))] + services.circle_choices(db.session))
    status = 200
    if form.validate_on_submit():
        try:
            with transaction(db.session):
                services.enrol_merchant(
                    db.session,
                    current_user,
                    name=form.name.data,
                    credit_code=form.credit_code.data,
                    contact_mobile=form.contact_mobile.data,
                    store=_store_input(form),
                )
        except ServiceError as exc:
            _show_error(form, exc)
        except IntegrityError:
            form.credit_code.errors.append(_("该统一社会信用代码已入驻。"))
        else:
            flash(_("已提交，等待审核。审核通过后即可创建渠道活码。"))
            return redirect(url_for("merchants.portal_home"))
    if form.errors or form.form_errors:
        status = 400
    return render_template("merchants/enrol.html", form=form), status


@bp.route("/stores/new", methods=["GET", "POST"])
@require_role(Role.owner)
def new_store():
    merchant = _my_merchant()
    if merchant is None:
        return redirect(url_for("merchants.enrol"))
    form = StoreForm()
    form.circle_id.choices = options([(0, _("请选择"))] + services.circle_choices(db.session))
    if form.validate_on_submit():
        try:
            with transaction(db.session):
                store = services.add_store(db.session, merchant, _store_input(form))
        except ServiceError as exc:
            _show_error(form, exc)
        else:
            flash(_("门店已提交，等待审核。"))
            return redirect(url_for("merchants.store_detail", store_id=store.id))
    status = 400 if (form.errors or form.form_errors) else 200
    return render_template("merchants/store_form.html", form=form, store=None), status


@bp.get("/stores/<int:store_id>")
@require_role(Role.owner, Role.manager, Role.admin)
def store_detail(store_id: int):
    store = services.get_store_with_staff(db.session, current_user, store_id)
    links = [
        (url_for(endpoint, store_id=store.id), label)
        for endpoint, label in STORE_LINKS
        if endpoint in current_app.view_functions
    ]
    return render_template(
        "merchants/store.html",
        store=store,
        circle_path=services.region_path(store.circle),
        links=links,
        cashiers=services.cashiers_of(db.session, store) if current_user.role == Role.owner else [],
    )


@bp.route("/stores/<int:store_id>/edit", methods=["GET", "POST"])
@require_role(Role.owner)
def edit_store(store_id: int):
    store = services.get_store_for(db.session, current_user, store_id)
    form = StoreForm()
    form.circle_id.choices = options([(0, _("请选择"))] + services.circle_choices(db.session))
    if request.method == "GET":
        _fill_store_form(form, store)
    elif form.validate_on_submit():
        try:
            with transaction(db.session):
                services.update_store(db.session, store, _store_input(form))
        except ServiceError as exc:
            _show_error(form, exc)
        else:
            if store.has_pending_change:
                flash(_("门店资料已保存。新的名称或地址审核通过后对顾客展示，在此之前仍显示原来的。"))
            else:
                flash(_("门店资料已保存。"))
            return redirect(url_for("merchants.store_detail", store_id=store.id))
    status = 400 if (form.errors or form.form_errors) else 200
    return render_template("merchants/store_form.html", form=form, store=store), status


# --------------------------------------------------------------------------- serving staff


def _parse_staff(form_data) -> list[StaffChoice]:
    choices = []
    for userid in form_data.getlist("member"):
        cap_text = (form_data.get(f"cap-{userid}") or "").strip()
        try:
            cap = int(cap_text) if cap_text else None
        except ValueError:
            raise ServiceError(_("每日添加上限应在 1–10000 之间（留空表示不限）。"), "members") from None
        choices.append(StaffChoice(userid=userid, backup=bool(form_data.get(f"backup-{userid}")), daily_add_cap=cap))
    return choices


@bp.route("/stores/<int:store_id>/staff", methods=["GET", "POST"])
@require_role(Role.owner)
def store_staff(store_id: int):
    store = services.get_store_with_staff(db.session, current_user, store_id)
    form = CsrfForm()
    wecom_problem = error = None
    members = []
    try:
        users, holders = services.fetch_corp_members(get_wecom())
    except WeComError as exc:
        wecom_problem = services.describe_wecom_error(exc)
    else:
        with transaction(db.session):
            services.upsert_members(db.session, users, holders)
            # only the members granted to this merchant are offered
            members = services.staff_candidates(db.session, store)

    if request.method == "POST" and form.validate_on_submit():
        if wecom_problem:
            error = _("未能核对企业微信成员，暂不能保存。")
        else:
            try:
                with transaction(db.session):
                    changed = services.set_store_staff(db.session, store, _parse_staff(request.form))
            except ServiceError as exc:
                error = str(exc.message)
            else:
                flash(_("接待成员已保存。"))
                if changed:
                    _announce_staff_change(store_id)
                return redirect(url_for("merchants.store_staff", store_id=store_id))
    current = {sm.member.userid: sm for sm in store.staff}
    status = 400 if error else 200
    return render_template(
        "merchants/staff.html", store=store, form=form, members=members, current=current,
        wecom_problem=wecom_problem, error=error,
    ), status


def _announce_staff_change(store_id: int) -> None:
    """Channel codes follow the serving staff (``update_contact_way``); ``merchants.handlers``
    listens."""
    try:
        store_staff_changed.send(current_app._get_current_object(), store_id=store_id)
    except WeComError as exc:
        flash(_("接待成员已保存，但渠道活码未能同步：%(hint)s", hint=exc.hint() or exc.errmsg), "error")


# --------------------------------------------------------------------------- cashiers


@bp.route("/stores/<int:store_id>/cashiers", methods=["GET", "POST"])
@require_role(Role.owner)
def store_cashiers(store_id: int):
    store = services.get_store_for(db.session, current_user, store_id)
    form = CashierForm()
    if form.validate_on_submit():
        try:
            with transaction(db.session):
                services.add_cashier(
                    db.session, store, username=form.username.data, password=form.password.data,
                    display_name=form.display_name.data,
                )
        except ServiceError as exc:
            _show_error(form, exc)
        except IntegrityError:
            form.username.errors.append(_("用户名已被占用。"))
        else:
            flash(_("收银员账号已创建。"))
            return redirect(url_for("merchants.store_cashiers", store_id=store_id))
    status = 400 if (form.errors or form.form_errors) else 200
    return render_template(
        "merchants/cashiers.html", store=store, form=form, toggle_form=CsrfForm(),
        cashiers=services.cashiers_of(db.session, store),
    ), status


@bp.post("/stores/<int:store_id>/cashiers/<int:user_id>/active")
@require_role(Role.owner)
def toggle_cashier(store_id: int, user_id: int):
    form = CsrfForm()
    if not form.validate_on_submit():
        abort(400)
    with transaction(db.session):
        store = services.get_store_for(db.session, current_user, store_id)
        user = services.set_cashier_active(db.session, store, user_id, request.form.get("active") == "1")
    flash(_("已启用 %(u)s。", u=user.username) if user.active else _("已停用 %(u)s。", u=user.username))
    return redirect(url_for("merchants.store_cashiers", store_id=store_id))


# --------------------------------------------------------------------------- review


@bp.get("/review")
@require_role(Role.admin, Role.manager)
def review_queue():
    return _render_queue({})


def _render_queue(forms: dict, status: int = 200):
    pending = services.review_queue(db.session, current_user)
    for store in pending:
        forms.setdefault(store.id, ReviewForm(formdata=None, prefix=f"s{store.id}"))
    return render_template(
        "merchants/review.html",
        pending=pending,
        forms=forms,
        recent=services.recent_reviews(db.session, current_user),
        path=services.region_path,
    ), status


@bp.post("/review/<int:store_id>")
@require_role(Role.admin, Role.manager)
def review(store_id: int):
    services.get_store_for(db.session, current_user, store_id)  # 404 outside the reviewer's regions
    form = ReviewForm(prefix=f"s{store_id}")
    if form.validate_on_submit():
        try:
            with transaction(db.session):
                store = services.review_store(
                    db.session, current_user, store_id,
                    approve=form.decision.data == "approve", reason=form.reason.data or "",
                )
        except ServiceError as exc:
            _show_error(form, exc)
        else:
            if form.decision.data == "approve":
                flash(_("已通过：%(name)s", name=store.name))
            else:
                flash(_("已驳回：%(name)s", name=store.name))
            return redirect(url_for("merchants.review_queue"))
    return _render_queue({store_id: form}, status=400)
