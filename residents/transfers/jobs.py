"""RQ entry points of a handover, over ids: send the batches and the groups, poll WeCom's
results, and the periodic sweep. No transaction is held open across a WeCom call; each
step commits before the next call, so a retried job changes nothing twice."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from rq import Retry
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import signals
from core.db import db, utcnow
from core.extensions import QUEUE_DEFAULT, enqueue, get_redis
from core.txn import transaction
from core.wecom import get_wecom
from merchants.models import Member
from residents.models import (
    MemberTransfer,
    TransferItem,
    TransferItemStatus,
    TransferKind,
    TransferStatus,
)
from residents.services import REASON_TRANSFER
from residents.transfers.services import (
    GROUP_BATCH,
    Moved,
    apply_results,
    fresh_transfer,
    give_up_waiting,
    locked_transfer,
    maybe_finish,
    next_batch,
    record_sent,
)
from wecom.client import WeComError, chunked

log = logging.getLogger(__name__)

DEFAULT_POLL_SECONDS = 15 * 60  # WeCom completes after 24 h; no need to ask more often
DEFAULT_GIVE_UP_HOURS = 72  # items WeCom has not settled by then fail (it takes 24 h)
POLLED_KEY = "linli:transfers:polled:{}"  # set for TRANSFER_POLL_SECONDS after each sweep's poll
STALE_SEND = timedelta(minutes=5)  # queued this long: the send job was lost, the sweep sends
SEND_RETRY = [10, 60, 300, 900, 3600]  # RQ's backoff while WeCom is busy (seconds)


def enqueue_send(transfer_id: int):
    """Send the queued batches; RQ retries with backoff while WeCom is busy."""
    return enqueue(QUEUE_DEFAULT, send_transfer, transfer_id, retry=Retry(max=len(SEND_RETRY), interval=SEND_RETRY))


def enqueue_poll(transfer_id: int):
    """Poll now (the page's button), whatever the sweep's pace."""
    return enqueue(QUEUE_DEFAULT, poll_transfer, transfer_id)


def poll_seconds() -> float:
    return float(current_app.config.get("TRANSFER_POLL_SECONDS", DEFAULT_POLL_SECONDS))


def give_up_after() -> timedelta:
    return timedelta(hours=float(current_app.config.get("TRANSFER_GIVE_UP_HOURS", DEFAULT_GIVE_UP_HOURS)))


def send_transfer(transfer_id: int) -> str:
    """RQ job: send every queued batch, then hand over the groups; the periodic sweep polls
    from there. WeCom being busy (-1/45009/45033 after the client's own retries) raises, so
    RQ retries the job; anything else is recorded on the items and the transfer carries on."""
    client = get_wecom()
    sent = 0
    while True:
        with transaction(db.session):
            transfer = fresh_transfer(db.session, transfer_id)
            if transfer is None or transfer.status != TransferStatus.running:
                return "skipped"
            ext_ids = next_batch(db.session, transfer_id)
            if not ext_ids:
                break
            call = _Call.of(db.session, transfer)
        # No transaction is held open across the HTTP call.
        codes = call.send(client, ext_ids)
        with transaction(db.session):
            transfer = locked_transfer(db.session, transfer_id)
            record_sent(db.session, transfer, codes)
        sent += len(ext_ids)
    groups = _hand_over_groups(client, transfer_id)
    with transaction(db.session):
        transfer = locked_transfer(db.session, transfer_id)
        finished = maybe_finish(db.session, transfer)
    return f"sent {sent}, groups {groups}" + (", finished" if finished else "")


@dataclass
class _Call:
    """What a WeCom call needs, read inside a transaction and used outside it."""

    kind: TransferKind
    handover: str
    takeover: str
    success_msg: str = ""

    @classmethod
    def of(cls, session: Session, transfer: MemberTransfer) -> _Call:
        return cls(
            kind=transfer.kind,
            handover=session.get(Member, transfer.from_member_id).userid,
            takeover=session.get(Member, transfer.to_member_id).userid,
            success_msg=transfer.success_msg or "",
        )

    def send(self, client, ext_ids: list[str]) -> dict[str, int | None]:
        """One transfer call for ≤100 customers → errcode per external_userid. A refusal of
        the whole call (e.g. 40097 member has not left) is every item's errcode."""
        try:
            if self.kind == TransferKind.resigned:
                data = client.transfers.resigned_transfer_customer(self.handover, self.takeover, ext_ids)
            else:
                data = client.transfers.transfer_customer(
                    self.handover, self.takeover, ext_ids, transfer_success_msg=self.success_msg or None
                )
        except WeComError as exc:
            if exc.retryable:
                raise
            log.warning("transfer %s → %s refused by WeCom: %s", self.handover, self.takeover, exc)
            return {e: exc.errcode for e in ext_ids}
        codes: dict[str, int | None] = {e: None for e in ext_ids}  # absent from the answer: failed
        for entry in data.get("customer") or []:
            ext = str(entry.get("external_userid") or "")
            if ext in codes:
                codes[ext] = int(entry.get("errcode") or 0)
        return codes

    def results(self, client) -> dict[str, dict]:
        """Every transfer_result record for this pair, the latest per customer."""
        fetch = (
            client.transfers.resigned_transfer_result
            if self.kind == TransferKind.resigned
            else client.transfers.transfer_result
        )
        found: dict[str, dict] = {}
        cursor = None
        while True:
            data = fetch(self.handover, self.takeover, cursor=cursor)
            for entry in data.get("customer") or []:
                if entry.get("external_userid"):
                    found[str(entry["external_userid"])] = entry
            cursor = data.get("next_cursor") or None
            if not cursor:
                return found


def _hand_over_groups(client, transfer_id: int) -> str:
    """The member's customer groups to the colleague, ≤100 chats a call; counts and failures
    are kept on the transfer. Done once (``groups_sent_at``)."""
    with transaction(db.session):
        transfer = fresh_transfer(db.session, transfer_id)
        if transfer.groups_sent_at is not None:
            return "already"
        call = _Call.of(db.session, transfer)
    failures: list[str] = []
    try:
        chats = [c["chat_id"] for c in client.groups.iter_chats(owner_userids=[call.handover]) if c.get("chat_id")]
        with transaction(db.session):
            transfer = locked_transfer(db.session, transfer_id)
            # chats already moved by an earlier (interrupted) run are no longer listed
            transfer.groups_total = transfer.groups_done + len(chats)
        for chunk in chunked(chats, GROUP_BATCH):
            move = client.groups.transfer if call.kind == TransferKind.resigned else client.groups.onjob_transfer
            failed = move(chunk, call.takeover).get("failed_chat_list") or []
            failures += [f"{f.get('chat_id')}: {f.get('errcode')}" for f in failed]
            with transaction(db.session):
                transfer = locked_transfer(db.session, transfer_id)
                transfer.groups_done += len(chunk) - len(failed)
    except WeComError as exc:
        if exc.retryable:
            raise
        failures.append(f"{exc.errcode}: {exc.errmsg[:200]}")
    with transaction(db.session):
        transfer = locked_transfer(db.session, transfer_id)
        transfer.groups_sent_at = utcnow()
        if failures:
            transfer.note = ("groups: " + "; ".join(failures))[:2000]
        return f"{transfer.groups_done}/{transfer.groups_total}"


def poll_transfer(transfer_id: int) -> str:
    """RQ job: ask WeCom how the waiting items are doing (the periodic sweep runs it every
    ``TRANSFER_POLL_SECONDS``; the page's button at once). Queued items are the send job's.
    Items WeCom still has not settled ``TRANSFER_GIVE_UP_HOURS`` after the start (it takes
    24 h) fail, so a transfer always ends."""
    with transaction(db.session):
        transfer = fresh_transfer(db.session, transfer_id)
        if transfer is None or transfer.status != TransferStatus.running:
            return "skipped"
        call = _Call.of(db.session, transfer)
        waiting = db.session.scalar(
            select(func.count()).where(
                TransferItem.transfer_id == transfer_id, TransferItem.status == TransferItemStatus.waiting
            )
        )
    results = call.results(get_wecom()) if waiting else {}
    with transaction(db.session):
        transfer = locked_transfer(db.session, transfer_id)
        moved = apply_results(db.session, transfer, results)
        if utcnow() - transfer.created_at > give_up_after():
            give_up_waiting(db.session, transfer)
        finished = maybe_finish(db.session, transfer)
    _announce(moved)
    return f"{len(moved)} moved" + (", finished" if finished else "")


def poll_running_transfers() -> str:
    """Periodic job (``marketplace.schedule``, every two minutes): see ``poll_running``."""
    return f"{len(poll_running(db.session))} running transfer(s) checked"


def poll_running(session: Session, *, force: bool = False) -> list[int]:
    """The sweep: a running transfer whose batches sat queued for ``STALE_SEND`` (its send
    job was lost) is sent; the others are polled, each at most once per
    ``TRANSFER_POLL_SECONDS`` (a Redis mark) so WeCom is not asked every two minutes for a
    result that takes 24 h. ``force`` (``linli transfers poll``): send or poll every one now.
    Runs in this process; one transfer's failure does not stop the others."""
    stale_before = utcnow() - STALE_SEND
    rows = session.execute(
        select(MemberTransfer.id, MemberTransfer.created_at, MemberTransfer.groups_sent_at)
        .where(MemberTransfer.status == TransferStatus.running)
        .order_by(MemberTransfer.id)
    ).all()
    queued = dict(
        session.execute(
            select(TransferItem.transfer_id, func.min(TransferItem.updated_at))
            .where(TransferItem.transfer_id.in_([r.id for r in rows]), TransferItem.status == TransferItemStatus.queued)
            .group_by(TransferItem.transfer_id)
        ).all()
    ) if rows else {}
    checked = []
    for transfer_id, created_at, groups_sent_at in rows:
        oldest = queued.get(transfer_id)
        unsent = oldest is not None or groups_sent_at is None
        try:
            if unsent:
                if force or (oldest or created_at) < stale_before:
                    send_transfer(transfer_id)
                    checked.append(transfer_id)
            elif force or get_redis().set(POLLED_KEY.format(transfer_id), 1, nx=True, ex=max(1, int(poll_seconds()))):
                poll_transfer(transfer_id)
                checked.append(transfer_id)
        except Exception:  # WeCom busy for one transfer: the next sweep tries again
            log.exception("transfer %s: sweep failed", transfer_id)
    return checked


def _announce(moved: list[Moved]) -> None:
    """Tell the rest of the package (tags, campaigns) after commit; a receiver's failure must
    not undo a move WeCom has already made."""
    app = current_app._get_current_object()
    for m in moved:
        for store_id in m.store_ids or [None]:
            try:
                signals.contact_closed.send(app, resident_id=m.resident_id, member_id=m.from_member_id, reason=REASON_TRANSFER)
                signals.contact_added.send(
                    app, resident_id=m.resident_id, member_id=m.to_member_id, store_id=store_id, first_time=False
                )
            except Exception:
                log.exception("a receiver failed after moving resident %s", m.resident_id)
