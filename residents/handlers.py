"""Every event handler of the residents domain, in one place: the WeCom callbacks (contacts
deleted, staff tag edits, the admin's tag changes, handover refusals) and the receivers of
the signals that move tags (taste, contacts, redemptions).

WeCom handlers run inside the job that processes a stored callback
(``core.inbox.jobs.process_event``); each step is idempotent, so WeCom's retries and replayed
jobs change nothing. Receivers run after the sender's commit and only queue jobs. The add
event spans domains (contact → welcome coupon → welcome message) and is handled by the roof
(``marketplace.welcome``). Customer groups follow ``change_external_chat``.
"""
from __future__ import annotations

import logging

from sqlalchemy import select

from core import signals
from core.db import db
from core.extensions import QUEUE_DEFAULT, enqueue
from core.txn import transaction
from core.wecom import get_wecom
from residents import groups, jobs, services
from residents.models import Resident
from residents.tags import corp, inbound
from residents.transfers import services as transfers
from wecom.client import WeComError
from wecom.events import registry

log = logging.getLogger(__name__)

EVENT = "change_external_contact"
GONE_CODES = (84061, 40096)  # externalcontact/get: no longer anyone's contact


# --------------------------------------------------------------------------- WeCom events


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


@registry.on(EVENT, "edit_external_contact")
def on_edit_external_contact(payload: dict) -> None:
    """A member edited the diner (remark or tags) in the WeCom app: read the tags back.
    Changed staff evidence queues ``taste_changed`` (which plans and syncs, restored rows
    too); restored rows alone only need a sync."""
    external_userid = payload.get("ExternalUserID") or ""
    with transaction(db.session) as session:
        resident = session.scalar(select(Resident).where(Resident.external_userid == external_userid))
        resident_id = resident.id if resident is not None and resident.erased_at is None else None
    if resident_id is None:
        return
    client = get_wecom()
    with corp.redis_lock(f"resident:{resident_id}"):
        try:
            follow_users = inbound.follow_users(client, external_userid)
        except WeComError as exc:
            if exc.errcode in GONE_CODES:
                return
            raise
        with transaction(db.session) as session:
            changes = inbound.apply_staff_tags(session, resident_id, follow_users)
    if changes.added or changes.dropped:
        log.info("staff tags of resident %s: +%s -%s", resident_id, changes.added, changes.dropped)
    if not changes.profile_changed and changes.restored:
        jobs.enqueue_sync(resident_id)


@registry.on("change_external_chat")
def on_change_external_chat(payload: dict) -> None:
    """A customer group was created, changed (members, owner, name) or dismissed: dismissals
    are recorded at once, anything else re-reads the group on ``default``."""
    chat_id = payload.get("ChatId") or ""
    if not chat_id:
        return
    if payload.get("ChangeType") == "dismiss":
        with transaction(db.session) as session:
            groups.dismiss_group(session, chat_id)
        return
    enqueue(QUEUE_DEFAULT, jobs.sync_group, chat_id)


@registry.on("change_external_tag")
def on_change_external_tag(payload: dict) -> None:
    """The admin created, renamed or deleted corp tags in the console."""
    if payload.get("ChangeType") == "shuffle":  # order only
        return
    for resident_id in sorted(corp.reconcile_corp_tags(get_wecom())):
        jobs.enqueue_sync(resident_id)


@registry.on(EVENT, "transfer_fail")
def on_transfer_fail(payload: dict) -> None:
    """The customer refused (``customer_refused``) or the colleague is at the customer limit
    (``customer_limit_exceed``): the waiting item is refused. ``UserID`` is the takeover."""
    ext = payload.get("ExternalUserID") or ""
    takeover = payload.get("UserID") or ""
    with transaction(db.session) as session:
        item = transfers.refuse_item(session, ext, takeover, payload.get("FailReason") or "")
    if item is None:
        log.info("transfer_fail for %s → %s matches no waiting item", ext, takeover)


# --------------------------------------------------------------------------- signals in


@signals.taste_changed.connect
def _on_taste_changed(sender, resident_id: int, **_) -> None:
    enqueue(QUEUE_DEFAULT, jobs.refresh_resident_tags, resident_id)


@signals.contact_added.connect
def _on_contact_added(sender, resident_id: int, member_id: int | None = None, store_id: int | None = None,
                      scan: dict | None = None, **_) -> None:
    """A scan (``scan``: the channel's state and the add's time) also brings evidence: taste
    and the channel's count, recorded by the job that then refreshes the tags. A handover
    only moves the tags."""
    if scan is not None and store_id is not None and member_id is not None:
        enqueue(QUEUE_DEFAULT, jobs.record_add_evidence, resident_id, member_id, store_id, scan.get("state"),
                scan["at"])
    else:
        enqueue(QUEUE_DEFAULT, jobs.refresh_resident_tags, resident_id)


@signals.contact_closed.connect
def _on_contact_closed(sender, resident_id: int, **_) -> None:
    enqueue(QUEUE_DEFAULT, jobs.refresh_resident_tags, resident_id)


@signals.coupon_redeemed.connect
def _on_coupon_redeemed(sender, coupon_id: int, store_id: int, resident_id: int | None = None, **_) -> None:
    if resident_id is not None:
        enqueue(QUEUE_DEFAULT, jobs.record_redeem_signal, coupon_id, store_id)


@signals.redemption_reversed.connect
def _on_redemption_reversed(sender, coupon_id: int, resident_id: int | None = None, **_) -> None:
    if resident_id is not None:
        enqueue(QUEUE_DEFAULT, jobs.drop_redeem_signal, coupon_id)
