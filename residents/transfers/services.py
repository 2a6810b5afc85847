"""The rules of a handover: tenant-scoped lookups, checking and starting a request, and
applying what WeCom answered (item statuses, relationships that follow the customer).
Functions take a ``Session`` and never commit; the jobs and views own the transactions."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from accounts.models import Role, User
from core.db import utcnow
from core.errors import Invalid, NotFound
from merchants.models import Member, Store, StoreMember
from merchants.services import member_merchant_ids, stores_visible_to
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
from residents.services import (
    REASON_MEMBER_DELETED,
    REASON_TRANSFER,
    count_contact,
    open_relationship,
    refresh_reachable,
)
from wecom.client import TRANSFER_BATCH

log = logging.getLogger(__name__)

BATCH_SIZE = TRANSFER_BATCH  # WeCom: at most 100 external_userid per transfer call
GROUP_BATCH = 100  # groupchat/transfer: at most 100 chat ids per call
SUCCESS_MSG_MAX = 200  # transfer_success_msg, characters

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


class TransferError(Invalid):
    """A handover request breaks a rule (400); ``field`` names the form input."""


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
    """The transfer if ``user`` may see it, else ``NotFound`` (other tenants' ids stay secret)."""
    transfer = session.scalar(transfers_visible_to(session, user).where(MemberTransfer.id == transfer_id))
    if transfer is None:
        raise NotFound()
    return transfer


def get_staff_for(session: Session, user: User, store_id: int, member_id: int) -> tuple[Store, Member]:
    """A member serving a store ``user`` may see, else ``NotFound``."""
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
        raise TransferError(_l("请选择交接方式。"), "kind") from None
    success_msg = (success_msg or "").strip() if kind == TransferKind.on_job else ""
    if len(success_msg) > SUCCESS_MSG_MAX:
        raise TransferError(_l("转接提示语最多 200 字。"), "success_msg")
    if kind == TransferKind.on_job and not member.active:
        raise TransferError(_l("该成员已不在企业微信通讯录中（已离职），请选择离职继承。"), "kind")
    takeover = next((m for m in takeover_choices(session, store.merchant_id, member.id) if m.id == takeover_id), None)
    if takeover is None:
        raise TransferError(
            _l("请选择接替的同事：须在本商户的门店接待顾客、已开通客户联系且不在交接中。"), "takeover"
        )
    # One running handover per member *and merchant*: another merchant's handover of the same
    # member neither blocks this one nor shows through this message.
    running = session.scalar(
        select(MemberTransfer.id).where(
            MemberTransfer.from_member_id == member.id,
            MemberTransfer.merchant_id == store.merchant_id,
            MemberTransfer.status == TransferStatus.running,
        )
    )
    if running is not None:
        raise TransferError(_l("该成员已有进行中的交接，请等它完成。"))
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

    ``store`` is the tenant anchor (already checked visible to ``user``). What moves:

    * the member's open relationships at the merchant's stores;
    * customers WeCom lists for the member whom we know at the merchant's stores (a
      relationship there, open or closed);
    * only when the member works for this merchant alone (granted to, and serving, no other
      merchant): their customers at no store and those only WeCom knows — nobody else's.

    A member's customers at another merchant's stores stay put, and a member shared with
    another merchant hands over only this merchant's customers.
    """
    checked = check_request(
        session, store=store, member=member, takeover_id=takeover_id, kind=kind, success_msg=success_msg
    )
    kind, takeover, success_msg = checked.kind, checked.takeover, checked.success_msg
    merchant_stores = _merchant_store_ids(store.merchant_id)
    exclusive = member_merchant_ids(session, member.id) <= {store.merchant_id}
    at_merchant = ContactRelationship.store_id.in_(merchant_stores)
    rels = session.execute(
        select(Resident.id, Resident.external_userid)
        .join(ContactRelationship, ContactRelationship.resident_id == Resident.id)
        .where(
            ContactRelationship.member_id == member.id,
            ContactRelationship.status == RelationshipStatus.open,
            or_(ContactRelationship.store_id.is_(None), at_merchant) if exclusive else at_merchant,
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
        # ... and those we once knew at this merchant's stores (WeCom still lists them)
        here = set(
            session.scalars(
                select(Resident.external_userid)
                .join(ContactRelationship, ContactRelationship.resident_id == Resident.id)
                .where(
                    ContactRelationship.member_id == member.id,
                    at_merchant,
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
            if ext in here or (exclusive and ext not in elsewhere):
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


# --------------------------------------------------------------------------- WeCom's answers


def fresh_transfer(session: Session, transfer_id: int) -> MemberTransfer | None:
    """The row as the database has it now (the session keeps objects across commits)."""
    return session.get(MemberTransfer, transfer_id, populate_existing=True)


def locked_transfer(session: Session, transfer_id: int) -> MemberTransfer:
    """The row, fresh and locked for this transaction (PostgreSQL; SQLite has one writer)."""
    return session.get(MemberTransfer, transfer_id, with_for_update=True, populate_existing=True)


def _count(session: Session, transfer_id: int, status: TransferItemStatus) -> int:
    return session.scalar(
        select(func.count()).where(TransferItem.transfer_id == transfer_id, TransferItem.status == status)
    )


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


@dataclass
class Moved:
    resident_id: int
    from_member_id: int
    to_member_id: int
    store_ids: list[int | None] = field(default_factory=list)


def apply_results(session: Session, transfer: MemberTransfer, results: dict[str, dict]) -> list[Moved]:
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


def move_relationships(session: Session, transfer: MemberTransfer, resident_id: int) -> Moved:
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
    result = Moved(resident_id, transfer.from_member_id, transfer.to_member_id)
    for rel in rels:
        if rel.status == RelationshipStatus.open:
            rel.status, rel.closed_at = RelationshipStatus.closed, now
        elif rel.close_reason != REASON_TRANSFER:
            # counted lost when WeCom removed it mid-handover; it moved, so take that back
            count_contact(session, rel, rel.closed_at or now, lost_contacts=-1)
        rel.close_reason = REASON_TRANSFER
        if rel.store_id is None or not _adopt_storeless(session, transfer, resident_id, rel):
            open_relationship(session, resident_id, transfer.to_member_id, rel.store_id, rel.channel_id, now,
                              opened_by="transfer")
        result.store_ids.append(rel.store_id)
    session.flush()
    refresh_reachable(session, resident_id)
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


def next_batch(session: Session, transfer_id: int) -> list[str]:
    """The customers of the lowest batch still queued ([] when every batch was sent)."""
    batch_no = session.scalar(
        select(func.min(TransferItem.batch)).where(
            TransferItem.transfer_id == transfer_id, TransferItem.status == TransferItemStatus.queued
        )
    )
    if batch_no is None:
        return []
    return list(
        session.scalars(
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


def refuse_item(session: Session, external_userid: str, takeover_userid: str, reason: str) -> TransferItem | None:
    """WeCom's ``transfer_fail``: the customer's waiting item in a running transfer to that
    takeover is refused (40099 when the colleague is at the customer limit), and the
    transfer finishes if that was the last. None when no item matches (a redelivery)."""
    to_member = aliased(Member)
    item = session.scalar(
        select(TransferItem)
        .join(MemberTransfer, MemberTransfer.id == TransferItem.transfer_id)
        .join(to_member, to_member.id == MemberTransfer.to_member_id)
        .where(
            TransferItem.external_userid == external_userid,
            TransferItem.status.in_((TransferItemStatus.waiting, TransferItemStatus.queued)),
            MemberTransfer.status == TransferStatus.running,
            to_member.userid == takeover_userid,
        )
        .order_by(TransferItem.id.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    )
    if item is None:
        return None
    item.status = TransferItemStatus.refused
    item.errcode = 40099 if reason.startswith("customer_limit") else None
    maybe_finish(session, locked_transfer(session, item.transfer_id))
    return item
