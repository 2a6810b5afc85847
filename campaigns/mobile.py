"""The campaign claim page a card of a campaign's message opens: ``/m/o/<campaign>?k=<token>``.

The diner is identified as on every page under ``/m/`` (``residents.identity``: a personal
sign-in link, else WeChat web OAuth). A contact sees the campaign's message, why they got it,
and a card per coupon with its 领取 button; a visitor who is not our contact (WeChat does not
know them to us, or they removed the staff: a forwarded link) sees the contact-me code of the
campaign's store, and once they have added the staff, opening the link again lets them claim.
``k`` (the send chunk) rides along to the claim for attribution only."""
from __future__ import annotations

import hashlib

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from wtforms import HiddenField

from campaigns.services import claims as svc
from campaigns.services import explain
from core.db import db, utcnow
from core.extensions import get_redis
from core.txn import transaction
from coupons.services import IssueError
from merchants import posters
from residents import identity
from residents import views as resident_views

bp = Blueprint("campaign_claims", __name__, url_prefix="/m/o")

QR_CACHE = "linli:contact-qr:"  # the contact-me image, by its WeCom URL
QR_CACHE_SECONDS = 3600


class ClaimForm(FlaskForm):
    """The CSRF token and the card link's chunk token, posted by each 领取 button."""

    k = HiddenField()


bp.before_request(identity.consume_link_token)  # a personal sign-in link works here too


@bp.context_processor
def _diner() -> dict:
    return {"diner": g.get("resident")}


def _page(offers: svc.Offers, resident, token: str, status: int = 200):
    now = utcnow()
    contact = svc.is_contact(resident)
    channel = None if contact else svc.contact_code(db.session, offers)
    return render_template(
        "campaigns/claim.html", campaign=offers.campaign, cards=svc.cards(db.session, offers, resident, now),
        contact=contact, channel=channel, token=token,
    ), status


@bp.get("/<int:campaign_id>")
@resident_views.greets_strangers
def offers(campaign_id: int):
    found = svc.campaign_offers(db.session, campaign_id, utcnow())
    token = svc.clean_token(request.args.get("k"))
    resident = identity.active_resident(db.session, identity.current_resident_id())
    if resident is None:
        identity.forget()
        if not resident_views.stranger_returned() and identity.oauth_client() is not None:
            return identity.ask_wechat(identity.clean_url())
    else:
        g.resident = resident
    return _page(found, resident, token)


@bp.get("/why")
def why():
    """"Why did I (not) get this?": the diner's recent campaign decisions in words, and how
    many more pushes they may get this month."""
    resident = identity.active_resident(db.session, identity.current_resident_id())
    if resident is None:
        identity.forget()
        if identity.oauth_client() is not None:
            return identity.ask_wechat(identity.clean_url())
        return identity.unknown_diner()
    g.resident = resident
    now = utcnow()
    return render_template("campaigns/why.html", items=explain.for_resident(db.session, resident.id, now),
                           left=explain.slots_left(db.session, resident, now), opted_out=resident.opted_out)


@bp.post("/<int:campaign_id>/claim/<int:template_id>")
def claim(campaign_id: int, template_id: int):
    form = ClaimForm()
    if not form.validate_on_submit():
        abort(400)
    token = svc.clean_token(form.k.data)
    resident = identity.active_resident(db.session, identity.current_resident_id())
    if resident is not None:
        g.resident = resident
    try:
        with transaction(db.session) as session:
            code = svc.claim(session, campaign_id, template_id, resident, token, utcnow()).short_code
    except svc.NotContact:
        return _page(svc.campaign_offers(db.session, campaign_id, utcnow()), resident, token, 403)
    except IssueError as exc:
        flash(str(exc.message), "error")
        return _page(svc.campaign_offers(db.session, campaign_id, utcnow()), resident, token, 409)
    flash(_("领取成功，到店出示券码即可使用"), "ok")
    return redirect(url_for("residents.coupon", short_code=code))


@bp.get("/<int:campaign_id>/qr.png")
def contact_qr(campaign_id: int):
    """The campaign store's contact-me code from our own origin (the diner pages' content
    security policy loads images only from us), cached for an hour."""
    channel = svc.contact_code(db.session, svc.campaign_offers(db.session, campaign_id, utcnow()))
    if channel is None:
        abort(404)
    redis = get_redis()
    key = QR_CACHE + hashlib.sha256(channel.qr_code.encode()).hexdigest()[:32]
    png = redis.get(key)
    if png is None:
        try:
            image = posters.fetch_qr(channel.qr_code, timeout=current_app.config.get("WECOM_HTTP_TIMEOUT", 5.0))
        except posters.PosterError:
            abort(502)
        png = posters.to_png(image)
        redis.set(key, png, ex=QR_CACHE_SECONDS)
    return current_app.response_class(png, mimetype="image/png", headers={"Cache-Control": "public, max-age=3600"})
