"""Campaign pages for owners (their merchant's campaigns) and regional managers (their
regions'): the list, the draft form, and the detail page with the audience preview and the
state buttons.

Thin views: parse a form, call ``campaigns.services``, render. The one tenant lookup is
``get_campaign_for`` (another tenant's campaign is ``NotFound``, 404); the services' rule
errors go back on the form (400) or into a flash, never a 500."""
from __future__ import annotations

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from accounts import require_role
from accounts.models import Role, User
from campaigns import services as svc
from campaigns.forms import CHANNEL_LABELS, MATCH_LABELS, CampaignForm, error_text
from campaigns.models import Campaign, CampaignState
from campaigns.services import dispatch, summary
from campaigns.services.audience import REASONS
from core.db import db, utcnow
from core.errors import Conflict, Invalid, NotFound
from core.localtime import hhmm, local_time
from core.txn import transaction
from coupons.models import CouponTemplate, FundedBy, TemplateStatus
from merchants.forms import CsrfForm
from merchants.models import CUISINES, Region, ReviewStatus, Store
from merchants.services import stores_visible_to
from merchants.services.regions import circle_ids_within

bp = Blueprint("campaigns", __name__, url_prefix="/campaigns")

ROLES = (Role.owner, Role.manager)
S = CampaignState
STATE_LABELS = {
    S.draft: _l("草稿"), S.scheduled: _l("待发送"), S.planning: _l("准备发送"), S.sending: _l("发送中"),
    S.tracking: _l("效果跟踪"), S.done: _l("已结束"), S.paused: _l("已暂停"), S.cancelled: _l("已取消"),
}
REASON_LABELS = {
    "erased": _l("已注销"), "opted_out": _l("已关闭推送"), "unreachable": _l("已失联"), "capped": _l("已达上限"),
}
# POST /campaigns/<id>/<action>: the service, the flash on success, and the states that show the button.
ACTIONS = {
    "launch": (svc.launch, _l("活动已排期"), {S.draft}),
    "pause": (svc.pause, _l("活动已暂停"), {S.scheduled, S.planning, S.sending}),
    "resume": (svc.resume, _l("活动已继续"), {S.paused}),
    "cancel": (svc.cancel, _l("活动已取消"), {S.draft, S.scheduled, S.planning, S.sending, S.tracking, S.paused}),
}
ACTION_LABELS = {"launch": _l("启动"), "pause": _l("暂停"), "resume": _l("继续"), "cancel": _l("取消")}
STAGE_LABELS = {
    "planned": _l("已安排"), "tasks": _l("已建任务"), "confirmed": _l("员工已确认"), "delivered": _l("已送达"),
    "claimed": _l("已领取"), "redeemed": _l("已核销"),
}
LIVE = {S.planning, S.sending, S.tracking}  # the progress bar refreshes itself in these states


@bp.app_context_processor
def _campaign_helpers() -> dict:
    return {"campaign_state": lambda state: STATE_LABELS.get(state, state), "hhmm": hhmm}


# ------------------------------------------------------------------ choices


def _region_ids() -> list[int]:
    return sorted(r.id for r in current_user.regions)


def _my_circles() -> list[Region]:
    ids = circle_ids_within(db.session, _region_ids()) if _region_ids() else set()
    return list(db.session.scalars(select(Region).where(Region.id.in_(ids or {-1})).order_by(Region.name)))


def _my_templates() -> list[CouponTemplate]:
    """What the form offers: an owner's active templates; for a manager the active
    platform-funded templates of merchants with a store in their circles."""
    stmt = select(CouponTemplate).where(CouponTemplate.status == TemplateStatus.active)
    if current_user.role == Role.owner:
        stmt = stmt.where(CouponTemplate.merchant_id == current_user.merchant_id)
    else:
        circles = circle_ids_within(db.session, _region_ids()) if _region_ids() else set()
        merchants = select(Store.merchant_id).where(Store.circle_id.in_(circles or {-1}))
        stmt = stmt.where(CouponTemplate.funded_by == FundedBy.platform, CouponTemplate.merchant_id.in_(merchants))
    return list(db.session.scalars(stmt.order_by(CouponTemplate.id)))


def _form(*, new: bool) -> CampaignForm:
    if current_user.role == Role.owner:
        if current_user.merchant_id is None:
            raise NotFound()  # an owner who has not enrolled has no campaigns yet
        stores = db.session.scalars(
            stores_visible_to(db.session, current_user).where(Store.status == ReviewStatus.approved).order_by(Store.id)
        )
        return CampaignForm(templates=_my_templates(), stores=list(stores))
    regions = sorted(current_user.regions, key=lambda r: r.id) if new else None
    return CampaignForm(templates=_my_templates(), circles=_my_circles(), regions=regions)


def _template_names(campaign: Campaign) -> list[str]:
    ids = [t.template_id for t in campaign.templates]
    names = dict(db.session.execute(select(CouponTemplate.id, CouponTemplate.name).where(CouponTemplate.id.in_(ids))).all())
    return [names.get(i, f"#{i}") for i in ids]


# ------------------------------------------------------------------ pages


@bp.get("/")
@require_role(*ROLES)
def index():
    quota = summary.quota_summary(db.session, current_user, utcnow())
    campaigns = db.session.scalars(
        svc.campaigns_visible_to(db.session, current_user)
        .options(selectinload(Campaign.templates))
        .order_by(Campaign.id.desc())
    ).all()
    return render_template("campaigns/list.html", campaigns=campaigns, quota=quota)


def _save(form: CampaignForm, campaign_id: int | None):
    """Validate and save; returns the campaign, or None with the errors on the form."""
    if not form.validate_on_submit():
        return None
    try:
        with transaction(db.session):
            if campaign_id is None:
                return svc.create_campaign(db.session, current_user, form.data_input(),
                                           region_id=form.chosen_region_id())
            return svc.update_campaign(db.session, current_user, campaign_id, form.data_input())
    except (Invalid, NotFound, Conflict) as exc:
        form.show_error(exc)
        return None


@bp.route("/new", methods=["GET", "POST"])
@require_role(*ROLES)
def new():
    form = _form(new=True)
    saved = _save(form, None)
    if saved is not None:
        flash(_("已创建活动“%(n)s”（草稿）", n=saved.name))
        return redirect(url_for("campaigns.detail", campaign_id=saved.id))
    return render_template("campaigns/form.html", form=form, campaign=None), (
        400 if request.method == "POST" else 200)


@bp.route("/<int:campaign_id>/edit", methods=["GET", "POST"])
@require_role(*ROLES)
def edit(campaign_id: int):
    campaign = svc.get_campaign_for(db.session, current_user, campaign_id)
    if campaign.state != S.draft:
        flash(_("只有草稿可以修改"), "error")
        return redirect(url_for("campaigns.detail", campaign_id=campaign.id))
    form = _form(new=False)
    if request.method == "GET":
        form.fill(campaign)
    saved = _save(form, campaign.id)
    if saved is not None:
        flash(_("已保存"))
        return redirect(url_for("campaigns.detail", campaign_id=saved.id))
    if request.method == "POST":
        db.session.rollback()  # forget the failed edit; the form keeps what was typed
        campaign = svc.get_campaign_for(db.session, current_user, campaign_id)
    return render_template("campaigns/form.html", form=form, campaign=campaign), (
        400 if request.method == "POST" else 200)


@bp.get("/<int:campaign_id>")
@require_role(*ROLES)
def detail(campaign_id: int):
    campaign = svc.get_campaign_for(db.session, current_user, campaign_id)
    preview = svc.preview(db.session, campaign)
    user_ids = {t.user_id for t in campaign.transitions if t.user_id is not None}
    users = dict(db.session.execute(select(User.id, User.username).where(User.id.in_(user_ids or {-1}))).all())
    rule = svc.AudienceRule.from_dict(campaign.audience)
    place_ids = rule.store_ids or rule.circle_ids
    place_model = Store if rule.store_ids else Region
    places = db.session.scalars(select(place_model.name).where(place_model.id.in_(place_ids or [-1]))).all()
    actions = [(name, ACTION_LABELS[name]) for name, (_fn, _msg, states) in ACTIONS.items() if campaign.state in states]
    progress = dispatch.progress(db.session, campaign)
    return render_template(
        "campaigns/detail.html", campaign=campaign, preview=preview, progress=progress,
        stages=[(code, STAGE_LABELS[code], n) for code, n in progress.stages()], live=campaign.state in LIVE, reasons=[(r, REASON_LABELS[r]) for r in REASONS],
        users=users, rule=rule, places=places, templates=_template_names(campaign), actions=actions,
        channel_label=CHANNEL_LABELS.get(campaign.channels), match_label=MATCH_LABELS.get(rule.match),
        cuisines=[CUISINES.get(c, c) for c in rule.cuisines], local_time=local_time, csrf_form=CsrfForm(),
    )


@bp.get("/<int:campaign_id>/progress.json")
@require_role(*ROLES)
def progress_json(campaign_id: int):
    """What the detail page's progress bar polls while the campaign runs."""
    campaign = svc.get_campaign_for(db.session, current_user, campaign_id)
    p = dispatch.progress(db.session, campaign)
    return jsonify({"state": campaign.state.value, "state_label": str(STATE_LABELS[campaign.state]),
                    "live": campaign.state in LIVE, "stages": dict(p.stages()), "tasks_min": p.tasks_min,
                    "calls": p.calls, "outbid": p.outbid, "capped": p.capped, "excluded": p.excluded,
                    "not_delivered": p.not_delivered})


@bp.post("/<int:campaign_id>/<action>")
@require_role(*ROLES)
def act(campaign_id: int, action: str):
    if action not in ACTIONS:
        abort(404)
    if not CsrfForm().validate_on_submit():
        abort(400)
    run, done, _states = ACTIONS[action]
    try:
        with transaction(db.session):
            run(db.session, current_user, campaign_id)
    except (Conflict, Invalid) as exc:  # NotFound (another tenant's) stays a 404
        flash(error_text(exc), "error")
    else:
        flash(done)
    return redirect(url_for("campaigns.detail", campaign_id=campaign_id))
