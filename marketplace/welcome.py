"""A new contact, end to end: WeCom's ``add_external_contact`` spans the domains (the
resident and relationship, the store's welcome coupon, the welcome message in WeCom private
chat), so the roof handles it.

The handler runs inside the ``high``-queue job that processes a stored callback
(``core.inbox.jobs.process_event``): WeCom's welcome code lives 20 seconds and works once.
Order: fetch the diner from WeCom, write what the welcome needs in one transaction and commit
(the resident, the relationship, the coupon, which exists from here on), send the welcome,
then emit ``contact_added``, whose receivers queue the rest on ``default`` (the scan's taste
signals, the channel's count, the tags): the high queue carries only welcomes. Each step is idempotent, so WeCom's retries
and replayed jobs change nothing. A missed window is logged and counted, never an error: the
coupon is already in the diner's coupon list.

The welcome text never depends on the coupon: a coupon that cannot be issued (sold out, a
template whose terms no coupon can have) or whose card cannot be built leaves the welcome
without its card, and the miss is counted (``coupon_missed_count``). Should the database
step itself fail, the welcome text still goes out before the event is marked failed (listed
on /admin/events, replayed by ``linli events retry``).
"""
from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

from flask import current_app
from flask_babel import gettext as _

from core import signals
from core.db import db, utcnow
from core.extensions import get_redis
from core.localtime import local_time
from core.txn import transaction
from core.wecom import get_wecom
from coupons.services import headline
from residents import services as residents
from residents.tokens import coupon_url
from wecom.client import WeComError
from wecom.events import registry

log = logging.getLogger(__name__)

DEFAULT_WELCOME = "欢迎来到邻里！关注本店，享受街坊专属优惠。"
# missing, expired/invalid, already used, already being sent
MISSED_CODES = {41049, 41050, 41051, 41096}
MISS_COUNTER = "linli:welcome:missed"
COUPON_MISS_COUNTER = "linli:welcome:coupon_missed"  # welcomes that went out without the store's coupon
SENT_PREFIX = "linli:welcome:code:"  # one send per welcome code, whatever retries happen
SENT_TTL = 3600
TITLE_MAX_BYTES = 128  # WeCom's limits on a link attachment
DESC_MAX_BYTES = 512

STALE_COUNTER = "linli:welcome:stale"  # of the missed: skipped because the code was too old

SENT, MISSED, DUPLICATE, STALE = "sent", "missed", "duplicate", "stale"


def clip_bytes(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` UTF-8 bytes without splitting a character."""
    raw = text.encode("utf-8")
    return text if len(raw) <= limit else raw[:limit].decode("utf-8", errors="ignore")


def welcome_text(store=None) -> str:
    """The store's own welcome, else the configured default (``WELCOME_TEXT``), else ours."""
    own = (getattr(store, "welcome_text", "") or "").strip()
    return own or current_app.config.get("WELCOME_TEXT") or DEFAULT_WELCOME


def coupon_card(store, coupon, resident_id: int) -> dict:
    """A ``link`` attachment opening the coupon's mobile page, signed for its holder."""
    template = coupon.template
    last_day = local_time(coupon.valid_until - timedelta(seconds=1), "%Y-%m-%d")
    title = _("%(store)s 送你一张券：%(name)s", store=store.name, name=template.name)
    desc = _("%(headline)s，有效期至 %(day)s。点开查看券码，到店出示即可使用。",
             headline=headline(template), day=last_day)
    return {
        "msgtype": "link",
        "link": {
            "title": clip_bytes(title, TITLE_MAX_BYTES),
            "desc": clip_bytes(desc, DESC_MAX_BYTES),
            "url": coupon_url(coupon.short_code, resident_id),
        },
    }


def compose(store, coupon, resident_id: int) -> tuple[str, list[dict]]:
    """Text and attachments for a new contact (no card without a coupon, nor when the card
    cannot be built: the text goes out whatever the coupon's terms)."""
    attachments = []
    if coupon is not None:
        try:
            attachments = [coupon_card(store, coupon, resident_id)]
        except Exception:  # a bad coupon must not cost the diner the welcome
            log.exception("welcome card for coupon %s could not be built; text only", coupon.id)
    return welcome_text(store), attachments


def _sent_key(welcome_code: str) -> str:
    return SENT_PREFIX + hashlib.sha256(welcome_code.encode()).hexdigest()[:32]


def send_welcome(
    welcome_code: str, text: str, attachments: list[dict] | None = None, *, issued_at: datetime | None = None
) -> str:
    """Send once per code: ``sent``; ``missed`` (counted) when WeCom says the code can no
    longer be used; ``stale`` (counted as missed too) when the code, issued at ``issued_at``
    (the event's CreateTime), is already older than ``WELCOME_CODE_MAX_AGE``: past capacity
    the call would only fail with 41051 and spend the call quota; ``duplicate`` when this
    code was already handled (event retries). Other WeCom errors propagate and release the
    code so a retry may still use it."""
    redis = get_redis()
    max_age = float(current_app.config.get("WELCOME_CODE_MAX_AGE", 18.0))
    if issued_at is not None and (utcnow() - issued_at).total_seconds() > max_age:
        redis.incr(MISS_COUNTER)
        redis.incr(STALE_COUNTER)
        log.warning("welcome code %.1f s old when its job started: not sent", (utcnow() - issued_at).total_seconds())
        return STALE
    key = _sent_key(welcome_code)
    if not redis.set(key, "1", nx=True, ex=SENT_TTL):
        return DUPLICATE
    try:
        get_wecom().messages.send_welcome(welcome_code, text=text, attachments=attachments or None)
    except Exception as exc:
        if isinstance(exc, WeComError) and exc.errcode in MISSED_CODES:
            redis.incr(MISS_COUNTER)
            log.warning("welcome code unusable (%s): %s", exc.errcode, exc.errmsg)
            return MISSED
        redis.delete(key)
        raise
    return SENT


def missed_count() -> int:
    return int(get_redis().get(MISS_COUNTER) or 0)


def stale_count() -> int:
    """Welcomes skipped because their job started too late (part of ``missed_count``)."""
    return int(get_redis().get(STALE_COUNTER) or 0)


def coupon_missed_count() -> int:
    """Welcomes (or, without a welcome code, new contacts) that got no welcome coupon although
    their store has one set."""
    return int(get_redis().get(COUPON_MISS_COUNTER) or 0)


def _count_coupon_miss(resident_id: int | None, store_id: int | None) -> None:
    log.warning("welcome for resident %s at store %s went without its coupon", resident_id, store_id)
    get_redis().incr(COUPON_MISS_COUNTER)


def _welcome_after_failure(code: str, state: str | None) -> None:
    """The database step failed: send the store's welcome text anyway (its code lives 20 s;
    the coupon follows when the event is replayed, in the diner's coupon list)."""
    store_id = wants_coupon = None
    try:
        with transaction(db.session) as session:
            store, _channel = residents.resolve_state(session, state)
            text = welcome_text(store)
            if store is not None:
                store_id, wants_coupon = store.id, store.welcome_template_id is not None
    except Exception:  # the database may be what failed
        log.exception("store for a failed add event could not be read; default welcome")
        text = welcome_text(None)
    try:
        outcome = send_welcome(code, text)
    except Exception:  # the event's own error is the one to report
        log.exception("welcome after a failed add event could not be sent")
        return
    if outcome == SENT and wants_coupon:
        _count_coupon_miss(None, store_id)


@registry.on("change_external_contact", "add_external_contact")
def on_add_external_contact(payload: dict) -> None:
    external_userid, userid = payload.get("ExternalUserID"), payload.get("UserID")
    if not external_userid or not userid:
        log.warning("add_external_contact without ExternalUserID/UserID ignored")
        return
    profile = residents.fetch_profile(get_wecom(), external_userid)
    code = payload.get("WelcomeCode")
    added_at = residents.event_time(payload)
    try:
        with transaction(db.session) as session:
            result = residents.contact_added(
                session,
                external_userid=external_userid,
                member_userid=userid,
                state=payload.get("State"),
                profile=profile,
                at=added_at,
            )
            # built before commit: the card needs the store, the coupon and its template
            text, attachments = compose(result.store, result.coupon, result.resident_id) if code else ("", [])
            store_id = result.store_id
            wants_coupon = result.store is not None and result.store.welcome_template_id is not None
            no_coupon = wants_coupon and (result.coupon is None or (bool(code) and not attachments))
    except Exception:
        if code:
            _welcome_after_failure(code, payload.get("State"))
        raise
    try:
        if code:  # absent: a console welcome is configured, or the pair chatted before
            outcome = send_welcome(code, text, attachments, issued_at=added_at)
            log.info("welcome for resident %s: %s", result.resident_id, outcome)
            if no_coupon and outcome == SENT:
                _count_coupon_miss(result.resident_id, store_id)
        elif no_coupon and result.opened:
            _count_coupon_miss(result.resident_id, store_id)
    finally:
        if result.opened:
            signals.contact_added.send(
                None,
                resident_id=result.resident_id,
                member_id=result.member_id,
                store_id=result.store_id,
                first_time=result.first_time,
                scan={"state": result.state, "at": added_at.isoformat()},
            )
