"""The corp-tag catalogue: our ``CorpTag`` rows (one per cuisine and business circle) and
their ids in WeCom's tag list. ``ensure_corp_tags`` and ``reconcile_corp_tags`` call WeCom
between their own short transactions, so they are workflows for jobs and handlers, not
session services."""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import db, utcnow
from core.extensions import get_redis
from core.semaphore import Lease, Semaphore, SemaphoreTimeout
from core.txn import transaction
from merchants.models import CUISINES, Region, RegionLevel
from residents.models import CorpTag, ResidentTag
from wecom.client import WeComError

log = logging.getLogger(__name__)

CUISINE_GROUP = "口味偏好"
CIRCLE_GROUP = "商圈"
CUISINE_PREFIX = "cuisine:"
CIRCLE_PREFIX = "circle:"
TAG_NAME_MAX = 30  # WeCom: tag and group names ≤ 30 characters

LOCK_TIMEOUT = 300  # a resident lock dies with its holder after this many seconds
LOCK_WAIT = 60


class TagSyncDeferred(RuntimeError):
    """WeCom (or the throttle) said "later"; the rows stay pending and the job is retried."""


def cuisine_key(code: str) -> str:
    return f"{CUISINE_PREFIX}{code}"


def circle_key(region_id: int) -> str:
    return f"{CIRCLE_PREFIX}{region_id}"


def redis_lock(name: str) -> Lease:
    """One holder at a time across processes (a one-slot ``core.semaphore.Semaphore``); use it in
    ``with``. Still busy after ``LOCK_WAIT``: ``TagSyncDeferred``."""
    try:
        return Semaphore(get_redis(), f"tags:{name}", 1, lease=LOCK_TIMEOUT).acquire(timeout=LOCK_WAIT)
    except SemaphoreTimeout:
        raise TagSyncDeferred(f"lock {name} busy") from None


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
    with redis_lock("ensure"):
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
