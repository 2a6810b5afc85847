"""Diner mobile pages under /m/: my coupons, a coupon to show at the till, the taste survey,
"quiet me", a store's page (with the coupons a known diner may claim there), and the WeChat
OAuth callback.

Who the diner is comes from ``identity`` (WeChat OAuth or a single-use sign-in); a welcome
card's coupon link opens that one coupon's page and nothing else. Every coupon lookup is
"by code *and* holder", so another diner's code is a 404.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask import session as web_session
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.exceptions import HTTPException
from wtforms import IntegerField, RadioField, SelectChoice, SelectMultipleField
from wtforms.validators import InputRequired, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from core.bounds import IntRange
from core.db import db
from core.errors import NotFound
from core.localtime import WEEKDAY_LABELS, WEEKDAYS, local
from core.money import yuan
from core.txn import transaction
from coupons import services as coupon_svc
from coupons.models import Coupon, CouponStatus, CouponTemplate
from coupons.views import desk_url, qr_data_uri
from merchants.models import CUISINES, Merchant, ReviewStatus, Store
from residents import claims, identity, preferences, services
from wecom.oauth import WeChatOAuthError

bp = Blueprint("residents", __name__, url_prefix="/m")

SPICE_LABELS = {0: _l("不吃辣"), 1: _l("微辣"), 2: _l("中辣"), 3: _l("特辣")}
POLL_SECONDS = 4


@bp.before_request
def _personal_link():
    return identity.consume_link_token()


@bp.context_processor
def _diner_helpers() -> dict:
    return {
        "cuisine_label": lambda code: _(CUISINES[code]) if code in CUISINES else code,
        "spice_label": lambda level: str(SPICE_LABELS.get(level, "")),
        "diner": g.get("resident"),
    }


# ---------------------------------------------------------------- coupons


class Shelf(str, enum.Enum):
    """The tabs of "my coupons"."""

    valid = "valid"
    used = "used"
    expired = "expired"


SHELF_LABELS = {Shelf.valid: _l("未使用"), Shelf.used: _l("已使用"), Shelf.expired: _l("已过期")}


def shelf_of(coupon: Coupon, now: datetime) -> Shelf:
    """Where a coupon sits for its holder: an issued coupon past its end is expired even
    before a sweep flips its status."""
    if coupon.status == CouponStatus.redeemed:
        return Shelf.used
    if coupon.status == CouponStatus.issued and now < coupon.valid_until:
        return Shelf.valid
    return Shelf.expired


def status_label(coupon: Coupon, now: datetime) -> str:
    if coupon.status == CouponStatus.void:
        return _("已作废")
    return str(SHELF_LABELS[shelf_of(coupon, now)])


@dataclass
class CouponView:
    coupon: Coupon
    merchant: Merchant
    stores: list[Store]
    shelf: Shelf
    label: str


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _views(coupons: list[Coupon], now: datetime) -> list[CouponView]:
    templates = list({c.template_id: c.template for c in coupons}.values())
    merchants = {
        m.id: m
        for m in db.session.scalars(select(Merchant).where(Merchant.id.in_({t.merchant_id for t in templates})))
    } if templates else {}
    stores = coupon_svc.stores_for_templates(db.session, templates)
    return [
        CouponView(c, merchants[c.template.merchant_id], stores[c.template_id], shelf_of(c, now), status_label(c, now))
        for c in coupons
    ]


@bp.get("/")
@identity.require_resident
def my_coupons():
    try:
        shelf = Shelf(request.args.get("tab", Shelf.valid.value))
    except ValueError:
        shelf = Shelf.valid
    now = _now()
    coupons = list(
        db.session.scalars(
            select(Coupon)
            .where(Coupon.resident_id == g.resident.id)
            .options(selectinload(Coupon.template).selectinload(CouponTemplate.stores))
        )
    )
    views = _views(coupons, now)
    counts = {s: sum(1 for v in views if v.shelf == s) for s in Shelf}
    shown = [v for v in views if v.shelf == shelf]
    if shelf == Shelf.valid:
        shown.sort(key=lambda v: v.coupon.valid_until)  # ending soonest first
    elif shelf == Shelf.used:
        shown.sort(key=lambda v: v.coupon.redeemed_at or v.coupon.issued_at, reverse=True)
    else:
        shown.sort(key=lambda v: v.coupon.valid_until, reverse=True)
    return render_template(
        "residents/coupons.html", shelf=shelf, shelves=list(Shelf), shelf_labels=SHELF_LABELS, counts=counts,
        items=shown,
    )


def _coupon_for_viewer(short_code: str) -> Coupon | None:
    """The coupon this browser may see at ``short_code``: the signed-in diner's own, else the
    one a coupon link opened here (``g.resident`` is set only for a signed-in diner). None
    when nobody is known at all; ``NotFound`` for anyone else's or a made-up code."""
    resident = identity.active_resident(db.session, identity.current_resident_id())
    if resident is not None:
        g.resident = resident
        try:
            return services.get_coupon_for(db.session, resident.id, short_code)
        except NotFound:
            pass  # maybe a link someone forwarded to this diner
    holder = identity.link_holder(db.session, short_code)
    if holder is not None:
        try:
            return services.get_coupon_for(db.session, holder.id, short_code)
        except NotFound:
            pass  # a link whose coupon left its holder (erased, voided to someone else)
    if resident is None:
        return None
    raise NotFound()


@bp.get("/c/<short_code>")
def coupon(short_code: str):
    """One coupon with its QR: for its holder, or for whoever opened its link card."""
    c = _coupon_for_viewer(short_code)
    if c is None:
        identity.forget()
        return identity.ask_wechat(identity.clean_url())
    if c.short_code != short_code:  # typed with dashes or lower case: one canonical URL
        return redirect(url_for(".coupon", short_code=c.short_code))
    now = _now()
    (view,) = _views([c], now)
    qr = qr_data_uri(desk_url(c.short_code)) if view.shelf == Shelf.valid else None
    return render_template(
        "residents/coupon.html", item=view, qr=qr, poll=view.shelf == Shelf.valid, poll_seconds=POLL_SECONDS,
        min_spend=yuan(c.template.min_spend_fen) if c.template.min_spend_fen else None,
        redeemed_store=db.session.get(Store, c.redeemed_store_id) if c.redeemed_store_id else None,
    )


@bp.get("/c/<short_code>/status")
def coupon_status(short_code: str):
    """What the coupon page polls (cheap: one indexed row). 401 without a diner or a link
    for this coupon, 404 for anyone else's coupon."""
    c = _coupon_for_viewer(short_code)
    if c is None:
        return jsonify(error="unknown diner"), 401
    now = _now()
    response = jsonify(
        code=c.short_code, status=shelf_of(c, now).value, label=status_label(c, now),
        redeemed_at=c.redeemed_at.isoformat() if c.redeemed_at else None,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# ---------------------------------------------------------------- taste survey


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class SurveyForm(FlaskForm):
    cuisines = MultiCheckboxField(_l("爱吃的菜系（可多选）"))
    spice_level = RadioField(
        _l("能吃多辣"), choices=[SelectChoice(str(k), v) for k, v in SPICE_LABELS.items()], validators=[Optional()]
    )
    budget = IntegerField(
        _l("平时人均消费（元）"), validators=[Optional(), IntRange(0, preferences.MAX_BUDGET_FEN // 100)]
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cuisines.choices = [SelectChoice(code, _(label)) for code, label in CUISINES.items()]


@bp.route("/taste", methods=["GET", "POST"])
@identity.require_resident
def taste():
    resident = g.resident
    form = SurveyForm()
    if request.method == "GET":
        answers = preferences.survey_answers(db.session, resident)
        form.cuisines.data = answers.cuisines
        form.spice_level.data = None if answers.spice_level is None else str(answers.spice_level)
        form.budget.data = None if answers.budget_fen is None else answers.budget_fen // 100
    elif form.validate_on_submit():
        answers = preferences.SurveyAnswers(
            cuisines=list(form.cuisines.data or []),
            spice_level=int(form.spice_level.data) if form.spice_level.data not in (None, "", "None") else None,
            budget_fen=form.budget.data * 100 if form.budget.data is not None else None,
        )
        with transaction(db.session) as session:
            preferences.save_survey(session, resident, answers)  # a changed profile queues taste_changed
        flash(_("已保存，谢谢！我们会按你的口味推荐"), "ok")
        return redirect(url_for(".taste"))
    summary = preferences.taste_summary(db.session, resident)
    status = 400 if request.method == "POST" else 200
    return render_template("residents/taste.html", form=form, summary=summary), status


# ---------------------------------------------------------------- quiet me


class QuietForm(FlaskForm):
    mode = RadioField(
        _l("营销消息"),
        choices=[
            SelectChoice(preferences.QuietMode.all.value, _l("照常接收")),
            SelectChoice(preferences.QuietMode.capped.value, _l("每月最多几条")),
            SelectChoice(preferences.QuietMode.off.value, _l("不再接收优惠推送")),
        ],
        validators=[InputRequired()],
    )
    cap = IntegerField(_l("每月最多（条）"), validators=[Optional(), IntRange(1, preferences.MAX_MONTHLY_CAP)])

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        if ok and self.mode.data == preferences.QuietMode.capped.value and self.cap.data is None:
            self.cap.errors = [*self.cap.errors, _("请填写每月最多接收几条")]
            return False
        return ok


@bp.route("/quiet", methods=["GET", "POST"])
@identity.require_resident
def quiet():
    resident = g.resident
    form = QuietForm()
    if request.method == "GET":
        form.mode.data = preferences.quiet_mode(resident).value
        form.cap.data = resident.monthly_cap
    elif form.validate_on_submit():
        with transaction(db.session):
            preferences.set_quiet(db.session, resident, preferences.QuietMode(form.mode.data), form.cap.data)
        flash(_("已保存"), "ok")
        return redirect(url_for(".quiet"))
    return render_template("residents/quiet.html", form=form), 400 if request.method == "POST" else 200


# ---------------------------------------------------------------- store page


def _hours_rows(opening_hours: dict) -> list[tuple[str, str]]:
    """[(day label, "11:00-14:00 17:00-21:30")], consecutive days with equal hours merged."""
    labels = WEEKDAY_LABELS
    rows: list[tuple[int, int, str]] = []
    for i, key in enumerate(WEEKDAYS):
        ranges = opening_hours.get(key) or []
        text = " ".join(f"{a}-{b}" for a, b in ranges) or _("休息")
        if rows and rows[-1][2] == text and rows[-1][1] == i - 1:
            rows[-1] = (rows[-1][0], i, text)
        else:
            rows.append((i, i, text))
    return [(str(labels[a]) if a == b else _("%(a)s至%(b)s", a=labels[a], b=labels[b]), text) for a, b, text in rows]


class ClaimForm(FlaskForm):
    """Only the CSRF token: the 领取 buttons post to ``/m/s/<store>/claim/<template>``."""


@bp.get("/s/<int:store_id>")
def store(store_id: int):
    """A store's page, for anyone (it is shared and forwarded); a known diner also sees the
    coupons they hold here and may claim the ones the merchant lets diners take."""
    s = db.session.get(Store, store_id)
    if s is None or s.status != ReviewStatus.approved:
        abort(404)
    return _store_page(s)


@bp.post("/s/<int:store_id>/claim/<int:template_id>")
def claim(store_id: int, template_id: int):
    """A known diner claims a coupon on the store page; the coupon's page on success, the
    store page with the reason otherwise (409; 403 for a diner we do not know)."""
    s = claims.approved_store(db.session, store_id)
    if not ClaimForm().validate_on_submit():
        abort(400)
    resident = identity.active_resident(db.session, identity.current_resident_id())
    if resident is None:
        flash(_("请先到店扫码添加店员，之后就能在这里领取优惠券。"), "error")
        return _store_page(s), 403
    try:
        with transaction(db.session) as session:
            coupon = claims.claim_at_store(session, s.id, template_id, resident, _now())
            code = coupon.short_code
    except (claims.ClaimRefused, coupon_svc.IssueError) as exc:
        flash(str(exc.message), "error")
        return _store_page(claims.approved_store(db.session, store_id)), 409
    flash(_("领取成功，到店出示券码即可使用"), "ok")
    return redirect(url_for(".coupon", short_code=code))


def _store_page(s: Store):
    now = _now()
    offers = coupon_svc.templates_for_store(db.session, s, active_on=local(now).date())
    resident = identity.active_resident(db.session, identity.current_resident_id())
    claimable = {t.id for t in offers if claims.claimable_at(t, s, now)}
    taken = claims.held_counts(db.session, resident.id, sorted(claimable)) if resident is not None else {}
    mine: list[CouponView] = []
    if resident is not None:
        held = db.session.scalars(
            select(Coupon)
            .join(CouponTemplate, CouponTemplate.id == Coupon.template_id)
            .where(Coupon.resident_id == resident.id, CouponTemplate.merchant_id == s.merchant_id)
            .options(selectinload(Coupon.template).selectinload(CouponTemplate.stores))
        )
        mine = [
            v for v in _views(list(held), now)
            if v.shelf == Shelf.valid and coupon_svc.applies_at(v.coupon.template, s)
        ]
    return render_template(
        "residents/store.html", store=s, merchant=s.merchant, offers=offers, mine=mine,
        hours=_hours_rows(s.opening_hours or {}) if s.opening_hours else None,
        claimable=claimable, taken=taken, known=resident is not None, claim_form=ClaimForm(),
    )


# ---------------------------------------------------------------- WeChat OAuth

STRANGER_KEY = "oauth_stranger"  # the page WeChat OAuth just sent a diner we do not know back to


def greets_strangers(view):
    """Mark a diner page (GET) that answers a WeChat user we do not know itself, such as a
    campaign's claim page showing its store's contact-me code: the OAuth callback sends such a
    visitor back to it, once, instead of to the "we don't know you yet" page."""
    view.greets_strangers = True
    return view


def stranger_returned() -> bool:
    """True on the page the OAuth callback just sent a visitor we do not know back to (once:
    opening it again asks WeChat again, so a diner who has since added the staff is found)."""
    return web_session.pop(STRANGER_KEY, None) == request.path


def _stranger_page(path: str) -> str | None:
    """The path of ``path`` when its view greets strangers and has not just been sent one
    that it did not take (no redirect loop); else None."""
    target = urlsplit(path).path
    try:
        endpoint, _args = current_app.url_map.bind("").match(target, method="GET")
    except HTTPException:
        return None
    if not getattr(current_app.view_functions.get(endpoint), "greets_strangers", False):
        return None
    return target if web_session.get(STRANGER_KEY) != target else None


def _unknown_diner(path: str):
    """The answer when WeChat cannot tell us who this is: the page itself when it greets
    strangers, else the friendly dead end."""
    target = _stranger_page(path)
    if target is None:
        web_session.pop(STRANGER_KEY, None)
        return identity.unknown_diner()
    web_session[STRANGER_KEY] = target
    return redirect(path)


@bp.get("/oauth/callback")
def oauth_callback():
    """WeChat comes back here with ``code`` and our ``state``."""
    path = identity.read_state(request.args.get("state", ""), web_session.get(identity.NONCE_KEY))
    signed_in = identity.active_resident(db.session, identity.current_resident_id())
    if path is None:
        if signed_in is not None:
            return redirect(identity.HOME)
        return render_template("residents/oauth_failed.html", retry=identity.HOME), 400
    client = identity.oauth_client()
    code = request.args.get("code", "")
    if client is None or not code:
        return _unknown_diner(path)
    try:
        who = client.exchange_code(code)
    except WeChatOAuthError as exc:
        if exc.bad_code and signed_in is not None:
            return redirect(path)  # a reload of this URL after it already worked
        current_app.logger.warning("WeChat OAuth failed: %s", exc)
        return render_template("residents/oauth_failed.html", retry=path), 502 if not exc.bad_code else 400
    resident = identity.resident_by_unionid(db.session, who.unionid)
    if resident is None:
        identity.forget()
        return _unknown_diner(path)
    identity.remember(resident.id)
    return redirect(path)
