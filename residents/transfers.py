"""Staff leaving (离职继承) and moving (在职继承): a member's customers and customer groups go
to a colleague through WeCom, and our relationships follow them.

The flow, each step idempotent so a retried job or a repeated callback changes nothing twice:

1. ``start_transfer`` (portal, one transaction): a ``MemberTransfer`` with one ``TransferItem``
   per customer — the member's open relationships at the merchant's stores plus anyone WeCom
   still lists for them — numbered into batches of 100; the member is marked ``leaving``.
2. ``send_transfer`` job: one ``(resigned/)transfer_customer`` call per batch, each item's
   errcode recorded (0 → waiting; refusals and errors kept), then the member's customer
   groups go to the colleague (``groupchat/transfer`` / ``onjob_transfer``).
3. ``poll_transfer`` job: reads ``(resigned/)transfer_result``; the periodic sweep
   (``poll_running_transfers``, ``linli cron``) runs it every ``TRANSFER_POLL_SECONDS`` until
   every item is done, refused or failed, and re-sends batches whose job was lost.
   ``linli transfers poll`` is the same sweep by hand, at once.
4. The ``transfer_fail`` callback marks an item refused at once.

When WeCom reports an item done, the old relationship closes (reason ``transfer``) and the
colleague gets one at the same store and channel: no resident is lost on the way.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased
from werkzeug.exceptions import NotFound

from coupons.services import mask_holder
from accounts.models import Role, User
from core.db import db, utcnow
from core.extensions import QUEUE_DEFAULT, enqueue, get_redis
from core import signals
from residents.models import (
    ContactRelationship,
    MemberTransfer,
    RelationshipStatus,
    Resident,
    TransferItem,
    TransferItemStatus,
    TransferKind,
    TransferStatus,
)
from residents.services import REASON_MEMBER_DELETED, REASON_TRANSFER, open_relationship
from core.txn import transaction
from merchants.models import Member, Merchant, Store, StoreMember
from merchants.services import ServiceError, stores_visible_to
from wecom.client import TRANSFER_BATCH, WeComError, chunked, hint_for
from wecom.events import registry

log = logging.getLogger(__name__)

BATCH_SIZE = TRANSFER_BATCH  # WeCom: at most 100 external_userid per transfer call
GROUP_BATCH = 100  # groupchat/transfer: at most 100 chat ids per call
SUCCESS_MSG_MAX = 200  # transfer_success_msg, characters
DEFAULT_POLL_SECONDS = 15 * 60  # WeCom completes after 24 h; no need to ask more often
DEFAULT_GIVE_UP_HOURS = 72  # items WeCom has not settled by then fail (it takes 24 h)
POLLED_KEY = "linli:transfers:polled:{}"  # set for TRANSFER_POLL_SECONDS after each sweep's poll
STALE_SEND = timedelta(minutes=5)  # queued this long: the send job was lost, the sweep sends

# Per-customer errcodes from transfer_customer. "Waiting": accepted now, or already in a
# transfer (a re-send after a crash between WeCom's answer and our commit). "Refused": WeCom
# will not move this customer for the customer's sake. Anything else is a failure to look at.
WAITING_CODES = frozenset({0, 40100, 40129})
REFUSED_CODES = frozenset({40099, 40128})  # takeover at its customer limit; moved too often (90 days)
# transfer_result status → item status (4: takeover at its limit, kept as errcode 40099)
RESULT_STATUS = {
    1: TransferItemStatus.done,
    2: TransferItemStatus.waiting,
    3: TransferItemStatus.refused,
    4: TransferItemStatus.refused,
    5: TransferItemStatus.failed,
}
FINAL = (TransferItemStatus.done, TransferItemStatus.refused, TransferItemStatus.failed)

STATUS_LABELS = {
    TransferItemStatus.queued: _l("待发送"),
    TransferItemStatus.waiting: _l("等待接替"),
    TransferItemStatus.done: _l("已完成"),
    TransferItemStatus.refused: _l("被拒绝"),
    TransferItemStatus.failed: _l("失败"),
}
KIND_LABELS = {TransferKind.resigned: _l("离职继承"), TransferKind.on_job: _l("在职继承")}
TRANSFER_LABELS = {TransferStatus.running: _l("进行中"), TransferStatus.done: _l("已完成"), TransferStatus.failed: _l("有失败")}
# Plain words for the errcodes a transfer item can carry (beyond wecom.client's hints).
ERRCODE_LABELS = {
    40003: _l("成员账号无效或已离职"),
    40096: _l("客户 ID 无效"),
    40097: _l("该成员尚未在企业微信办理离职，请改用在职继承或先在管理后台办理离职"),
    40098: _l("接替成员尚未实名认证"),
    40099: _l("接替成员的客户数已达上限"),
    40128: _l("该客户 90 天内转接次数已达上限"),
    40131: _l("该客户已不是原成员的客户"),
    84074: _l("接替成员没有客户联系权限"),
    -1: _l("企业微信暂时不可用"),
}


# --------------------------------------------------------------------------- tenant scope


def transfers_visible_to(session: Session, user: User):
    """``select(MemberTransfer)`` limited to the merchants whose stores ``user`` may see."""
    stmt = select(MemberTransfer)
    if user.role == Role.admin:
        return stmt
    if user.role in (Role.owner, Role.manager):
        merchants = stores_visible_to(session, user).with_only_columns(Store.merchant_id)
        return stmt.where(MemberTransfer.merchant_id.in_(merchants))
    return stmt.where(False)


def get_transfer_for(session: Session, user: User, transfer_id: int) -> MemberTransfer:
    """The transfer if ``user`` may see it, else 404 (other tenants' ids stay secret)."""
    transfer = session.scalar(transfers_visible_to(session, user).where(MemberTransfer.id == transfer_id))
    if transfer is None:
        raise NotFound()
    return transfer


def get_staff_for(session: Session, user: User, store_id: int, member_id: int) -> tuple[Store, Member]:
    """A member serving a store ``user`` may see, else 404."""
    stmt = (
        select(StoreMember)
        .where(
            StoreMember.store_id == store_id,
            StoreMember.member_id == member_id,
            StoreMember.store_id.in_(stores_visible_to(session, user).with_only_columns(Store.id)),
        )
    )
    staff = session.scalar(stmt)
    if staff is None:
        raise NotFound()
    return staff.store, staff.member


def _merchant_store_ids(merchant_id: int):
    return select(Store.id).where(Store.merchant_id == merchant_id)


def takeover_choices(session: Session, merchant_id: int, leaving_member_id: int) -> list[Member]:
    """Colleagues who may inherit: serving a store of the same merchant, active in WeCom,
    allowed to hold customers, not leaving themselves."""
    other = aliased(StoreMember)
    leaving_here = exists().where(
        other.member_id == Member.id,
        other.leaving.is_(True),
        other.store_id.in_(_merchant_store_ids(merchant_id)),
    )
    stmt = (
        select(Member)
        .join(StoreMember, StoreMember.member_id == Member.id)
        .where(
            StoreMember.store_id.in_(_merchant_store_ids(merchant_id)),
            Member.id != leaving_member_id,
            Member.active.is_(True),
            Member.can_hold_customers.is_(True),
            ~leaving_here,
        )
        .distinct()
        .order_by(Member.name, Member.userid)
    )
    return list(session.scalars(stmt))


@dataclass
class StaffRow:
    store: Store
    member: Member
    leaving: bool
    customers: int  # open relationships at this store
    transfer: MemberTransfer | None  # the latest transfer from this member at this merchant


def staff_overview(session: Session, user: User, store_id: int | None = None) -> list[StaffRow]:
    """Members serving the stores ``user`` may see (optionally one store), with their open
    customer counts and latest transfer: the starting point of a handover."""
    visible = stores_visible_to(session, user).with_only_columns(Store.id)
    stmt = select(StoreMember).where(StoreMember.store_id.in_(visible))
    if store_id is not None:
        stmt = stmt.where(StoreMember.store_id == store_id)
    rows = list(session.scalars(stmt.order_by(StoreMember.store_id, StoreMember.backup, StoreMember.id)))
    if not rows:
        return []
    store_ids = {r.store_id for r in rows}
    member_ids = {r.member_id for r in rows}
    stores = {s.id: s for s in session.scalars(select(Store).where(Store.id.in_(store_ids)))}
    members = {m.id: m for m in session.scalars(select(Member).where(Member.id.in_(member_ids)))}
    counts = dict(
        ((m, s), n)
        for m, s, n in session.execute(
            select(ContactRelationship.member_id, ContactRelationship.store_id, func.count())
            .where(
                ContactRelationship.status == RelationshipStatus.open,
                ContactRelationship.member_id.in_(member_ids),
                ContactRelationship.store_id.in_(store_ids),
            )
            .group_by(ContactRelationship.member_id, ContactRelationship.store_id)
        )
    )
    latest: dict[tuple[int, int], MemberTransfer] = {}
    merchant_ids = {s.merchant_id for s in stores.values()}
    for t in session.scalars(
        select(MemberTransfer)
        .where(MemberTransfer.from_member_id.in_(member_ids), MemberTransfer.merchant_id.in_(merchant_ids))
        .order_by(MemberTransfer.id)
    ):
        latest[(t.from_member_id, t.merchant_id)] = t
    return [
        StaffRow(
            store=stores[r.store_id],
            member=members[r.member_id],
            leaving=r.leaving,
            customers=counts.get((r.member_id, r.store_id), 0),
            transfer=latest.get((r.member_id, stores[r.store_id].merchant_id)),
        )
        for r in rows
    ]


# --------------------------------------------------------------------------- start


def wecom_customers_of(client, member: Member, kind: TransferKind | str) -> list[str]:
    """The customers WeCom lists for the member: ``get_unassigned_list`` once they have left
    (``externalcontact/list`` no longer answers for them), else ``externalcontact/list``.
    Raises WeComError."""
    if TransferKind(kind) == TransferKind.resigned:
        return [
            str(i["external_userid"])
            for i in client.transfers.iter_unassigned()
            if i.get("handover_userid") == member.userid and i.get("external_userid")
        ]
    return [str(e) for e in client.customers.list(member.userid)]


@dataclass
class Checked:
    kind: TransferKind
    takeover: Member
    success_msg: str


def check_request(
    session: Session, *, store: Store, member: Member, takeover_id: int, kind: TransferKind | str, success_msg: str = ""
) -> Checked:
    """The rules of a handover request, checked before anything is asked of WeCom."""
    try:
        kind = TransferKind(kind)
    except ValueError:
        raise ServiceError(_l("请选择交接方式。"), "kind") from None
    success_msg = (success_msg or "").strip() if kind == TransferKind.on_job else ""
    if len(success_msg) > SUCCESS_MSG_MAX:
        raise ServiceError(_l("转接提示语最多 200 字。"), "success_msg")
    if kind == TransferKind.on_job and not member.active:
        raise ServiceError(_l("该成员已不在企业微信通讯录中（已离职），请选择离职继承。"), "kind")
    takeover = next((m for m in takeover_choices(session, store.merchant_id, member.id) if m.id == takeover_id), None)
    if takeover is None:
        raise ServiceError(
            _l("请选择接替的同事：须在本商户的门店接待顾客、已开通客户联系且不在交接中。"), "takeover"
        )
    running = session.scalar(
        select(MemberTransfer.id).where(
            MemberTransfer.from_member_id == member.id, MemberTransfer.status == TransferStatus.running
        )
    )
    if running is not None:
        raise ServiceError(_l("该成员已有进行中的交接，请等它完成。"))
    return Checked(kind, takeover, success_msg)


@dataclass
class Started:
    transfer: MemberTransfer
    store_ids: list[int]  # stores where the member is now marked leaving (codes must follow)


def start_transfer(
    session: Session,
    user: User,
    *,
    store: Store,
    member: Member,
    takeover_id: int,
    kind: TransferKind | str,
    success_msg: str = "",
    wecom_customers: list[str] | None = None,
) -> Started:
    """Create the transfer and its items (not sent yet: ``enqueue_send`` after commit).

    ``store`` is the tenant anchor (already checked visible to ``user``); customers at the
    merchant's stores move, and customers WeCom lists for the member that we have never
    attributed to a store. A member's customers at another merchant's stores stay put.
    """
    checked = check_request(
        session, store=store, member=member, takeover_id=takeover_id, kind=kind, success_msg=success_msg
    )
    kind, takeover, success_msg = checked.kind, checked.takeover, checked.success_msg
    merchant_stores = _merchant_store_ids(store.merchant_id)
    rels = session.execute(
        select(Resident.id, Resident.external_userid)
        .join(ContactRelationship, ContactRelationship.resident_id == Resident.id)
        .where(
            ContactRelationship.member_id == member.id,
            ContactRelationship.status == RelationshipStatus.open,
            or_(ContactRelationship.store_id.is_(None), ContactRelationship.store_id.in_(merchant_stores)),
            Resident.erased_at.is_(None),
        )
        .order_by(ContactRelationship.added_at, ContactRelationship.id)
    ).all()
    items: dict[str, int | None] = {}
    for resident_id, external_userid in rels:
        items.setdefault(external_userid, resident_id)
    extras = [e for e in dict.fromkeys(wecom_customers or []) if e and e not in items]
    if extras:
        # Customers of this member that belong to another merchant's stores are not ours to move.
        elsewhere = set(
            session.scalars(
                select(Resident.external_userid)
                .join(ContactRelationship, ContactRelationship.resident_id == Resident.id)
                .where(
                    ContactRelationship.member_id == member.id,
                    ContactRelationship.store_id.is_not(None),
                    ContactRelationship.store_id.not_in(merchant_stores),
                    Resident.external_userid.in_(extras),
                )
            )
        )
        known = dict(
            session.execute(
                select(Resident.external_userid, Resident.id).where(
                    Resident.external_userid.in_(extras), Resident.erased_at.is_(None)
                )
            ).all()
        )
        for ext in extras:
            if ext not in elsewhere:
                items[ext] = known.get(ext)

    transfer = MemberTransfer(
        from_member_id=member.id,
        to_member_id=takeover.id,
        merchant_id=store.merchant_id,
        kind=kind,
        success_msg=success_msg,
        status=TransferStatus.running,
        requested_by_id=user.id,
        total=len(items),
    )
    session.add(transfer)
    session.flush()
    session.add_all(
        TransferItem(
            transfer_id=transfer.id,
            resident_id=resident_id,
            external_userid=ext,
            batch=n // BATCH_SIZE + 1,
            status=TransferItemStatus.queued,
        )
        for n, (ext, resident_id) in enumerate(items.items())
    )
    store_ids = []
    for staff in session.scalars(
        select(StoreMember).where(StoreMember.member_id == member.id, StoreMember.store_id.in_(merchant_stores))
    ):
        if not staff.leaving:
            staff.leaving = True
            store_ids.append(staff.store_id)
    session.flush()
    return Started(transfer, store_ids)


def retry_failed(session: Session, transfer: MemberTransfer) -> int:
    """Put failed items (not the ones customers refused) back in the queue; the transfer
    runs again. Returns how many."""
    items = list(
        session.scalars(
            select(TransferItem).where(
                TransferItem.transfer_id == transfer.id, TransferItem.status == TransferItemStatus.failed
            )
        )
    )
    for item in items:
        item.status, item.errcode = TransferItemStatus.queued, None
    groups_failed = transfer.groups_sent_at is not None and transfer.groups_done < transfer.groups_total
    if groups_failed:
        transfer.groups_sent_at, transfer.note = None, ""
    if items or groups_failed:
        transfer.status, transfer.finished_at = TransferStatus.running, None
    session.flush()
    return len(items)


# --------------------------------------------------------------------------- jobs


def enqueue_send(transfer_id: int):
    from rq import Retry

    return enqueue(QUEUE_DEFAULT, send_transfer, transfer_id, retry=Retry(max=5, interval=[10, 60, 300, 900, 3600]))


def enqueue_poll(transfer_id: int):
    """Poll now (the page's button), whatever the sweep's pace."""
    return enqueue(QUEUE_DEFAULT, poll_transfer, transfer_id)


def poll_seconds() -> float:
    return float(current_app.config.get("TRANSFER_POLL_SECONDS", DEFAULT_POLL_SECONDS))


def give_up_after() -> timedelta:
    return timedelta(hours=float(current_app.config.get("TRANSFER_GIVE_UP_HOURS", DEFAULT_GIVE_UP_HOURS)))


def _client():
    from core.wecom import get_wecom

    return get_wecom()


def send_transfer(transfer_id: int) -> str:
    """RQ job: send every queued batch, then hand over the groups; the periodic sweep polls
    from there. WeCom being busy (-1/45009/45033 after the client's own retries) raises, so
    RQ retries the job; anything else is recorded on the items and the transfer carries on."""
    client = _client()
    sent = 0
    while True:
        with transaction(db.session):
            transfer = _fresh(db.session, transfer_id)
            if transfer is None or transfer.status != TransferStatus.running:
                return "skipped"
            batch_no = db.session.scalar(
                select(func.min(TransferItem.batch)).where(
                    TransferItem.transfer_id == transfer_id, TransferItem.status == TransferItemStatus.queued
                )
            )
            if batch_no is None:
                break
            ext_ids = list(
                db.session.scalars(
                    select(TransferItem.external_userid)
                    .where(
                        TransferItem.transfer_id == transfer_id,
                        TransferItem.batch == batch_no,
                        TransferItem.status == TransferItemStatus.queued,
                    )
                    .order_by(TransferItem.id)
                    .limit(BATCH_SIZE)
                )
            )
            call = _Call.of(db.session, transfer)
        # No transaction is held open across the HTTP call.
        codes = call.send(client, ext_ids)
        with transaction(db.session):
            transfer = _locked(db.session, transfer_id)
            record_sent(db.session, transfer, codes)
        sent += len(ext_ids)
    groups = _hand_over_groups(client, transfer_id)
    with transaction(db.session):
        transfer = _locked(db.session, transfer_id)
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


def record_sent(session: Session, transfer: MemberTransfer, codes: dict[str, int | None]) -> None:
    """Each sent item's errcode → waiting, refused or failed (only items still queued move)."""
    items = session.scalars(
        select(TransferItem)
        .where(
            TransferItem.transfer_id == transfer.id,
            TransferItem.external_userid.in_(list(codes)),
            TransferItem.status == TransferItemStatus.queued,
        )
        .execution_options(populate_existing=True)
    )
    for item in items:
        code = codes[item.external_userid]
        item.errcode = code
        if code in WAITING_CODES:
            item.status = TransferItemStatus.waiting
        elif code in REFUSED_CODES:
            item.status = TransferItemStatus.refused
        else:
            item.status = TransferItemStatus.failed
    session.flush()


def _hand_over_groups(client, transfer_id: int) -> str:
    """The member's customer groups to the colleague, ≤100 chats a call; counts and failures
    are kept on the transfer. Done once (``groups_sent_at``)."""
    with transaction(db.session):
        transfer = _fresh(db.session, transfer_id)
        if transfer.groups_sent_at is not None:
            return "already"
        call = _Call.of(db.session, transfer)
    failures: list[str] = []
    try:
        chats = [c["chat_id"] for c in client.groups.iter_chats(owner_userids=[call.handover]) if c.get("chat_id")]
        with transaction(db.session):
            transfer = _locked(db.session, transfer_id)
            # chats already moved by an earlier (interrupted) run are no longer listed
            transfer.groups_total = transfer.groups_done + len(chats)
        for chunk in chunked(chats, GROUP_BATCH):
            move = client.groups.transfer if call.kind == TransferKind.resigned else client.groups.onjob_transfer
            failed = move(chunk, call.takeover).get("failed_chat_list") or []
            failures += [f"{f.get('chat_id')}: {f.get('errcode')}" for f in failed]
            with transaction(db.session):
                transfer = _locked(db.session, transfer_id)
                transfer.groups_done += len(chunk) - len(failed)
    except WeComError as exc:
        if exc.retryable:
            raise
        failures.append(f"{exc.errcode}: {exc.errmsg[:200]}")
    with transaction(db.session):
        transfer = _locked(db.session, transfer_id)
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
        transfer = _fresh(db.session, transfer_id)
        if transfer is None or transfer.status != TransferStatus.running:
            return "skipped"
        call = _Call.of(db.session, transfer)
        waiting = db.session.scalar(
            select(func.count()).where(
                TransferItem.transfer_id == transfer_id, TransferItem.status == TransferItemStatus.waiting
            )
        )
    results = call.results(_client()) if waiting else {}
    with transaction(db.session):
        transfer = _locked(db.session, transfer_id)
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
        except Exception:  # noqa: BLE001  (WeCom busy for one transfer: the next sweep tries again)
            log.exception("transfer %s: sweep failed", transfer_id)
    return checked


def _fresh(session: Session, transfer_id: int) -> MemberTransfer | None:
    """The row as the database has it now (the session keeps objects across commits)."""
    return session.get(MemberTransfer, transfer_id, populate_existing=True)


def _locked(session: Session, transfer_id: int) -> MemberTransfer:
    """The row, fresh and locked for this transaction (PostgreSQL; SQLite has one writer)."""
    return session.get(MemberTransfer, transfer_id, with_for_update=True, populate_existing=True)


def _count(session: Session, transfer_id: int, status: TransferItemStatus) -> int:
    return session.scalar(
        select(func.count()).where(TransferItem.transfer_id == transfer_id, TransferItem.status == status)
    )


@dataclass
class _Moved:
    resident_id: int
    from_member_id: int
    to_member_id: int
    store_ids: list[int | None] = field(default_factory=list)


def apply_results(session: Session, transfer: MemberTransfer, results: dict[str, dict]) -> list[_Moved]:
    """transfer_result records → item statuses; done items move their relationships."""
    moved = []
    items = session.scalars(
        select(TransferItem)
        .where(TransferItem.transfer_id == transfer.id, TransferItem.status == TransferItemStatus.waiting)
        .execution_options(populate_existing=True)
    )
    for item in items:
        entry = results.get(item.external_userid)
        if entry is None:
            continue  # not listed (yet): keep waiting
        status = RESULT_STATUS.get(int(entry.get("status") or 0))
        if status is None or status == TransferItemStatus.waiting:
            continue
        item.status = status
        if int(entry.get("status") or 0) == 4:
            item.errcode = 40099
        if status == TransferItemStatus.done and item.resident_id is not None:
            moved.append(move_relationships(session, transfer, item.resident_id))
    session.flush()
    return moved


def give_up_waiting(session: Session, transfer: MemberTransfer) -> int:
    """Items still waiting long after WeCom's 24 h: failed (no errcode: WeCom never said)."""
    items = list(session.scalars(
        select(TransferItem)
        .where(TransferItem.transfer_id == transfer.id, TransferItem.status == TransferItemStatus.waiting)
        .execution_options(populate_existing=True)
    ))
    for item in items:
        item.status, item.errcode = TransferItemStatus.failed, None
    session.flush()
    return len(items)


def move_relationships(session: Session, transfer: MemberTransfer, resident_id: int) -> _Moved:
    """The resident now follows the colleague: each relationship with the leaving member at
    the merchant's stores (or at no store) closes with reason ``transfer`` and reopens for the
    colleague with the same store and channel. A relationship the ``del_external_contact``
    (``DELETE_BY_TRANSFER``) event already closed is counted as moved too. Idempotent."""
    now = utcnow()
    rels = session.scalars(
        select(ContactRelationship)
        .where(
            ContactRelationship.resident_id == resident_id,
            ContactRelationship.member_id == transfer.from_member_id,
            or_(
                ContactRelationship.store_id.is_(None),
                ContactRelationship.store_id.in_(_merchant_store_ids(transfer.merchant_id)),
            ),
            or_(
                ContactRelationship.status == RelationshipStatus.open,
                and_(
                    ContactRelationship.close_reason.in_((REASON_TRANSFER, REASON_MEMBER_DELETED)),
                    ContactRelationship.closed_at >= transfer.created_at,
                ),
            ),
        )
        .order_by(ContactRelationship.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    result = _Moved(resident_id, transfer.from_member_id, transfer.to_member_id)
    for rel in rels:
        if rel.status == RelationshipStatus.open:
            rel.status, rel.closed_at = RelationshipStatus.closed, now
        rel.close_reason = REASON_TRANSFER
        if rel.store_id is None or not _adopt_storeless(session, transfer, resident_id, rel):
            open_relationship(session, resident_id, transfer.to_member_id, rel.store_id, rel.channel_id, now)
        result.store_ids.append(rel.store_id)
    session.flush()
    return result


def _adopt_storeless(session: Session, transfer: MemberTransfer, resident_id: int, old: ContactRelationship) -> bool:
    """WeCom's add event for the colleague may arrive before our poll and, without the old
    contact-way state, open a relationship at no store. When the colleague has no row for
    the old store yet, that row takes the old store and channel instead of a second one."""
    has_store_row = session.scalar(
        select(ContactRelationship.id).where(
            ContactRelationship.resident_id == resident_id,
            ContactRelationship.member_id == transfer.to_member_id,
            ContactRelationship.store_id == old.store_id,
        )
    )
    if has_store_row is not None:
        return False
    storeless = session.scalar(
        select(ContactRelationship)
        .where(
            ContactRelationship.resident_id == resident_id,
            ContactRelationship.member_id == transfer.to_member_id,
            ContactRelationship.store_id.is_(None),
            ContactRelationship.status == RelationshipStatus.open,
            ContactRelationship.added_at >= transfer.created_at,
        )
        .with_for_update()
    )
    if storeless is None:
        return False
    storeless.store_id, storeless.channel_id = old.store_id, old.channel_id
    return True


def maybe_finish(session: Session, transfer: MemberTransfer) -> bool:
    """Done once every item is final and the groups were handled; ``failed`` when some item
    or group could not be moved (a customer's refusal is an answer, not a failure)."""
    if transfer.status != TransferStatus.running:
        return True
    open_items = session.scalar(
        select(func.count()).where(TransferItem.transfer_id == transfer.id, TransferItem.status.not_in(FINAL))
    )
    if open_items or transfer.groups_sent_at is None:
        return False
    failed = _count(session, transfer.id, TransferItemStatus.failed)
    bad = failed or transfer.groups_done < transfer.groups_total
    transfer.status = TransferStatus.failed if bad else TransferStatus.done
    transfer.finished_at = utcnow()
    session.flush()
    return True


def _announce(moved: list[_Moved]) -> None:
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
            except Exception:  # noqa: BLE001
                log.exception("a receiver failed after moving resident %s", m.resident_id)


# --------------------------------------------------------------------------- callbacks


@registry.on("change_external_contact", "transfer_fail")
def on_transfer_fail(payload: dict) -> None:
    """The customer refused (``customer_refused``) or the colleague is at the customer limit
    (``customer_limit_exceed``): the waiting item is refused. ``UserID`` is the takeover."""
    ext = payload.get("ExternalUserID") or ""
    takeover = payload.get("UserID") or ""
    reason = payload.get("FailReason") or ""
    with transaction(db.session):
        to_member = aliased(Member)
        item = db.session.scalar(
            select(TransferItem)
            .join(MemberTransfer, MemberTransfer.id == TransferItem.transfer_id)
            .join(to_member, to_member.id == MemberTransfer.to_member_id)
            .where(
                TransferItem.external_userid == ext,
                TransferItem.status.in_((TransferItemStatus.waiting, TransferItemStatus.queued)),
                MemberTransfer.status == TransferStatus.running,
                to_member.userid == takeover,
            )
            .order_by(TransferItem.id.desc())
            .limit(1)
            .execution_options(populate_existing=True)
        )
        if item is None:
            log.info("transfer_fail for %s → %s matches no waiting item", ext, takeover)
            return
        item.status = TransferItemStatus.refused
        item.errcode = 40099 if reason.startswith("customer_limit") else None
        transfer = _locked(db.session, item.transfer_id)
        maybe_finish(db.session, transfer)


# --------------------------------------------------------------------------- progress page


def mask_name(name: str | None, fallback: str = "") -> str:
    """"张*" for 张三, "王**" for 王小明; an id shows its ends only."""
    name = (name or "").strip()
    if name:
        return name[0] + "*" * max(1, len(name) - 1)
    return mask_holder(fallback)


def errcode_label(code: int | None, status: TransferItemStatus) -> str:
    if status == TransferItemStatus.refused and code is None:
        return str(_l("顾客拒绝转接"))
    if code is None:
        return str(_l("企业微信未返回结果"))
    label = ERRCODE_LABELS.get(code) or hint_for(code) or _l("错误")
    return str(_l("%(label)s（%(code)s）", label=label, code=code))


@dataclass
class Problem:
    who: str
    why: str


@dataclass
class Progress:
    transfer: MemberTransfer
    from_member: Member
    to_member: Member
    counts: dict[TransferItemStatus, int]
    batches: list[tuple[int, dict[TransferItemStatus, int]]]
    refused: list[Problem]  # the first PROBLEMS_SHOWN of each
    failed: list[Problem]

    @property
    def refused_total(self) -> int:
        return self.counts[TransferItemStatus.refused]

    @property
    def failed_total(self) -> int:
        return self.counts[TransferItemStatus.failed]

    @property
    def running(self) -> bool:
        return self.transfer.status == TransferStatus.running

    @property
    def finished_items(self) -> int:
        return sum(self.counts.get(s, 0) for s in FINAL)


PROBLEMS_SHOWN = 200


def progress(session: Session, transfer: MemberTransfer) -> Progress:
    """Everything the progress page shows, in a handful of queries."""
    counts = {s: 0 for s in TransferItemStatus}
    batches: dict[int, dict[TransferItemStatus, int]] = {}
    for batch, status, n in session.execute(
        select(TransferItem.batch, TransferItem.status, func.count())
        .where(TransferItem.transfer_id == transfer.id)
        .group_by(TransferItem.batch, TransferItem.status)
    ):
        counts[status] += n
        batches.setdefault(batch, {s: 0 for s in TransferItemStatus})[status] = n

    def problems(status: TransferItemStatus) -> list[Problem]:
        rows = session.execute(
            select(TransferItem.external_userid, TransferItem.errcode, Resident.name)
            .outerjoin(Resident, Resident.id == TransferItem.resident_id)
            .where(TransferItem.transfer_id == transfer.id, TransferItem.status == status)
            .order_by(TransferItem.id)
            .limit(PROBLEMS_SHOWN)
        )
        return [Problem(mask_name(name, ext), errcode_label(code, status)) for ext, code, name in rows]

    members = {m.id: m for m in session.scalars(
        select(Member).where(Member.id.in_((transfer.from_member_id, transfer.to_member_id)))
    )}
    return Progress(
        transfer=transfer,
        from_member=members[transfer.from_member_id],
        to_member=members[transfer.to_member_id],
        counts=counts,
        batches=sorted(batches.items()),
        refused=problems(TransferItemStatus.refused),
        failed=problems(TransferItemStatus.failed),
    )


@dataclass
class TransferRow:
    transfer: MemberTransfer
    from_member: Member
    to_member: Member
    merchant_name: str
    done: int
    refused: int
    failed: int


def list_transfers(session: Session, user: User, limit: int = 100) -> list[TransferRow]:
    """The latest transfers ``user`` may see, with their counts (no per-row queries)."""
    transfers = list(
        session.scalars(transfers_visible_to(session, user).order_by(MemberTransfer.id.desc()).limit(limit))
    )
    if not transfers:
        return []
    ids = [t.id for t in transfers]
    counts: dict[int, dict[TransferItemStatus, int]] = {}
    for transfer_id, status, n in session.execute(
        select(TransferItem.transfer_id, TransferItem.status, func.count())
        .where(TransferItem.transfer_id.in_(ids))
        .group_by(TransferItem.transfer_id, TransferItem.status)
    ):
        counts.setdefault(transfer_id, {})[status] = n
    member_ids = {t.from_member_id for t in transfers} | {t.to_member_id for t in transfers}
    members = {m.id: m for m in session.scalars(select(Member).where(Member.id.in_(member_ids)))}
    merchants = dict(
        session.execute(
            select(Merchant.id, Merchant.name).where(Merchant.id.in_({t.merchant_id for t in transfers}))
        ).all()
    )
    return [
        TransferRow(
            transfer=t,
            from_member=members[t.from_member_id],
            to_member=members[t.to_member_id],
            merchant_name=merchants.get(t.merchant_id, ""),
            done=counts.get(t.id, {}).get(TransferItemStatus.done, 0),
            refused=counts.get(t.id, {}).get(TransferItemStatus.refused, 0),
            failed=counts.get(t.id, {}).get(TransferItemStatus.failed, 0),
        )
        for t in transfers
    ]
