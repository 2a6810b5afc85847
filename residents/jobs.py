"""RQ entry points of the residents domain, over ids: tag planning and sync, the sweep of
pending tags, and taste evidence from redemptions. (Handover jobs are in
``residents.transfers.jobs``.) Each owns its transactions; WeCom is never called inside one.
"""
from __future__ import annotations

from datetime import datetime

from rq import Retry
from rq.exceptions import DuplicateJobError
from sqlalchemy import select

from core.db import db
from core.extensions import QUEUE_DEFAULT, enqueue
from core.txn import transaction
from core.wecom import get_wecom
from coupons.models import Coupon, CouponStatus
from merchants.models import Store
from residents import groups, services, taste
from residents.models import Resident, ResidentTag, SignalSource
from residents.tags import corp, plan, sync
from wecom.client import WeComError

# groupchat/get: the chat is not (or no longer) visible to the app
GROUP_GONE = (40050,)  # the simulator's and WeCom's "chat_id not found"


def sync_resident_tags(resident_id: int) -> str:
    """RQ job: one ``mark_tag`` per member with pending rows (through the throttle), then
    the rows marked synced. Retryable failures (45033, -1, timeouts, a busy throttle) leave
    the rows pending with ``attempts``/``last_error`` and raise ``TagSyncDeferred`` so RQ
    retries; a pair WeCom refuses for good (e.g. 84061) is recorded and skipped."""
    client = get_wecom()
    with corp.redis_lock(f"resident:{resident_id}"):
        with transaction(db.session) as session:
            external_userid, items = sync.pending_rows(session, resident_id)
        if not items or external_userid is None:
            return "nothing pending"
        uncreated = {i.corp_tag_id for i in items if i.wanted and not i.tag_id}
        if uncreated:
            try:
                corp.ensure_corp_tags(client, uncreated)
            except WeComError as exc:
                with transaction(db.session) as session:
                    sync.mark_failed(session, [i for i in items if i.corp_tag_id in uncreated], sync.describe(exc))
                raise corp.TagSyncDeferred(f"corp tags for resident {resident_id}: {sync.describe(exc)}") from exc
            with transaction(db.session) as session:
                external_userid, items = sync.pending_rows(session, resident_id)
        pushed = sync.push(client, external_userid, items)
        with transaction(db.session) as session:
            sync.settle(session, pushed)
    if pushed.stale:
        corp.reconcile_corp_tags(client)
    if pushed.deferred is not None:
        raise corp.TagSyncDeferred(f"tags of resident {resident_id} deferred: {sync.describe(pushed.deferred)}")
    return f"synced {len(pushed.done)} row(s), {pushed.refused} refused"


def enqueue_sync(resident_id: int):
    """Queue a sync that RQ retries with backoff while WeCom says "later"."""
    retry = Retry(max=len(sync.RETRY_INTERVALS), interval=sync.RETRY_INTERVALS)
    return enqueue(QUEUE_DEFAULT, sync_resident_tags, resident_id, retry=retry)


def refresh_resident_tags(resident_id: int) -> str:
    """RQ job: plan the resident's rows and, if anything changed, sync them."""
    with transaction(db.session) as session:
        pending = plan.plan_resident_tags(session, resident_id)
    if pending:
        enqueue_sync(resident_id)
        return "sync queued"
    return "in sync"


def record_add_evidence(resident_id: int, member_id: int, store_id: int, state: str | None, at: str) -> str:
    """RQ job (``default``), queued once the welcome went out: the scan's taste signals and
    the channel's count, then the resident's tags. Kept off the welcome's path: WeCom's
    welcome code lives 20 seconds, the tags have all the time they need."""
    with transaction(db.session) as session:
        cuisines = services.record_add_evidence(
            session, resident_id, member_id, store_id, state, datetime.fromisoformat(at)
        )
    return f"{len(cuisines)} scan signal(s); tags {refresh_resident_tags(resident_id)}"


def sync_group(chat_id: str) -> str:
    """RQ job: re-read one customer group from WeCom (a ``change_external_chat`` event)."""
    client = get_wecom()
    try:
        detail = client.groups.get(chat_id)
    except WeComError as exc:
        if exc.errcode not in GROUP_GONE:
            raise
        with transaction(db.session) as session:
            groups.dismiss_group(session, chat_id)
        return "gone"
    with transaction(db.session) as session:
        group = groups.apply_group(session, detail)
        return f"{group.customer_count} customer(s)"


def sync_all_groups() -> str:
    """Periodic job: every group WeCom lists, each in its own transaction; groups it no longer
    lists are dismissed."""
    client = get_wecom()
    listed: set[str] = set()
    for item in client.groups.iter_chats():
        chat_id = item.get("chat_id")
        if not chat_id:
            continue
        listed.add(chat_id)
        detail = client.groups.get(chat_id)
        with transaction(db.session) as session:
            groups.apply_group(session, detail)
    with transaction(db.session) as session:
        dismissed = groups.dismiss_unlisted(session, listed)
    return f"{len(listed)} group(s), {dismissed} dismissed"


def sync_pending_tags(limit: int = 1000) -> int:
    """The sweep (scheduler or CLI, app context): queue a sync for each resident whose rows
    still wait for WeCom; at most one sweep job per resident is queued at a time. Returns
    the number queued."""
    with transaction(db.session) as session:
        resident_ids = list(
            session.scalars(
                select(ResidentTag.resident_id)
                .where(ResidentTag.synced_at.is_(None), ResidentTag.attempts < sync.MAX_SWEEP_ATTEMPTS)
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


def record_redeem_signal(coupon_id: int, store_id: int) -> list[str]:
    """RQ job: a redeemed coupon is a redeem signal per cuisine of the store
    (``ref=coupon:<id>``). Skipped if the redemption was reversed before the job ran."""
    with transaction(db.session) as session:
        coupon = session.get(Coupon, coupon_id)
        store = session.get(Store, store_id)
        if coupon is None or store is None or coupon.resident_id is None or coupon.status != CouponStatus.redeemed:
            return []
        resident = session.get(Resident, coupon.resident_id)
        if resident is None or resident.erased_at is not None:
            return []
        cuisines = taste.store_cuisines(store)
        for cuisine in cuisines:
            taste.record_signal(
                session, resident.id, cuisine, SignalSource.redeem, ref=f"coupon:{coupon_id}", at=coupon.redeemed_at,
            )
    return cuisines


def drop_redeem_signal(coupon_id: int) -> int:
    """RQ job: a reversed redemption is no evidence of taste; its signals go (the coupon may
    be redeemed again later, which records them afresh)."""
    with transaction(db.session) as session:
        return taste.drop_signals(session, SignalSource.redeem, f"coupon:{coupon_id}")
