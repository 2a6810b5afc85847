"""Inbound staff edits: when staff tag a diner in the WeCom app (``edit_external_contact``),
cuisine tags we did not put there become ``staff_tag`` signals (``ref=tag:<userid>``) and
removed ones drop them. Our own ``mark_tag`` makes no callback in WeCom; even if one came,
it would find no signal to change and stop there. Our synced tags that a member removed go
back to pending (the local rows are the truth) unless the profile no longer wants them."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from merchants.models import CUISINES, Member
from residents import taste
from residents.models import CorpTag, ResidentTag, SignalSource, TasteSignal
from residents.tags.corp import CUISINE_GROUP, CUISINE_PREFIX


@dataclass
class StaffTagChanges:
    added: list[tuple[str, str]] = field(default_factory=list)  # (userid, cuisine)
    dropped: list[tuple[str, str]] = field(default_factory=list)
    restored: int = 0  # our synced rows a member removed, pending again

    @property
    def profile_changed(self) -> bool:
        return bool(self.added or self.dropped)


def apply_staff_tags(session: Session, resident_id: int, follow_users: list[dict]) -> StaffTagChanges:
    """Compare ``externalcontact/get``'s ``follow_user[].tags`` with what we put there.

    Per member (``ref=tag:<userid>``): a cuisine tag we did not put there is a staff_tag
    signal; a staff-signalled cuisine no longer tagged loses its signal. Rows we synced whose
    tag is gone go back to pending.
    """
    changes = StaffTagChanges()
    corp_tags = {row.tag_id: row for row in session.scalars(select(CorpTag).where(CorpTag.tag_id.is_not(None)))}
    by_label = {label: code for code, label in CUISINES.items()}
    userids = [fu.get("userid") for fu in follow_users if fu.get("userid")]
    members = dict(session.execute(select(Member.userid, Member.id).where(Member.userid.in_(userids))).all())
    rows: dict[int, list[ResidentTag]] = defaultdict(list)
    for row in session.scalars(
        select(ResidentTag).where(ResidentTag.resident_id == resident_id).options(selectinload(ResidentTag.corp_tag))
    ):
        rows[row.member_id].append(row)
    staff = {
        (s.ref, s.cuisine)
        for s in session.scalars(
            select(TasteSignal).where(
                TasteSignal.resident_id == resident_id, TasteSignal.source == SignalSource.staff_tag
            )
        )
    }
    keep = {f"{cuisine}|{ref}" for ref, cuisine in staff}
    for fu in follow_users:
        userid = fu.get("userid")
        member_id = members.get(userid)
        if member_id is None:
            continue
        ref = f"tag:{userid}"
        present_ids = {t.get("tag_id") for t in fu.get("tags") or [] if t.get("tag_id")}
        present: set[str] = set()
        for tag in fu.get("tags") or []:
            row = corp_tags.get(tag.get("tag_id"))
            if row is not None:
                if row.key.startswith(CUISINE_PREFIX):
                    present.add(row.key.removeprefix(CUISINE_PREFIX))
            elif tag.get("group_name") == CUISINE_GROUP and tag.get("tag_name") in by_label:
                present.add(by_label[tag["tag_name"]])
        ours = {
            row.corp_tag.key.removeprefix(CUISINE_PREFIX)
            for row in rows[member_id]
            if row.corp_tag.key.startswith(CUISINE_PREFIX) and (row.wanted or row.synced_at is None)
        }
        for code in sorted(present - ours):
            if (ref, code) not in staff:
                taste.record_signal(session, resident_id, code, SignalSource.staff_tag, ref=ref)
                changes.added.append((userid, code))
        for r, code in sorted(staff):
            if r == ref and code not in present:
                keep.discard(f"{code}|{ref}")
                changes.dropped.append((userid, code))
        for row in rows[member_id]:
            tag_id = row.corp_tag.tag_id
            if row.wanted and row.synced_at is not None and tag_id and tag_id not in present_ids:
                row.synced_at = None
                changes.restored += 1
    if changes.dropped:
        taste.clear_signals(session, resident_id, SignalSource.staff_tag, keep_refs=keep)
    session.flush()
    return changes


def follow_users(client, external_userid: str) -> list[dict]:
    """Every member's ``follow_user`` entry (with its tags) for the diner, across pages."""
    data = client.customers.get(external_userid)
    users = list(data.get("follow_user") or [])
    while data.get("next_cursor"):
        data = client.customers.get(external_userid, cursor=data["next_cursor"])
        users += data.get("follow_user") or []
    return users
