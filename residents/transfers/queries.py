"""The read side of handovers: who serves which store and with how many customers, the
latest transfers, and one transfer's progress — each page in a handful of queries."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from accounts.models import User
from merchants.models import Member, Merchant, Store, StoreMember
from merchants.services import stores_visible_to
from residents.models import (
    ContactRelationship,
    MemberTransfer,
    RelationshipStatus,
    Resident,
    TransferItem,
    TransferItemStatus,
    TransferStatus,
)
from residents.transfers.labels import errcode_label, mask_name
from residents.transfers.services import FINAL, transfers_visible_to


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
