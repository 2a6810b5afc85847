"""Portal pages for a store's channel codes, posters and welcome settings (owners only).

Thin: parse the form, call ``merchants.channels``, render. WeCom failures become flash
messages with the client's plain-words hint, never a 500.
"""
from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from accounts import require_role
from accounts.models import Role
from core.db import db
from core.txn import transaction
from merchants import channels, posters
from merchants.channels import CHANNEL_KINDS, ChannelError
from merchants.models import CUISINES, ReviewStatus, Store
from core.signals import store_staff_changed
from merchants.services import get_store_for
from wecom.client import WeComError

log = logging.getLogger(__name__)

bp = Blueprint("channels", __name__, url_prefix="/portal/stores/<int:store_id>")


class ChannelForm(FlaskForm):
    name = StringField(_l("渠道名称"), validators=[DataRequired(), Length(max=30)])
    kind = SelectField(_l("渠道类型"), choices=[SelectChoice(k, v) for k, v in CHANNEL_KINDS.items()], default="door")
    auto_accept_hours_only = BooleanField(_l("仅营业时间内自动通过好友申请"))
    submit = SubmitField(_l("生成渠道码"))


class WelcomeForm(FlaskForm):
    welcome_text = TextAreaField(_l("欢迎语"))
    template_id = SelectField(_l("欢迎券"), coerce=str)
    submit = SubmitField(_l("保存"))


class ConfirmForm(FlaskForm):
    """CSRF-only form for one-button posts."""


def wecom_error_message(exc: WeComError) -> str:
    lang = "en" if str(get_locale()).startswith("en") else "zh"
    hint = exc.hint(lang)
    base = _("企业微信返回错误（%(code)s）", code=exc.errcode)
    return f"{base}：{hint}" if hint else f"{base}：{exc.errmsg}"


def _store(store_id: int) -> Store:
    """The signed-in owner's store, or 404 (never another merchant's data)."""
    return get_store_for(db.session, current_user, store_id)


def _client():
    from core.wecom import get_wecom

    return get_wecom()


@bp.get("/channels")
@require_role(Role.owner)
def index(store_id: int):
    store = _store(store_id)
    return _render_index(store, ChannelForm())


def _render_index(store: Store, form: ChannelForm, status: int = 200):
    rows = channels.store_channels(db.session, store.id)
    counts = channels.channel_counts(db.session, store.id)
    return (
        render_template(
            "merchants/channels/index.html",
            store=store,
            channels=rows,
            counts=counts,
            form=form,
            confirm=ConfirmForm(),
            approved=store.status == ReviewStatus.approved,
        ),
        status,
    )


@bp.post("/channels")
@require_role(Role.owner)
def create(store_id: int):
    store = _store(store_id)
    form = ChannelForm()
    if not form.validate_on_submit():
        return _render_index(store, form, 400)
    try:
        with transaction(db.session()):
            channel = channels.create_channel(
                db.session,
                _client(),
                store,
                name=form.name.data,
                kind=form.kind.data,
                auto_accept_hours_only=form.auto_accept_hours_only.data,
            )
    except ChannelError as exc:
        flash(str(exc), "error")
        return _render_index(_store(store_id), form, 400)
    except WeComError as exc:
        log.warning("create channel for store %s: %s", store_id, exc)
        flash(wecom_error_message(exc), "error")
        return _render_index(_store(store_id), form, 502)
    flash(_("渠道码「%(name)s」已生成，可以下载海报打印了。", name=channel.name))
    return redirect(url_for(".index", store_id=store_id))


@bp.post("/channels/<int:channel_id>/deactivate")
@require_role(Role.owner)
def deactivate(store_id: int, channel_id: int):
    store = _store(store_id)
    channel = channels.get_channel(db.session, store.id, channel_id)
    if channel is None or not ConfirmForm().validate_on_submit():
        abort(404 if channel is None else 400)
    try:
        with transaction(db.session()):
            channels.deactivate_channel(db.session, _client(), channel)
    except WeComError as exc:
        flash(wecom_error_message(exc), "error")
    else:
        flash(_("渠道码已停用，已印出的海报将不能再添加好友。"))
    return redirect(url_for(".index", store_id=store_id))


@bp.get("/channels/<int:channel_id>/poster.<fmt>")
@require_role(Role.owner)
def poster(store_id: int, channel_id: int, fmt: str):
    store = _store(store_id)
    channel = channels.get_channel(db.session, store.id, channel_id)
    if channel is None or fmt not in ("png", "pdf") or not channel.qr_code:
        abort(404)
    size = request.args.get("size", "a5")
    if size not in posters.SIZES_MM:
        abort(404)
    try:
        qr = posters.fetch_qr(channel.qr_code, timeout=current_app.config.get("WECOM_HTTP_TIMEOUT", 5.0))
        data = posters.poster_bytes(_poster_content(store), qr, size, fmt)
    except posters.PosterError as exc:
        flash(str(exc), "error")
        return redirect(url_for(".index", store_id=store_id))
    filename = f"poster-{store.id}-{channel.id}-{size}.{fmt}"
    return Response(
        data,
        mimetype="image/png" if fmt == "png" else "application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


def _poster_content(store: Store) -> posters.PosterContent:
    offer = ""
    if store.welcome_template_id:
        from coupons.models import CouponTemplate

        template = db.session.get(CouponTemplate, store.welcome_template_id)
        if template is not None:
            offer = _("添加店长企业微信，立领「%(name)s」", name=template.name)
    if not offer:
        offer = _("添加店长企业微信，新品和优惠第一时间知道")
    return posters.PosterContent(
        store_name=store.name,
        cuisines=[CUISINES.get(c, c) for c in (store.cuisines or [])],
        offer_text=offer,
        headline=_("扫码加店长微信"),
        footer=_("微信扫一扫 · 添加门店企业微信 · 邻里"),
    )


@bp.route("/welcome", methods=["GET", "POST"])
@require_role(Role.owner)
def welcome(store_id: int):
    store = _store(store_id)
    form = WelcomeForm()
    templates = channels.merchant_templates(db.session, store.merchant_id)
    form.template_id.choices = [SelectChoice("", _("（不送券）"))] + [SelectChoice(str(t.id), t.name) for t in templates]
    status = 200
    if request.method == "GET":
        form.welcome_text.data = store.welcome_text
        form.template_id.data = str(store.welcome_template_id or "")
    elif form.validate_on_submit():
        try:
            with transaction(db.session()):
                channels.update_welcome(
                    db.session,
                    store,
                    text=form.welcome_text.data or "",
                    template_id=int(form.template_id.data) if form.template_id.data else None,
                )
        except ChannelError as exc:
            form.welcome_text.errors = [*form.welcome_text.errors, str(exc)]
            status = 400
        else:
            flash(_("欢迎设置已保存。"))
            return redirect(url_for(".welcome", store_id=store_id))
    else:
        status = 400
    return render_template("merchants/channels/welcome.html", store=store, form=form), status


@store_staff_changed.connect
def _on_staff_changed(sender, store_id: int, **_kw) -> None:
    """Staff changed (already committed): point the store's codes at the new members under
    the same config_id, so printed posters keep working. A WeCom failure is shown to the
    owner and retried in the background."""
    try:
        with transaction(db.session()):
            changed = channels.staff_changed(db.session, _client(), store_id)
    except (ChannelError, WeComError) as exc:
        message = str(exc) if isinstance(exc, ChannelError) else wecom_error_message(exc)
        flash(_("渠道码暂未更新：%(why)s 系统会稍后自动重试。", why=message), "error")
        from rq import Retry

        from core.extensions import QUEUE_DEFAULT, enqueue
        from merchants import jobs

        enqueue(QUEUE_DEFAULT, jobs.rebalance_store_channels, store_id, retry=Retry(max=5, interval=[30, 60, 300, 900, 3600]))
        return
    if changed:
        flash(_("已更新 %(n)s 个渠道码的接待成员，已印出的海报继续有效。", n=changed))
