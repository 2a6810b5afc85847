"""WeCom contact events → residents and relationships.

These run inside the ``high``-queue job that processes a stored callback
(``core.inbox.process_event``): the welcome code in an add event dies in 20 s.
Order in the add handler: fetch the diner from WeCom, do every database step in one
transaction and commit (the coupon exists from here on), send the welcome, then emit the
signals. Each step is idempotent, so WeCom's retries and replayed jobs change nothing.
"""
from __future__ import annotations

import logging

from marketplace import welcome
from core.db import db
from core import signals
from residents import services
from core.txn import transaction
from wecom.client import WeComError
from wecom.events import registry

log = logging.getLogger(__name__)

EVENT = "change_external_contact"


def fetch_profile(external_userid: str) -> services.ContactProfile | None:
    """The diner's name, avatar and unionid from ``externalcontact/get``; None when WeCom will
    not say (already deleted again: 84061, a hiccup): the add is recorded all the same."""
    from core.wecom import get_wecom

    try:
        return services.ContactProfile.from_wecom(get_wecom().customers.get(external_userid))
    except WeComError as exc:
        log.warning("externalcontact/get %s failed: %s", external_userid, exc)
        return None


@registry.on(EVENT, "add_external_contact")
def on_add_external_contact(payload: dict) -> None:
    external_userid, userid = payload.get("ExternalUserID"), payload.get("UserID")
    if not external_userid or not userid:
        log.warning("add_external_contact without ExternalUserID/UserID ignored")
        return
    profile = fetch_profile(external_userid)
    code = payload.get("WelcomeCode")
    with transaction(db.session) as session:
        result = services.contact_added(
            session,
            external_userid=external_userid,
            member_userid=userid,
            state=payload.get("State"),
            profile=profile,
            at=services.event_time(payload),
        )
        # built before commit: the card needs the store, the coupon and its template
        text, attachments = welcome.compose(result.store, result.coupon, result.resident_id) if code else ("", [])
    try:
        if code:  # absent: a console welcome is configured, or the pair chatted before
            outcome = welcome.send_welcome(code, text, attachments)
            log.info("welcome for resident %s: %s", result.resident_id, outcome)
    finally:
        if result.opened:
            signals.contact_added.send(
                None,
                resident_id=result.resident_id,
                member_id=result.member_id,
                store_id=result.store_id,
                first_time=result.first_time,
            )
            if result.cuisines:
                signals.taste_changed.send(None, resident_id=result.resident_id)


@registry.on(EVENT, "del_external_contact")
@registry.on(EVENT, "del_follow_user")
def on_contact_deleted(payload: dict) -> None:
    external_userid, userid = payload.get("ExternalUserID"), payload.get("UserID")
    if not external_userid or not userid:
        return
    if payload.get("ChangeType") == "del_follow_user":
        reason = services.REASON_DINER_DELETED
    elif payload.get("Source") == "DELETE_BY_TRANSFER":
        reason = services.REASON_TRANSFER
    else:
        reason = services.REASON_MEMBER_DELETED
    with transaction(db.session) as session:
        closed = services.close_relationships(
            session,
            external_userid=external_userid,
            member_userid=userid,
            reason=reason,
            at=services.event_time(payload),
        )
    if closed is not None:
        signals.contact_closed.send(
            None, resident_id=closed.resident_id, member_id=closed.member_id, reason=closed.reason
        )
