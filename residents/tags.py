"""Taste profile ↔ WeCom corp tags (企业客户标签).

Out: a resident's preferred cuisines (group 口味偏好) and the business circles of the stores
they follow (group 商圈) become corp tags on every open member↔diner contact. The local
``ResidentTag`` rows are the truth: planning (``plan_resident_tags``) only changes rows, and
a job (``sync_resident_tags``) brings WeCom in line with one ``mark_tag`` per member. A row
stays pending (``synced_at`` NULL, ``attempts``/``last_error``) until WeCom took it, so a
45033, a timeout or an outage delays tags but never loses them: RQ retries the job with
backoff and ``sync_pending_tags`` (for a scheduler or the CLI) sweeps what is left.

Every ``mark_tag`` goes through a per-corp Redis semaphore (``throttle``), because WeCom
answers 45033 beyond a handful of concurrent tag writes and our processes can't see each
other. A resident's sync and staff-edit handling run under one Redis lock per resident.

Back: when staff tag a diner in the WeCom app (``edit_external_contact``), cuisine tags we
did not put there become ``staff_tag`` signals (``ref=tag:<userid>``), removed ones drop
them. Our own ``mark_tag`` makes no callback in WeCom; even if one came, it would find no
signal to change and stop there. Our synced tags that a member removed are put back (the
local rows are the truth) unless the profile no longer wants them.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from flask import current_app
from rq import Retry
from rq.exceptions import DuplicateJobError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from coupons.models import Coupon, CouponStatus
from core.signals import coupon_redeemed, redemption_reversed
from core.db import db, utcnow
from core.extensions import QUEUE_DEFAULT, enqueue, get_redis
from core import signals
from residents import taste
from residents.models import (
    ContactRelationship,
    CorpTag,
    RelationshipStatus,
    Resident,
    ResidentTag,
    SignalSource,
    TasteSignal,
)
from core.semaphore import Lease, Semaphore, SemaphoreTimeout
from core.txn import transaction
from merchants.models import CUISINES, Member, Region, RegionLevel, Store
from wecom.client import WeComError
from wecom.events import registry

log = logging.getLogger(__name__)

CUISINE_GROUP = "口味偏好"
CIRCLE_GROUP = "商圈"
CUISINE_PREFIX = "cuisine:"
CIRCLE_PREFIX = "circle:"
TAG_NAME_MAX = 30  # WeCom: tag and group names ≤ 30 characters

# RQ retries of a failed sync (seconds); after that the sweep takes over.
RETRY_INTERVALS = [15, 60, 300, 900, 3600]
# The sweep gives up on rows that failed this often (they keep last_error for a human).
MAX_SWEEP_ATTEMPTS = 20
THROTTLE_WAIT = 30.0  # seconds a sync waits for a free mark_tag slot before deferring
LOCK_TIMEOUT = 300  # a resident lock dies with its holder after this many seconds
LOCK_WAIT = 60
STALE_TAG = 40068  # invalid tag id: someone deleted our tag in the admin console


class TagSyncDeferred(RuntimeError):
    """WeCom (or the throttle) said "later"; the rows stay pending and the job is retried."""


def cuisine_key(code: str) -> str:
    return f"{CUISINE_PREFIX}{code}"


def circle_key(region_id: int) -> str:
    return f"{CIRCLE_PREFIX}{region_id}"


def _wecom():
    from core.wecom import get_wecom

    return get_wecom()


def _redis_lock(name: str) -> Lease:
    """One holder at a time across processes (a one-slot ``throttle.Semaphore``); use it in
    ``with``. Still busy after ``LOCK_WAIT``: ``TagSyncDeferred``."""
    try:
        return Semaphore(get_redis(), f"tags:{name}", 1, lease=LOCK_TIMEOUT).acquire(timeout=LOCK_WAIT)
    except SemaphoreTimeout:
        raise TagSyncDeferred(f"lock {name} busy") from None


def mark_tag_throttle(corp_id: str) -> Semaphore:
    """The per-corp semaphore every ``mark_tag`` goes through."""
    cfg = current_app.config
    return Semaphore(
        get_redis(),
        f"wecom:{corp_id}:mark_tag",
        int(cfg.get("WECOM_TAG_CONCURRENCY", 2)),
        lease=float(cfg.get("WECOM_TAG_LEASE", 60.0)),
    )


# --------------------------------------------------------------------------- corp tags


def _circle_tag_name(session: Session, region: Region) -> str:
    """The circle's name; with its district when another circle has the same name (names
    are unique per district only, and one tag group can't hold the same name twice)."""
    twins = session.scalar(
        select(func.count())
        .select_from(Region)
        .where(Region.level == RegionLevel.circle, Region.name == region.name, Region.id != region.id)
    )
    name = region.name
    if twins and region.parent is not None:
        name = f"{region.name}({region.parent.name})"
    return name[:TAG_NAME_MAX]


def _tag_spec(session: Session, key: str) -> tuple[str, str] | None:
    """(group name, tag name) for one of our keys; None for an unknown cuisine or circle."""
    if key.startswith(CUISINE_PREFIX):
        label = CUISINES.get(key.removeprefix(CUISINE_PREFIX))
        return (CUISINE_GROUP, label) if label else None
    if key.startswith(CIRCLE_PREFIX):
        region = session.get(Region, int(key.removeprefix(CIRCLE_PREFIX)))
        return (CIRCLE_GROUP, _circle_tag_name(session, region)) if region is not None else None
    return None


def corp_tag_rows(session: Session, keys: Iterable[str]) -> dict[str, CorpTag]:
    """Our ``CorpTag`` row per key, added (without WeCom ids yet) where missing."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return {}
    rows = {row.key: row for row in session.scalars(select(CorpTag).where(CorpTag.key.in_(keys)))}
    for key in keys:
        if key in rows:
            continue
        spec = _tag_spec(session, key)
        if spec is None:
            log.warning("no corp tag for unknown key %s", key)
            continue
        try:
            with session.begin_nested():
                row = CorpTag(key=key, group_name=spec[0], name=spec[1])
                session.add(row)
                session.flush()
        except IntegrityError:  # another worker added it first
            row = session.scalar(select(CorpTag).where(CorpTag.key == key))
        rows[key] = row
    return rows


@dataclass
class _LiveTags:
    """``get_corp_tag_list`` indexed: by tag id, by (group id, name) and by (group name, name)."""

    by_id: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # tag_id -> group_id, group, name
    in_group: dict[tuple[str, str], str] = field(default_factory=dict)  # (group_id, name) -> tag_id
    groups: dict[str, str] = field(default_factory=dict)  # group name -> group_id
    group_ids: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, tag_groups: list[dict]) -> _LiveTags:
        live = cls()
        for group in tag_groups:
            if group.get("deleted"):
                continue
            gid, gname = group["group_id"], group["group_name"]
            live.groups.setdefault(gname, gid)
            live.group_ids.add(gid)
            for tag in group.get("tag") or []:
                if tag.get("deleted"):
                    continue
                live.by_id[tag["id"]] = (gid, gname, tag["name"])
                live.in_group.setdefault((gid, tag["name"]), tag["id"])
        return live

    def group_for(self, kind_group_id: str | None, group_name: str) -> str | None:
        """The WeCom group holding a kind of our tags: the one we used before if it still
        exists (the admin may have renamed it), else the one by that name."""
        if kind_group_id in self.group_ids:
            return kind_group_id
        return self.groups.get(group_name)

    def find(self, group_id: str | None, name: str) -> str | None:
        return self.in_group.get((group_id, name)) if group_id else None


def _kind(key: str) -> str:
    return key.split(":", 1)[0]


def _kind_groups(session: Session) -> dict[str, str]:
    """kind (``cuisine``/``circle``) -> the WeCom group id our tags of that kind live in."""
    found: dict[str, str] = {}
    for key, group_id in session.execute(select(CorpTag.key, CorpTag.group_id).where(CorpTag.group_id.is_not(None))):
        found.setdefault(_kind(key), group_id)
    return found


def _assign(session: Session, row_id: int, group_id: str, tag_id: str) -> bool:
    """Give a row its WeCom ids, unless another row already claims that tag (two keys that
    came out with the same name): then it stays without, and is logged."""
    clash = session.scalar(select(CorpTag.key).where(CorpTag.tag_id == tag_id, CorpTag.id != row_id))
    if clash is not None:
        log.warning("corp tag %s already belongs to %s; row %s left without", tag_id, clash, row_id)
        return False
    row = session.get(CorpTag, row_id)
    row.tag_id, row.group_id = tag_id, group_id
    return True


def ensure_corp_tags(client, corp_tag_ids: Iterable[int] | None = None) -> int:
    """Give our ``CorpTag`` rows (these ids, or all) their WeCom ids; the number assigned.

    Tags that already exist in WeCom (a restart, another process, a console edit) are
    adopted by name; only the rest are created with ``add_corp_tag``. Whenever a cuisine tag
    is needed the whole 口味偏好 group is made, so staff can pick any cuisine in the WeCom
    app. One process at a time (a Redis lock), so two workers never create a group twice.
    """
    wanted = None if corp_tag_ids is None else set(corp_tag_ids)
    with _redis_lock("ensure"):
        with transaction(db.session):
            session = db.session
            if wanted is None or session.scalar(
                select(func.count()).where(CorpTag.id.in_(wanted), CorpTag.key.startswith(CUISINE_PREFIX))
            ):
                corp_tag_rows(session, [cuisine_key(code) for code in CUISINES])
            todo = [
                (row.id, row.key, row.group_name, row.name)
                for row in session.scalars(select(CorpTag).where(CorpTag.tag_id.is_(None)).order_by(CorpTag.id))
                if wanted is None or row.id in wanted or row.key.startswith(CUISINE_PREFIX)
            ]
            kind_groups = _kind_groups(session)
        if not todo:
            return 0
        live = _LiveTags.of(client.tags.list())
        found: dict[int, tuple[str, str]] = {}
        missing: dict[str, list[tuple[int, str, str, str]]] = defaultdict(list)
        for item in todo:
            row_id, key, group_name, name = item
            group_id = live.group_for(kind_groups.get(_kind(key)), group_name)
            tag_id = live.find(group_id, name)
            if tag_id:
                found[row_id] = (group_id, tag_id)
            else:
                missing[group_name].append(item)
        cuisine_order = {cuisine_key(code): len(CUISINES) - n for n, code in enumerate(CUISINES)}
        for group_name, items in missing.items():
            group_id = live.group_for(kind_groups.get(_kind(items[0][1])), group_name)
            tags = [{"name": name, "order": cuisine_order.get(key, 0)} for _, key, _, name in items]
            try:
                created = client.tags.add(
                    tags=tags, group_id=group_id, group_name=None if group_id else group_name
                )
                gid = created["group_id"]
                names = {t["name"]: t["id"] for t in created.get("tag") or []}
            except WeComError as exc:
                if exc.errcode != 40071:  # "name exists": someone made it meanwhile
                    raise
                live = _LiveTags.of(client.tags.list())
                gid = live.group_for(group_id, group_name)
                names = {name: live.find(gid, name) for _, _, _, name in items}
            for row_id, _key, _group, name in items:
                if names.get(name):
                    found[row_id] = (gid, names[name])
        with transaction(db.session):
            return sum(_assign(db.session, row_id, gid, tid) for row_id, (gid, tid) in found.items())


def reconcile_corp_tags(client) -> set[int]:
    """Re-read WeCom's tag list after an admin changed tags: follow renames, adopt tags made
    meanwhile, and forget ids of deleted tags (recreated on the next need; their wanted rows
    go back to pending). Returns residents with rows to sync."""
    live = _LiveTags.of(client.tags.list())
    affected: set[int] = set()
    with transaction(db.session):
        session = db.session
        kind_groups = _kind_groups(session)
        now = utcnow()
        for row in session.scalars(select(CorpTag).order_by(CorpTag.id)):
            if row.tag_id and row.tag_id in live.by_id:
                row.group_id, row.group_name, row.name = live.by_id[row.tag_id]
                continue
            if row.tag_id:  # deleted in WeCom: gone from every contact too
                log.info("corp tag %s (%s) was deleted in WeCom", row.tag_id, row.key)
                row.tag_id = row.group_id = None
                session.flush()
                for rt in session.scalars(select(ResidentTag).where(ResidentTag.corp_tag_id == row.id)):
                    if rt.wanted:
                        rt.synced_at, rt.attempts, rt.last_error = None, 0, None
                        affected.add(rt.resident_id)
                    elif rt.synced_at is None:
                        rt.synced_at = now  # nothing left to remove
            group_id = live.group_for(kind_groups.get(_kind(row.key)), row.group_name)
            tag_id = live.find(group_id, row.name)
            if tag_id and _assign(session, row.id, group_id, tag_id):
                affected.update(
                    session.scalars(
                        select(ResidentTag.resident_id).where(
                            ResidentTag.corp_tag_id == row.id, ResidentTag.synced_at.is_(None)
                        )
                    )
                )
    return affected


# --------------------------------------------------------------------------- planning


def desired_tags(session: Session, resident_id: int) -> tuple[set[int], set[str]]:
    """(members with an open relationship, tag keys every one of them should carry): the
    preferred cuisines and the circles of the stores behind the open relationships. An
    erased resident carries none."""
    rels = session.execute(
        select(ContactRelationship.member_id, ContactRelationship.store_id).where(
            ContactRelationship.resident_id == resident_id,
            ContactRelationship.status == RelationshipStatus.open,
        )
    ).all()
    members = {member_id for member_id, _ in rels}
    resident = session.get(Resident, resident_id)
    if resident is None or resident.erased_at is not None:
        return members, set()
    keys = {cuisine_key(code) for code in taste.preferred_cuisines(session, resident_id)}
    store_ids = {store_id for _, store_id in rels if store_id is not None}
    if store_ids:
        circles = session.scalars(select(Store.circle_id).where(Store.id.in_(store_ids)).distinct())
        keys |= {circle_key(circle_id) for circle_id in circles}
    return members, keys


def plan_resident_tags(session: Session, resident_id: int) -> bool:
    """Bring the resident's rows in line with ``desired_tags``: new tags wanted, dropped
    ones unwanted (both pending), rows of members no longer in contact deleted (WeCom
    forgets tags with the contact). True when some row waits for WeCom."""
    members, keys = desired_tags(session, resident_id)
    wanted_ids = {row.id for row in corp_tag_rows(session, keys).values()}
    have: dict[int, set[int]] = defaultdict(set)
    for row in session.scalars(select(ResidentTag).where(ResidentTag.resident_id == resident_id)):
        if row.member_id not in members:
            session.delete(row)
            continue
        have[row.member_id].add(row.corp_tag_id)
        want = row.corp_tag_id in wanted_ids
        if row.wanted != want:
            row.wanted, row.synced_at, row.attempts, row.last_error = want, None, 0, None
    for member_id in members:
        for corp_tag_id in sorted(wanted_ids - have[member_id]):
            try:
                with session.begin_nested():
                    session.add(ResidentTag(resident_id=resident_id, member_id=member_id, corp_tag_id=corp_tag_id))
                    session.flush()
            except IntegrityError:  # a racing plan added it
                pass
    session.flush()
    return _has_pending(session, resident_id)


def _has_pending(session: Session, resident_id: int) -> bool:
    return (
        session.scalar(
            select(ResidentTag.id)
            .where(ResidentTag.resident_id == resident_id, ResidentTag.synced_at.is_(None))
            .limit(1)
        )
        is not None
    )


# --------------------------------------------------------------------------- sync


@dataclass(frozen=True)
class _Pending:
    row_id: int
    member_id: int
    userid: str
    corp_tag_id: int
    tag_id: str | None
    wanted: bool


def _pending(session: Session, resident_id: int) -> tuple[str | None, list[_Pending]]:
    external_userid = session.scalar(select(Resident.external_userid).where(Resident.id == resident_id))
    rows = session.execute(
        select(ResidentTag.id, ResidentTag.member_id, Member.userid, ResidentTag.corp_tag_id, CorpTag.tag_id,
               ResidentTag.wanted)
        .join(Member, Member.id == ResidentTag.member_id)
        .join(CorpTag, CorpTag.id == ResidentTag.corp_tag_id)
        .where(ResidentTag.resident_id == resident_id, ResidentTag.synced_at.is_(None))
        .order_by(ResidentTag.member_id, ResidentTag.id)
    ).all()
    return external_userid, [_Pending(*row) for row in rows]


def _mark_synced(session: Session, items: list[_Pending]) -> None:
    """Rows WeCom now matches, unless a plan changed them meanwhile (then they stay pending)."""
    now = utcnow()
    for wanted in (True, False):
        ids = [i.row_id for i in items if i.wanted is wanted]
        if ids:
            session.execute(
                update(ResidentTag)
                .where(ResidentTag.id.in_(ids), ResidentTag.wanted.is_(wanted), ResidentTag.synced_at.is_(None))
                .values(synced_at=now, attempts=0, last_error=None)
                .execution_options(synchronize_session=False)
            )


def _mark_failed(session: Session, items: list[_Pending], error: str) -> None:
    ids = [i.row_id for i in items]
    if ids:
        session.execute(
            update(ResidentTag)
            .where(ResidentTag.id.in_(ids), ResidentTag.synced_at.is_(None))
            .values(attempts=ResidentTag.attempts + 1, last_error=error[:255])
            .execution_options(synchronize_session=False)
        )


def _describe(exc: Exception) -> str:
    if isinstance(exc, WeComError):
        return f"{exc.errcode} {exc.errmsg}"
    return f"{type(exc).__name__}: {exc}"


def sync_resident_tags(resident_id: int) -> str:
    """RQ job: one ``mark_tag`` per member with pending rows (through the throttle), then
    the rows marked synced. Retryable failures (45033, -1, timeouts, a busy throttle) leave
    the rows pending with ``attempts``/``last_error`` and raise ``TagSyncDeferred`` so RQ
    retries; a pair WeCom refuses for good (e.g. 84061) is recorded and skipped."""
    client = _wecom()
    with _redis_lock(f"resident:{resident_id}"):
        with transaction(db.session):
            external_userid, items = _pending(db.session, resident_id)
        if not items or external_userid is None:
            return "nothing pending"
        uncreated = {i.corp_tag_id for i in items if i.wanted and not i.tag_id}
        if uncreated:
            try:
                ensure_corp_tags(client, uncreated)
            except WeComError as exc:
                with transaction(db.session):
                    _mark_failed(db.session, [i for i in items if i.corp_tag_id in uncreated], _describe(exc))
                raise TagSyncDeferred(f"corp tags for resident {resident_id}: {_describe(exc)}") from exc
            with transaction(db.session):
                external_userid, items = _pending(db.session, resident_id)
        by_member: dict[int, list[_Pending]] = defaultdict(list)
        for item in items:
            by_member[item.member_id].append(item)
        done: list[_Pending] = []
        failed: list[tuple[list[_Pending], str]] = []
        deferred: Exception | None = None
        stale = False
        throttle = mark_tag_throttle(client.corp_id)
        uncreated_items = [i for i in items if i.wanted and not i.tag_id]
        if uncreated_items:  # ensure_corp_tags could not place them (logged there)
            failed.append((uncreated_items, "corp tag not created"))
        for group in by_member.values():
            add = [i.tag_id for i in group if i.wanted and i.tag_id]
            remove = [i.tag_id for i in group if not i.wanted and i.tag_id]
            if not add and not remove:  # only removals of tags WeCom never had
                done.extend(i for i in group if not i.wanted)
                continue
            try:
                with throttle.hold(timeout=THROTTLE_WAIT):
                    client.tags.mark(group[0].userid, external_userid, add_tag=add, remove_tag=remove)
            except (WeComError, SemaphoreTimeout) as exc:
                failed.append(([i for i in group if i.tag_id or not i.wanted], _describe(exc)))
                retryable = isinstance(exc, SemaphoreTimeout) or exc.retryable
                stale = stale or (isinstance(exc, WeComError) and exc.errcode == STALE_TAG)
                if retryable or stale:
                    deferred = exc
                    break  # WeCom asked us to slow down: the other members wait for the retry
                log.warning("mark_tag %s/%s refused: %s", group[0].userid, external_userid, exc)
                continue
            done.extend(i for i in group if i.tag_id or not i.wanted)
        with transaction(db.session):
            _mark_synced(db.session, done)
            for group, error in failed:
                _mark_failed(db.session, group, error)
    if stale:
        reconcile_corp_tags(client)
    if deferred is not None:
        raise TagSyncDeferred(f"tags of resident {resident_id} deferred: {_describe(deferred)}")
    return f"synced {len(done)} row(s), {sum(len(g) for g, _ in failed)} refused"


def enqueue_sync(resident_id: int):
    """Queue a sync that RQ retries with backoff while WeCom says "later"."""
    retry = Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS)
    return enqueue(QUEUE_DEFAULT, sync_resident_tags, resident_id, retry=retry)


def refresh_resident_tags(resident_id: int) -> str:
    """RQ job: plan the resident's rows and, if anything changed, sync them."""
    with transaction(db.session):
        pending = plan_resident_tags(db.session, resident_id)
    if pending:
        enqueue_sync(resident_id)
        return "sync queued"
    return "in sync"


def sync_pending_tags(limit: int = 1000) -> int:
    """The sweep (scheduler or CLI, app context): queue a sync for each resident whose rows
    still wait for WeCom; at most one sweep job per resident is queued at a time. Returns
    the number queued."""
    with transaction(db.session):
        resident_ids = list(
            db.session.scalars(
                select(ResidentTag.resident_id)
                .where(ResidentTag.synced_at.is_(None), ResidentTag.attempts < MAX_SWEEP_ATTEMPTS)
                .distinct()
                .order_by(ResidentTag.resident_id)
                .limit(limit)
            )
        )
    queued = 0
    for resident_id in resident_ids:
        try:
            enqueue(QUEUE_DEFAULT, sync_resident_tags, resident_id, job_id=f"tags-sweep-{resident_id}",
                    unique=True, result_ttl=0, failure_ttl=600)
        except DuplicateJobError:
            continue
        queued += 1
    return queued


# --------------------------------------------------------------------------- staff edits


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


def _follow_users(client, external_userid: str) -> list[dict]:
    data = client.customers.get(external_userid)
    users = list(data.get("follow_user") or [])
    while data.get("next_cursor"):
        data = client.customers.get(external_userid, cursor=data["next_cursor"])
        users += data.get("follow_user") or []
    return users


@registry.on("change_external_contact", "edit_external_contact")
def on_edit_external_contact(payload: dict) -> None:
    """A member edited the diner (remark or tags) in the WeCom app: read the tags back."""
    external_userid = payload.get("ExternalUserID") or ""
    with transaction(db.session):
        resident = db.session.scalar(select(Resident).where(Resident.external_userid == external_userid))
        resident_id = resident.id if resident is not None and resident.erased_at is None else None
    if resident_id is None:
        return
    client = _wecom()
    with _redis_lock(f"resident:{resident_id}"):
        try:
            follow_users = _follow_users(client, external_userid)
        except WeComError as exc:
            if exc.errcode in (84061, 40096):  # no longer anyone's contact
                return
            raise
        with transaction(db.session):
            changes = apply_staff_tags(db.session, resident_id, follow_users)
    if changes.added or changes.dropped:
        log.info("staff tags of resident %s: +%s -%s", resident_id, changes.added, changes.dropped)
    if changes.profile_changed:
        signals.taste_changed.send(resident_id=resident_id)  # plans and syncs (restored rows too)
    elif changes.restored:
        enqueue_sync(resident_id)


@registry.on("change_external_tag")
def on_change_external_tag(payload: dict) -> None:
    """The admin created, renamed or deleted corp tags in the console."""
    if payload.get("ChangeType") == "shuffle":  # order only
        return
    for resident_id in sorted(reconcile_corp_tags(_wecom())):
        enqueue_sync(resident_id)


# --------------------------------------------------------------------------- signals in


def record_redeem_signal(coupon_id: int, store_id: int) -> list[str]:
    """RQ job: a redeemed coupon is a redeem signal per cuisine of the store
    (``ref=coupon:<id>``). Skipped if the redemption was reversed before the job ran."""
    with transaction(db.session):
        coupon = db.session.get(Coupon, coupon_id)
        store = db.session.get(Store, store_id)
        if coupon is None or store is None or coupon.resident_id is None or coupon.status != CouponStatus.redeemed:
            return []
        resident = db.session.get(Resident, coupon.resident_id)
        if resident is None or resident.erased_at is not None:
            return []
        cuisines = taste.store_cuisines(store)
        for cuisine in cuisines:
            taste.record_signal(
                db.session, resident.id, cuisine, SignalSource.redeem, ref=f"coupon:{coupon_id}",
                at=coupon.redeemed_at,
            )
        resident_id = resident.id
    if cuisines:
        signals.taste_changed.send(resident_id=resident_id)
    return cuisines


def drop_redeem_signal(coupon_id: int) -> int:
    """RQ job: a reversed redemption is no evidence of taste; its signals go (the coupon may
    be redeemed again later, which records them afresh)."""
    with transaction(db.session):
        rows = db.session.scalars(
            select(TasteSignal).where(
                TasteSignal.source == SignalSource.redeem, TasteSignal.ref == f"coupon:{coupon_id}"
            )
        ).all()
        resident_ids = {r.resident_id for r in rows}
        for row in rows:
            db.session.delete(row)
    for resident_id in resident_ids:
        signals.taste_changed.send(resident_id=resident_id)
    return len(rows)


@signals.taste_changed.connect
def _on_taste_changed(sender, resident_id: int, **_) -> None:
    enqueue(QUEUE_DEFAULT, refresh_resident_tags, resident_id)


@signals.contact_added.connect
def _on_contact_added(sender, resident_id: int, **_) -> None:
    enqueue(QUEUE_DEFAULT, refresh_resident_tags, resident_id)


@signals.contact_closed.connect
def _on_contact_closed(sender, resident_id: int, **_) -> None:
    enqueue(QUEUE_DEFAULT, refresh_resident_tags, resident_id)


@coupon_redeemed.connect
def _on_coupon_redeemed(sender, coupon_id: int, store_id: int, resident_id: int | None = None, **_) -> None:
    if resident_id is not None:
        enqueue(QUEUE_DEFAULT, record_redeem_signal, coupon_id, store_id)


@redemption_reversed.connect
def _on_redemption_reversed(sender, coupon_id: int, resident_id: int | None = None, **_) -> None:
    if resident_id is not None:
        enqueue(QUEUE_DEFAULT, drop_redeem_signal, coupon_id)
