"""Platform admin pages: the region tree (city → district → business circle), regional
managers, the WeCom events that failed (with a replay), and which corp members belong to
which merchant (grants). Admin only."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from wtforms import SelectField
from wtforms.validators import DataRequired

from accounts import require_role
from accounts.models import Role, User
from accounts.services import AccountError
from core.db import db
from core.errors import DomainError, NotFound
from core.inbox import jobs as inbox_jobs
from core.inbox import services as inbox
from core.txn import transaction
from marketplace import welcome
from merchants import services
from merchants.forms import CsrfForm, ManagerForm, RegionForm, options
from merchants.models import Member, Merchant
from merchants.services import ServiceError, create_manager
from merchants.views import _show_error

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/regions", methods=["GET", "POST"])
@require_role(Role.admin)
def regions():
    form = RegionForm()
    form.parent_id.choices = options([(0, _("（无，城市）"))] + services.region_choices(db.session))
    if form.validate_on_submit():
        try:
            with transaction(db.session):
                region = services.create_region(
                    db.session, name=form.name.data, level=form.level.data, parent_id=form.parent_id.data or None
                )
        except ServiceError as exc:
            _show_error(form, exc)
        except IntegrityError:
            form.name.errors.append(_("同一上级下已有同名区域。"))
        else:
            flash(_("已添加：%(name)s", name=region.name))
            return redirect(url_for("admin.regions"))
    status = 400 if (form.errors or form.form_errors) else 200
    return render_template("admin/regions.html", form=form, tree=services.region_tree(db.session)), status


@bp.route("/managers", methods=["GET", "POST"])
@require_role(Role.admin)
def managers():
    form = ManagerForm()
    form.regions.choices = options(services.region_choices(db.session))
    if form.validate_on_submit():
        try:
            with transaction(db.session):
                user = create_manager(
                    db.session, username=form.username.data, password=form.password.data,
                    region_ids=form.regions.data or [], display_name=form.display_name.data,
                )
        except AccountError as exc:
            _show_error(form, exc)
        except IntegrityError:
            form.username.errors.append(_("用户名已被占用。"))
        else:
            flash(_("已创建区域经理：%(u)s", u=user.username))
            return redirect(url_for("admin.managers"))
    rows = db.session.scalars(
        select(User).where(User.role == Role.manager).options(services.with_region_path(User.regions))
        .order_by(User.username)
    )
    status = 400 if (form.errors or form.form_errors) else 200
    return render_template(
        "admin/managers.html", form=form, managers=list(rows), path=services.region_path
    ), status


# ---------------------------------------------------------------- the WeCom event log

EVENTS_SHOWN = 200


@bp.get("/events")
@require_role(Role.admin)
def events():
    """Failed (or pending / done, ``?status=``) WeCom events, newest first, with a replay."""
    status = request.args.get("status", "failed")
    if status not in inbox.STATUSES:
        abort(404)
    rows = inbox.list_events(db.session, status=status, limit=EVENTS_SHOWN)
    counts = inbox.status_counts(db.session)
    return render_template(
        "admin/events.html", rows=rows, counts=counts, status=status, form=CsrfForm(), shown=EVENTS_SHOWN,
        welcomes={"missed": welcome.missed_count(), "stale": welcome.stale_count(),
                  "coupon_missed": welcome.coupon_missed_count()},
    )


def _retry(ids: list[int] | None):
    form = CsrfForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        outcome = inbox_jobs.retry_failed(ids)
    except NotFound:
        flash(_("该事件不存在或已不是失败状态。"))
    else:
        flash(_("已重新处理 %(n)d 个事件。", n=len(outcome)))
    return redirect(url_for("admin.events"))


@bp.post("/events/<int:event_id>/retry")
@require_role(Role.admin)
def retry_event(event_id: int):
    return _retry([event_id])


@bp.post("/events/retry")
@require_role(Role.admin)
def retry_events():
    return _retry(None)


# --------------------------------------------------------------------------- member grants


class GrantForm(FlaskForm):
    merchant_id = SelectField(_l("商户"), coerce=int, validators=[DataRequired(message=_l("请选择商户。"))])
    member_id = SelectField(_l("企业微信成员"), coerce=int, validators=[DataRequired(message=_l("请选择成员。"))])


@bp.route("/members", methods=["GET", "POST"])
@require_role(Role.admin)
def members():
    """Grant corp members to merchants: a merchant's staff page offers only its members."""
    form = GrantForm()
    merchants = db.session.scalars(select(Merchant).order_by(Merchant.name, Merchant.id))
    form.merchant_id.choices = options([(0, _("请选择"))] + [(m.id, m.name) for m in merchants])
    corp = db.session.scalars(select(Member).where(Member.active.is_(True)).order_by(Member.name, Member.userid))
    form.member_id.choices = options([(0, _("请选择"))] + [(m.id, f"{m.name or m.userid}（{m.userid}）") for m in corp])
    if form.validate_on_submit():
        try:
            with transaction(db.session):
                grant = services.grant_member(db.session, form.merchant_id.data, form.member_id.data, current_user)
                who, where = grant.member.name or grant.member.userid, grant.merchant.name
        except DomainError as exc:
            _show_error(form, exc)
        except IntegrityError:  # granted by someone else a moment ago
            form.form_errors.append(_("该成员已授权给这个商户。"))
        else:
            flash(_("已将 %(who)s 授权给 %(where)s。", who=who, where=where))
            return redirect(url_for("admin.members"))
    status = 400 if (form.errors or form.form_errors) else 200
    return render_template(
        "admin/members.html", form=form, grants=services.list_grants(db.session), revoke_form=CsrfForm()
    ), status


@bp.post("/members/revoke")
@require_role(Role.admin)
def revoke_member():
    """Take a member back from a merchant (refused, 409, while they serve one of its stores)."""
    if not CsrfForm().validate_on_submit():
        abort(400)
    with transaction(db.session):
        services.revoke_grant(
            db.session, request.form.get("merchant_id", type=int) or 0, request.form.get("member_id", type=int) or 0
        )
    flash(_("已取消授权。"))
    return redirect(url_for("admin.members"))
