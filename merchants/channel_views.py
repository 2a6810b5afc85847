"""Portal pages for a store's channel codes and posters (owners only). The welcome settings
live in ``coupons.views.welcome``.

Thin: parse the form, call ``merchants.services``, render. WeCom failures become flash
messages with the client's plain-words hint, never a 500.
"""
from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from accounts import require_role
from accounts.models import Role
from core.db import db
from core.txn import transaction
from core.wecom import get_wecom
from merchants import posters
from merchants.models import CHANNEL_KINDS, CUISINES, ReviewStatus, Store
from merchants.services import ChannelError, channels, get_channel, get_store_for, wecom_error_message
from wecom.client import WeComError

log = logging.getLogger(__name__)

bp = Blueprint("channels", __name__, url_prefix="/portal/stores/<int:store_id>")


class ChannelForm(FlaskForm):
    name = StringField(_l("渠道名称"), validators=[DataRequired(), Length(max=30)])
    kind = SelectField(_l("渠道类型"), choices=[SelectChoice(k, v) for k, v in CHANNEL_KINDS.items()], default="door")
    auto_accept_hours_only = BooleanField(_l("仅营业时间内自动通过好友申请"))
    submit = SubmitField(_l("生成渠道码"))


class ConfirmForm(FlaskForm):
    """CSRF-only form for one-button posts."""


def _store(store_id: int) -> Store:
    """The signed-in owner's store, or NotFound (never another merchant's data)."""
    return get_store_for(db.session, current_user, store_id)


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
                get_wecom(),
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
    channel = get_channel(db.session, store.id, channel_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        with transaction(db.session()):
            channels.deactivate_channel(db.session, get_wecom(), channel)
    except WeComError as exc:
        flash(wecom_error_message(exc), "error")
    else:
        flash(_("渠道码已停用，已印出的海报将不能再添加好友。"))
    return redirect(url_for(".index", store_id=store_id))


@bp.get("/channels/<int:channel_id>/poster.<fmt>")
@require_role(Role.owner)
def poster(store_id: int, channel_id: int, fmt: str):
    store = _store(store_id)
    channel = get_channel(db.session, store.id, channel_id)
    if fmt not in ("png", "pdf") or not channel.qr_code:
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


@bp.get("/channels/<int:channel_id>/qr.png")
@require_role(Role.owner)
def qr(store_id: int, channel_id: int):
    """The channel's WeCom QR for the portal's previews, from our own origin (the pages'
    content security policy loads images only from us)."""
    store = _store(store_id)
    channel = get_channel(db.session, store.id, channel_id)
    if not channel.qr_code:
        abort(404)
    try:
        image = posters.fetch_qr(channel.qr_code, timeout=current_app.config.get("WECOM_HTTP_TIMEOUT", 5.0))
    except posters.PosterError:
        abort(502)
    return Response(posters.to_png(image), mimetype="image/png", headers={"Cache-Control": "private, max-age=3600"})


def _poster_content(store: Store) -> posters.PosterContent:
    if store.welcome_template is not None:
        offer = _("添加店长企业微信，立领「%(name)s」", name=store.welcome_template.name)
    else:
        offer = _("添加店长企业微信，新品和优惠第一时间知道")
    return posters.PosterContent(
        store_name=store.name,
        cuisines=[CUISINES.get(c, c) for c in (store.cuisines or [])],
        offer_text=offer,
        headline=_("扫码加店长微信"),
        footer=_("微信扫一扫 · 添加门店企业微信 · 邻里"),
    )
