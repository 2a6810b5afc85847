"""Sync to WeCom: a resident's pending ``ResidentTag`` rows become one ``mark_tag`` per
member, each through the per-corp semaphore (WeCom answers 45033 beyond a handful of
concurrent tag writes, and our processes can't see each other). ``push`` only talks to
WeCom; the session functions read and settle the rows around it."""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.db import utcnow
from core.extensions import get_redis
from core.semaphore import Semaphore, SemaphoreTimeout
from merchants.models import Member
from residents.models import CorpTag, Resident, ResidentTag
from wecom.client import WeComError

log = logging.getLogger(__name__)

# RQ retries of a failed sync (seconds); after that the sweep takes over.
RETRY_INTERVALS = [15, 60, 300, 900, 3600]
# The sweep gives up on rows that failed this often (they keep last_error for a human).
MAX_SWEEP_ATTEMPTS = 20
THROTTLE_WAIT = 30.0  # seconds a sync waits for a free mark_tag slot before deferring
STALE_TAG = 40068  # invalid tag id: someone deleted our tag in the admin console


def mark_tag_throttle(corp_id: str) -> Semaphore:
    """The per-corp semaphore every ``mark_tag`` goes through."""
    cfg = current_app.config
    return Semaphore(
        get_redis(),
        f"wecom:{corp_id}:mark_tag",
        int(cfg.get("WECOM_TAG_CONCURRENCY", 2)),
        lease=float(cfg.get("WECOM_TAG_LEASE", 60.0)),
    )


@dataclass(frozen=True)
class Pending:
    row_id: int
    member_id: int
    userid: str
    corp_tag_id: int
    tag_id: str | None
    wanted: bool


def pending_rows(session: Session, resident_id: int) -> tuple[str | None, list[Pending]]:
    """The resident's external_userid and rows still waiting for WeCom, by member."""
    external_userid = session.scalar(select(Resident.external_userid).where(Resident.id == resident_id))
    rows = session.execute(
        select(ResidentTag.id, ResidentTag.member_id, Member.userid, ResidentTag.corp_tag_id, CorpTag.tag_id,
               ResidentTag.wanted)
        .join(Member, Member.id == ResidentTag.member_id)
        .join(CorpTag, CorpTag.id == ResidentTag.corp_tag_id)
        .where(ResidentTag.resident_id == resident_id, ResidentTag.synced_at.is_(None))
        .order_by(ResidentTag.member_id, ResidentTag.id)
    ).all()
    return external_userid, [Pending(*row) for row in rows]


def mark_synced(session: Session, items: list[Pending]) -> None:
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


def mark_failed(session: Session, items: list[Pending], error: str) -> None:
    ids = [i.row_id for i in items]
    if ids:
        session.execute(
            update(ResidentTag)
            .where(ResidentTag.id.in_(ids), ResidentTag.synced_at.is_(None))
            .values(attempts=ResidentTag.attempts + 1, last_error=error[:255])
            .execution_options(synchronize_session=False)
        )


def describe(exc: Exception) -> str:
    if isinstance(exc, WeComError):
        return f"{exc.errcode} {exc.errmsg}"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class Pushed:
    """What ``push`` achieved: rows WeCom now matches, groups it refused (with the error),
    and why it stopped early, if it did."""

    done: list[Pending] = field(default_factory=list)
    failed: list[tuple[list[Pending], str]] = field(default_factory=list)
    deferred: Exception | None = None  # WeCom or the throttle said "later"
    stale: bool = False  # one of our tag ids is gone in WeCom (40068): reconcile

    @property
    def refused(self) -> int:
        return sum(len(g) for g, _ in self.failed)


def push(client, external_userid: str, items: list[Pending]) -> Pushed:
    """One ``mark_tag`` per member with pending rows, each through the throttle. Retryable
    failures (45033, -1, timeouts, a busy throttle) and a stale tag stop the round: the other
    members wait for the retry. A pair WeCom refuses for good (e.g. 84061) is recorded and
    skipped. Talks to WeCom only; no database."""
    by_member: dict[int, list[Pending]] = defaultdict(list)
    for item in items:
        by_member[item.member_id].append(item)
    out = Pushed()
    throttle = mark_tag_throttle(client.corp_id)
    uncreated_items = [i for i in items if i.wanted and not i.tag_id]
    if uncreated_items:  # ensure_corp_tags could not place them (logged there)
        out.failed.append((uncreated_items, "corp tag not created"))
    for group in by_member.values():
        add = [i.tag_id for i in group if i.wanted and i.tag_id]
        remove = [i.tag_id for i in group if not i.wanted and i.tag_id]
        if not add and not remove:  # only removals of tags WeCom never had
            out.done.extend(i for i in group if not i.wanted)
            continue
        try:
            with throttle.hold(timeout=THROTTLE_WAIT):
                client.tags.mark(group[0].userid, external_userid, add_tag=add, remove_tag=remove)
        except (WeComError, SemaphoreTimeout) as exc:
            out.failed.append(([i for i in group if i.tag_id or not i.wanted], describe(exc)))
            retryable = isinstance(exc, SemaphoreTimeout) or exc.retryable
            out.stale = out.stale or (isinstance(exc, WeComError) and exc.errcode == STALE_TAG)
            if retryable or out.stale:
                out.deferred = exc
                break  # WeCom asked us to slow down: the other members wait for the retry
            log.warning("mark_tag %s/%s refused: %s", group[0].userid, external_userid, exc)
            continue
        out.done.extend(i for i in group if i.tag_id or not i.wanted)
    return out


def settle(session: Session, pushed: Pushed) -> None:
    """Record ``push``'s outcome on the rows."""
    mark_synced(session, pushed.done)
    for group, error in pushed.failed:
        mark_failed(session, group, error)
