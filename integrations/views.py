"""The owners' API keys page: list, create (merchant-wide or one store), rename, revoke.

A new key's token is rendered in the POST's own response and nowhere else — not in a flash
message or the session cookie, not on any later page: only its SHA-256 is kept, so a lost
token means a new key. Every lookup is by id *and* the owner's merchant (``NotFound``, a 404
from the roof, for another merchant's key)."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import Length

from accounts import require_role
from accounts.models import Role
from core.db import db
from core.errors import Invalid
from core.localtime import local_time
from core.txn import transaction
from integrations.services import keys
from merchants.forms import CsrfForm, options
from merchants.models import Merchant, Store
from merchants.services import get_merchant_for, get_store_for, stores_visible_to

bp = Blueprint("integrations", __name__, url_prefix="/portal/api-keys")

ALL_STORES = 0  # the scope choice for a merchant-wide key


class KeyForm(FlaskForm):
    label = StringField(_l("名称"), validators=[Length(max=keys.LABEL_MAX)],
                        description=_l("写明用在哪里，如：前台收银机、外卖收银系统"))
    scope = SelectField(_l("可操作的门店"), coerce=int, default=ALL_STORES)


class LabelForm(FlaskForm):
    label = StringField(_l("名称"), validators=[Length(max=keys.LABEL_MAX)])


def _merchant() -> Merchant | None:
    return get_merchant_for(db.session, current_user)


def _stores() -> list[Store]:
    return list(db.session.scalars(stores_visible_to(db.session, current_user).order_by(Store.id)))


def _key_form(stores: list[Store], *, blank: bool = False) -> KeyForm:
    form = KeyForm(formdata=None) if blank else KeyForm()
    form.scope.choices = options([(ALL_STORES, _("全部门店（商户密钥）"))] + [(s.id, s.name) for s in stores])
    return form


def _render(merchant: Merchant, stores: list[Store], form: KeyForm, status: int = 200, *,
            new_token: str | None = None, new_key_id: int | None = None, label_error: str | None = None):
    """The page; ``new_token`` only in the answer to the POST that made it."""
    return render_template(
        "integrations/keys.html",
        merchant=merchant,
        keys=keys.keys_of_merchant(db.session, merchant.id),
        store_names={s.id: s.name for s in stores},  # one query for every row's store name
        form=form,
        confirm=CsrfForm(),
        new_token=new_token,
        new_key_id=new_key_id,
        label_error=label_error,
        token_prefix=keys.TOKEN_PREFIX,
        local_time=local_time,
    ), status


@bp.get("/")
@require_role(Role.owner)
def index():
    merchant = _merchant()
    if merchant is None:
        return redirect(url_for("merchants.enrol"))
    stores = _stores()
    return _render(merchant, stores, _key_form(stores))


@bp.post("/")
@require_role(Role.owner)
def create():
    merchant = _merchant()
    if merchant is None:
        return redirect(url_for("merchants.enrol"))
    stores = _stores()
    form = _key_form(stores)
    if not form.validate_on_submit():
        return _render(merchant, stores, form, 400)
    try:
        with transaction(db.session) as session:
            store_id = get_store_for(session, current_user, form.scope.data).id if form.scope.data else None
            new = keys.create_key(session, merchant_id=merchant.id, store_id=store_id, label=form.label.data,
                                  created_by_id=current_user.id)
            token, key_id = new.token, new.key.id
    except Invalid as exc:
        form.label.errors = [*form.label.errors, str(exc.message)]
        return _render(merchant, stores, form, 400)
    body, status = _render(merchant, stores, _key_form(stores, blank=True), new_token=token, new_key_id=key_id)
    # the one page holding the secret: no cache, no back-button copy
    return body, status, {"Cache-Control": "no-store", "Pragma": "no-cache"}


@bp.post("/<int:key_id>/label")
@require_role(Role.owner)
def relabel(key_id: int):
    merchant = _merchant()
    if merchant is None:
        abort(404)
    form = LabelForm()
    with transaction(db.session) as session:
        key = keys.get_key_for_merchant(session, key_id, merchant.id)
        if form.validate_on_submit():
            keys.relabel(session, key, form.label.data)
            flash(_("已改名为「%(label)s」。", label=key.label or _("未命名")))
            return redirect(url_for(".index"))
    errors = form.label.errors or [_("请重新提交。")]
    stores = _stores()
    return _render(merchant, stores, _key_form(stores, blank=True), 400, label_error=str(errors[0]))


@bp.post("/<int:key_id>/revoke")
@require_role(Role.owner)
def revoke(key_id: int):
    merchant = _merchant()
    if merchant is None:
        abort(404)
    with transaction(db.session) as session:
        key = keys.get_key_for_merchant(session, key_id, merchant.id)
        if not CsrfForm().validate_on_submit():
            abort(400)
        keys.revoke(session, key)
        label = key.label or _("未命名")
    flash(_("密钥「%(label)s」已停用，使用它的收银系统将无法再调用接口。", label=label))
    return redirect(url_for(".index"))
