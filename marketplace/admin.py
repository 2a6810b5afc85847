"""Platform admin pages: the region tree (city → district → business circle) and regional
managers. Admin only."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from accounts import require_role
from accounts.models import Role, User
from accounts.services import AccountError
from core.db import db
from core.txn import transaction
from merchants import services
from merchants.forms import ManagerForm, RegionForm, options
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
