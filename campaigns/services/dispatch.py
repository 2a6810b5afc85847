"""Sending and tracking, as rules over the chunk ledger; the jobs (``campaigns.jobs``) make
the WeCom calls between these steps, each step its own transaction.

A chunk goes planned → claimed → submitted → confirmed | partial, or failed / cancelled:

- **claim**: one conditional UPDATE takes a planned chunk, or a claimed one whose lease ran
  out (its worker died or WeCom kept it waiting), with a fresh claim token. Nothing is called
  before the claim is committed, and the row existed since planning.
- **after a takeover** (``Ticket.recover``): the previous holder may have created the task
  and died before storing its msgid. WeCom has no idempotency key for ``add_msg_template``,
  so the job first lists the tasks created since the first claim (``get_groupmsg_list_v2``)
  and matches them by content: every card's link carries the chunk's token. Found, it is
  stored, and any second one cancelled while unconfirmed; not found, it is created.
- **submitted**: stored only under the claim token still held — a worker whose lease was
  taken over while it waited on WeCom learns it lost and cancels its own task.
- **errors**: transient ones (−1, 45009, 45033, HTTP 5xx, timeouts) keep the claim with a
  backoff lease, so the next attempt is a takeover that looks first; refusals fail the chunk,
  count against its campaigns and pause them at ``CAMPAIGN_MAX_SEND_ERRORS``.

listmonk advances its cursor when a batch is fetched (#2278, #2860) and MarketGo marks a row
sent before calling WeCom; here every state is written before the step that depends on it.
"""
from __future__ import annotations

import os
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from campaigns.models import (
    FINAL_CHUNK_STATES,
    OPEN_CHUNK_STATES,
    Campaign,
    CampaignClaim,
    CampaignState,
    ChunkState,
    Delivery,
    DeliveryStatus,
    PlanRound,
    Push,
    SendChunk,
)
from campaigns.services.lifecycle import move
from campaigns.services.planning import card_ids
from core import tally
from core.db import utcnow
from core.errors import Conflict
from core.localtime import local
from coupons.models import Coupon, CouponTemplate
from coupons.services.display import headline
from merchants.models import Member, Merchant, Region, ReviewStatus, Store
from residents.models import CustomerGroup, GroupStatus, Resident

TEXT_MAX_BYTES = 4000  # WeCom: text.content
TITLE_MAX, DESC_MAX = 60, 120  # a link card's title and description, in characters
REMINDS_PER_DAY = 3  # remind_groupmsg_send: per message per 24 h
BACKOFF_MAX = 600  # seconds
# WeCom's per-recipient results (get_groupmsg_send_result)
RESULT_STATUS = {0: DeliveryStatus.unsent, 1: DeliveryStatus.sent, 2: DeliveryStatus.not_contact,
                 3: DeliveryStatus.over_quota}


def lease() -> timedelta:
    return timedelta(seconds=int(current_app.config.get("CAMPAIGN_LEASE_SECONDS", 120)))


def in_quiet_hours(campaign: Campaign, now: datetime) -> bool:
    """Inside the campaign's quiet hours (local wall time; start > end wraps past midnight)."""
    start, end = campaign.quiet_start, campaign.quiet_end
    if start == end:
        return False
    moment = local(now)
    minute = moment.hour * 60 + moment.minute
    return start <= minute < end if start < end else (minute >= start or minute < end)


def _contains(campaign_id: int):
    """SQL: the chunk carries this campaign's card."""
    return (("," + SendChunk.card_set + ",")).like(f"%,{int(campaign_id)},%")


@dataclass(frozen=True)
class Readiness:
    live: list[Campaign]  # whose cards go in the message now, best first
    hold: bool  # wait (a campaign paused, quiet hours, its window not open yet)


def readiness(campaigns: list[Campaign], now: datetime) -> Readiness:
    live = [c for c in campaigns if c.state in (CampaignState.sending, CampaignState.paused) and c.send_until > now]
    hold = any(c.state == CampaignState.paused for c in live) or any(
        in_quiet_hours(c, now) or c.send_from > now for c in live
    )
    return Readiness([c for c in live if c.state == CampaignState.sending], hold)


def _campaigns_of(session: Session, card_set: str, cache: dict[int, Campaign] | None = None) -> list[Campaign]:
    ids = card_ids(card_set)
    cache = cache if cache is not None else {}
    missing = [i for i in ids if i not in cache]
    if missing:
        for c in session.scalars(select(Campaign).where(Campaign.id.in_(missing))):
            cache[c.id] = c
    return [cache[i] for i in ids if i in cache]


def due_chunks(session: Session, now: datetime, limit: int = 500) -> list[int]:
    """Chunks to hand to a send job now: planned (or claimed with a lease run out) in a
    planned round, not queued within a lease, every campaign on them sending, none in quiet
    hours. Marked queued; chunks whose campaigns all ended are cancelled here."""
    stale = now - lease()
    rows = session.scalars(
        select(SendChunk)
        .join(PlanRound, PlanRound.id == SendChunk.round_id)
        .where(
            PlanRound.state == "planned",
            or_(SendChunk.state == ChunkState.planned,
                and_(SendChunk.state == ChunkState.claimed, SendChunk.lease_until < now)),
            or_(SendChunk.enqueued_at.is_(None), SendChunk.enqueued_at < stale),
        )
        .order_by(SendChunk.id)
        .limit(limit)
    ).all()
    cache: dict[int, Campaign] = {}
    due = []
    for chunk in rows:
        ready = readiness(_campaigns_of(session, chunk.card_set, cache), now)
        if ready.hold:
            continue
        if not ready.live and chunk.state == ChunkState.planned:
            cancel_chunk(session, chunk.id, note="its campaigns ended before it was sent")
            continue
        chunk.enqueued_at = now
        due.append(chunk.id)
    session.flush()
    return due


@dataclass(frozen=True)
class Ticket:
    """What a send job needs after claiming: who sends what to whom, and whether it took the
    chunk over from a holder that may already have created the task."""

    chunk_id: int
    claim_token: str
    token: str
    recover: bool
    since: datetime  # the first claim: no task of this chunk can be older
    sender: str
    external_userids: list[str]  # or, for a group chunk, the chat ids
    text: str
    attachments: list[dict]
    card_set: str
    may_send: bool = True  # False: only look for an earlier task (the campaigns ended meanwhile)
    chat_type: str = "single"


def claim(session: Session, chunk_id: int, now: datetime) -> Ticket | None:
    """Take the chunk (None when another worker holds it, it is done, or it must wait)."""
    chunk = session.get(SendChunk, chunk_id)
    if chunk is None or chunk.state not in (ChunkState.planned, ChunkState.claimed):
        return None
    ready = readiness(_campaigns_of(session, chunk.card_set), now)
    if ready.hold:
        return None
    claim_token = secrets.token_hex(8)
    taken = session.execute(
        update(SendChunk)
        .where(SendChunk.id == chunk_id,
               or_(SendChunk.state == ChunkState.planned,
                   and_(SendChunk.state == ChunkState.claimed, SendChunk.lease_until < now)))
        .values(state=ChunkState.claimed, claim_token=claim_token, lease_until=now + lease(),
                attempts=SendChunk.attempts + 1,
                first_claimed_at=func.coalesce(SendChunk.first_claimed_at, now), updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if taken != 1:
        return None
    session.refresh(chunk)
    # a takeover after a call was counted: the task may exist, so the job looks before calling
    recover = chunk.attempts > 1 and chunk.calls > 0
    if not ready.live and not recover:
        cancel_chunk(session, chunk.id, note="its campaigns ended before it was sent")
        return None
    _drop_lost_recipients(session, chunk.id)
    if chunk.chat_type == "group":
        recipients = list(session.scalars(
            select(Delivery.chat_id).where(Delivery.chunk_id == chunk.id, Delivery.status == DeliveryStatus.planned)
            .order_by(Delivery.id)
        ))
    else:
        recipients = list(session.scalars(
            select(Resident.external_userid).join(Delivery, Delivery.resident_id == Resident.id)
            .where(Delivery.chunk_id == chunk.id, Delivery.status == DeliveryStatus.planned)
            .order_by(Resident.id)
        ))
    if not recipients and not recover:
        cancel_chunk(session, chunk.id, note="no recipient left")
        return None
    sender = session.scalar(select(Member.userid).where(Member.id == chunk.member_id))
    text, attachments = compose(session, ready.live, chunk.token) if ready.live else ("", [])
    return Ticket(chunk.id, claim_token, chunk.token, recover, chunk.first_claimed_at or now, sender, recipients,
                  text, attachments, chunk.card_set, may_send=bool(ready.live and recipients),
                  chat_type=chunk.chat_type)


def _drop_lost_recipients(session: Session, chunk_id: int) -> None:
    """Diners who opted out, were erased or lost every relationship since planning, and
    groups dismissed since, get nothing: their deliveries are unsent (and give the slot back)."""
    lost = select(Resident.id).where(
        or_(Resident.opted_out.is_(True), Resident.erased_at.is_not(None), Resident.reachable.is_(False))
    )
    gone = select(CustomerGroup.chat_id).where(CustomerGroup.status != GroupStatus.active)
    session.execute(
        update(Delivery)
        .where(Delivery.chunk_id == chunk_id, Delivery.status == DeliveryStatus.planned,
               or_(Delivery.resident_id.in_(lost), Delivery.chat_id.in_(gone)))
        .values(status=DeliveryStatus.unsent)
        .execution_options(synchronize_session=False)
    )


def base_url() -> str:
    return current_app.config["PUBLIC_BASE_URL"].rstrip("/")


def claim_url(campaign_id: int, token: str) -> str:
    """The link card's target: the campaign's claim page; ``k`` names the chunk (attribution,
    and how a lost task is recognised in WeCom's list)."""
    return f"{base_url()}/m/o/{campaign_id}?k={token}"


def compose(session: Session, campaigns: list[Campaign], token: str) -> tuple[str, list[dict]]:
    """One message for everyone in the chunk: the reason each card is sent, the way to quiet
    us, and one link card per campaign (at most 9)."""
    templates = {}
    ids = [ct.template_id for c in campaigns for ct in c.templates]
    for t in session.scalars(select(CouponTemplate).where(CouponTemplate.id.in_(ids or [-1]))):
        templates[t.id] = t
    owners = owner_names(session, campaigns)
    if len(campaigns) == 1:
        c = campaigns[0]
        text = f"{c.message}\n{_('为什么收到：%(reason)s', reason=c.reason)}"
    else:
        lines = [_("为你挑选了 %(n)d 家店的优惠：", n=len(campaigns))]
        lines += [f"· {owners[c.id]}：{c.reason}" for c in campaigns]
        text = "\n".join(lines)
    text += "\n" + _("不想收到？%(url)s", url=f"{base_url()}/m/quiet")
    while len(text.encode()) > TEXT_MAX_BYTES:
        text = text[:-10]
    cards = []
    for c in campaigns[:9]:
        first = next((templates[ct.template_id] for ct in c.templates if ct.template_id in templates), None)
        title = f"{owners[c.id]} · {headline(first)}" if first else owners[c.id]
        cards.append({"msgtype": "link", "link": {
            "title": title[:TITLE_MAX], "desc": c.reason[:DESC_MAX], "url": claim_url(c.id, token),
        }})
    return text, cards


def owner_names(session: Session, campaigns: list[Campaign]) -> dict[int, str]:
    """Campaign id -> who runs it, as a diner reads it: the merchant's brand (its stores' name,
    not the company's legal one), or 邻里 · the region."""
    merchant_ids = {c.merchant_id for c in campaigns if c.merchant_id}
    legal = dict(session.execute(select(Merchant.id, Merchant.name).where(
        Merchant.id.in_(merchant_ids or {-1}))).all())
    stores: dict[int, list[str]] = {}
    for merchant_id, name in session.execute(select(Store.merchant_id, Store.name).where(
            Store.merchant_id.in_(merchant_ids or {-1}), Store.status == ReviewStatus.approved)):
        stores.setdefault(merchant_id, []).append(name)
    regions = dict(session.execute(select(Region.id, Region.name).where(
        Region.id.in_({c.region_id for c in campaigns if c.region_id} or {-1}))).all())
    return {c.id: (brand(stores.get(c.merchant_id, []), legal.get(c.merchant_id)) if c.merchant_id
                   else _("邻里 · %(region)s", region=regions.get(c.region_id, "")))
            for c in campaigns}


BRANCH_MARKS = "（(·-— "


def brand(store_names: list[str], legal_name: str | None) -> str:
    """What diners know a merchant by: its one store's name, or what its stores' names share
    before the branch ("蜀味小馆（徐家汇店）", "蜀味小馆（静安店）" → "蜀味小馆"); the legal name
    only when the stores share nothing."""
    if len(store_names) == 1:
        return store_names[0]
    if store_names:
        shared = os.path.commonprefix(store_names).rstrip(BRANCH_MARKS)
        if len(shared) >= 2:
            return shared
    return legal_name or ""


def matching_msgids(group_msg_list: list[dict], token: str) -> list[str]:
    """The tasks in a ``get_groupmsg_list_v2`` page whose cards carry this chunk's token."""
    marker = f"k={token}"
    found = []
    for item in group_msg_list:
        for attachment in item.get("attachments") or []:
            link = attachment.get("link") or {}
            if marker in str(link.get("url", "")):
                found.append(item["msgid"])
                break
    return found


def note_call(session: Session, ticket: Ticket, now: datetime) -> bool:
    """Count the call about to be made, under our claim (False: the claim was taken over)."""
    return session.execute(
        update(SendChunk)
        .where(SendChunk.id == ticket.chunk_id, SendChunk.claim_token == ticket.claim_token,
               SendChunk.state == ChunkState.claimed)
        .values(calls=SendChunk.calls + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount == 1


def record_submitted(session: Session, ticket: Ticket, msgid: str, fail_list: list[str], now: datetime) -> bool:
    """Store the task's msgid under our claim; False if another worker holds the chunk now
    (the caller then withdraws its own task)."""
    done = session.execute(
        update(SendChunk)
        .where(SendChunk.id == ticket.chunk_id, SendChunk.claim_token == ticket.claim_token,
               SendChunk.state == ChunkState.claimed)
        .values(state=ChunkState.submitted, msgid=msgid, submitted_at=now, lease_until=None, errcode=None,
                error="", updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    if done and fail_list:
        _set_status(session, ticket.chunk_id, {ext: DeliveryStatus.not_contact for ext in fail_list})
    return done


def record_error(session: Session, ticket: Ticket, errcode: int, message: str, *, transient: bool,
                 now: datetime) -> str:
    """A failed attempt. Transient: the claim stays with a backoff lease (the next attempt
    looks in WeCom first). Otherwise the chunk failed and its campaigns count the error."""
    chunk = session.get(SendChunk, ticket.chunk_id)
    if chunk is None or chunk.claim_token != ticket.claim_token or chunk.state != ChunkState.claimed:
        return "lost"
    chunk.errcode, chunk.error = errcode, message[:300]
    if transient:
        chunk.lease_until = now + timedelta(seconds=min(BACKOFF_MAX, 5 * 2 ** min(chunk.attempts, 7)))
        chunk.enqueued_at = None
        session.flush()
        return "retry"
    chunk.state, chunk.lease_until = ChunkState.failed, None
    status = DeliveryStatus.not_contact if errcode == 41048 else DeliveryStatus.unsent
    session.execute(
        update(Delivery).where(Delivery.chunk_id == chunk.id, Delivery.status == DeliveryStatus.planned)
        .values(status=status).execution_options(synchronize_session=False)
    )
    limit = int(current_app.config.get("CAMPAIGN_MAX_SEND_ERRORS", 5))
    for campaign_id in card_ids(chunk.card_set):
        session.execute(update(Campaign).where(Campaign.id == campaign_id)
                        .values(send_errors=Campaign.send_errors + 1).execution_options(synchronize_session=False))
        errors, state = session.execute(
            select(Campaign.send_errors, Campaign.state).where(Campaign.id == campaign_id)).one()
        if errors >= limit and state == CampaignState.sending:
            try:
                move(session, campaign_id, CampaignState.paused, note=f"paused after {errors} send errors",
                     expect=CampaignState.sending)
            except Conflict:
                pass
    session.flush()
    return "failed"


def cancel_chunk(session: Session, chunk_id: int, note: str = "") -> None:
    """The chunk will not (or no longer) be sent: its planned deliveries give their slots back."""
    session.execute(
        update(SendChunk).where(SendChunk.id == chunk_id, SendChunk.state.not_in(FINAL_CHUNK_STATES))
        .values(state=ChunkState.cancelled, lease_until=None, error=note[:300], updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Delivery).where(Delivery.chunk_id == chunk_id, Delivery.status == DeliveryStatus.planned)
        .values(status=DeliveryStatus.unsent).execution_options(synchronize_session=False)
    )


# --------------------------------------------------------------------------- tracking


def due_for_tracking(session: Session, now: datetime, limit: int = 500) -> list[int]:
    every = timedelta(seconds=int(current_app.config.get("CAMPAIGN_TRACK_SECONDS", 60)))
    rows = session.scalars(
        select(SendChunk).where(
            SendChunk.state == ChunkState.submitted,
            or_(SendChunk.tracked_at.is_(None), SendChunk.tracked_at < now - every),
        ).order_by(SendChunk.id).limit(limit)
    ).all()
    for chunk in rows:
        chunk.tracked_at = now  # queued: the next look comes a period later
    session.flush()
    return [c.id for c in rows]


@dataclass(frozen=True)
class Tracking:
    chunk_id: int
    msgid: str
    sender: str
    expired: bool  # every campaign on it ended: withdraw the task if still unconfirmed
    remind: bool  # the member has waited long enough for a reminder (within WeCom's limit)


def tracking(session: Session, chunk_id: int, now: datetime) -> Tracking | None:
    chunk = session.get(SendChunk, chunk_id)
    if chunk is None or chunk.state != ChunkState.submitted or not chunk.msgid:
        return None
    campaigns = _campaigns_of(session, chunk.card_set)
    expired = not any(c.state not in (CampaignState.cancelled, CampaignState.done) and c.send_until > now
                      for c in campaigns)
    after = timedelta(minutes=int(current_app.config.get("CAMPAIGN_REMIND_AFTER_MINUTES", 120)))
    recent = [t for t in (chunk.reminders or []) if t > now.timestamp() - 86400]
    last = max(recent, default=chunk.submitted_at.timestamp() if chunk.submitted_at else now.timestamp())
    remind = len(recent) < REMINDS_PER_DAY and now.timestamp() - last >= after.total_seconds()
    sender = session.scalar(select(Member.userid).where(Member.id == chunk.member_id))
    return Tracking(chunk.id, chunk.msgid, sender, expired, remind)


def record_results(session: Session, chunk_id: int, results: dict[str, tuple[int, int | None]], now: datetime) -> None:
    """The member sent it: each recipient's WeCom status (external_userid -> (status,
    send_time)); the chunk is confirmed when all got it, partial otherwise."""
    statuses = {ext: RESULT_STATUS.get(status, DeliveryStatus.unsent) for ext, (status, _t) in results.items()}
    _set_status(session, chunk_id, statuses, sent_at=now)
    # anyone WeCom did not list was not sent
    session.execute(
        update(Delivery).where(Delivery.chunk_id == chunk_id, Delivery.status == DeliveryStatus.planned)
        .values(status=DeliveryStatus.unsent).execution_options(synchronize_session=False)
    )
    all_sent = statuses and all(s == DeliveryStatus.sent for s in statuses.values()) and not session.scalar(
        select(func.count()).select_from(Delivery).where(
            Delivery.chunk_id == chunk_id, Delivery.status != DeliveryStatus.sent)
    )
    chunk = session.get(SendChunk, chunk_id)
    chunk.state = ChunkState.confirmed if all_sent else ChunkState.partial
    chunk.tracked_at = now
    session.flush()


def _set_status(session: Session, chunk_id: int, statuses: dict[str, DeliveryStatus],
                sent_at: datetime | None = None) -> None:
    if not statuses:
        return
    by_status: dict[DeliveryStatus, list[int]] = {}
    answered: Counter = Counter()  # (metric, local day) of messages WeCom has just answered for
    rows = session.execute(
        select(Delivery.id, func.coalesce(Resident.external_userid, Delivery.chat_id), Delivery.status,
               Delivery.local_day)
        .outerjoin(Resident, Resident.id == Delivery.resident_id)
        .where(Delivery.chunk_id == chunk_id)
    ).all()
    for delivery_id, key, old, day in rows:  # a diner's external_userid, or a group's chat_id
        if key in statuses:
            new = statuses[key]
            by_status.setdefault(new, []).append(delivery_id)
            if old == DeliveryStatus.planned and new == DeliveryStatus.sent and sent_at is not None:
                answered["pushes_delivered", local(sent_at).date()] += 1
            elif old == DeliveryStatus.planned and new == DeliveryStatus.over_quota:
                answered["pushes_over_quota", day] += 1
    if answered:
        # every card of the message is a push of its campaign
        campaigns = card_ids(session.get(SendChunk, chunk_id).card_set)
        tally.count_many(session, [(day, {"campaign_id": c}, {metric: n})
                                   for (metric, day), n in sorted(answered.items()) for c in campaigns])
    for status, ids in by_status.items():
        values: dict = {"status": status}
        if status == DeliveryStatus.sent and sent_at is not None:
            # WeCom counts the message on the day it went out, which may be after the planned day
            values.update(sent_at=sent_at, local_day=local(sent_at).date())
        for start in range(0, len(ids), 1000):
            session.execute(update(Delivery).where(Delivery.id.in_(ids[start:start + 1000])).values(**values)
                            .execution_options(synchronize_session=False))


def record_pending(session: Session, chunk_id: int, now: datetime, *, reminded: bool) -> None:
    chunk = session.get(SendChunk, chunk_id)
    chunk.tracked_at = now
    if reminded:
        chunk.reminders = [t for t in (chunk.reminders or []) if t > now.timestamp() - 86400] + [now.timestamp()]
    session.flush()


# --------------------------------------------------------------------------- campaign states


def advance(session: Session, now: datetime) -> list[tuple[int, str]]:
    """Move campaigns along as their chunks do: planning → sending once their round is
    planned, sending → tracking once none of their chunks waits to be sent, tracking → done
    once every chunk is settled. Returns the moves made."""
    moves = []
    rows = session.execute(
        select(Campaign.id, Campaign.state, Campaign.round_id, PlanRound.state)
        .join(PlanRound, PlanRound.id == Campaign.round_id)
        .where(Campaign.state.in_((CampaignState.planning, CampaignState.sending, CampaignState.tracking)))
    ).all()
    for campaign_id, state, round_id, round_state in rows:
        if round_state != "planned":
            continue
        chunks = select(func.count()).select_from(SendChunk).where(SendChunk.round_id == round_id,
                                                                   _contains(campaign_id))
        try:
            if state == CampaignState.planning:
                state = move(session, campaign_id, CampaignState.sending, note="planned", expect=state)
                moves.append((campaign_id, "sending"))
            if state == CampaignState.sending and not session.scalar(
                chunks.where(SendChunk.state.in_(OPEN_CHUNK_STATES))
            ):
                state = move(session, campaign_id, CampaignState.tracking, note="every task handed to WeCom",
                             expect=state)
                moves.append((campaign_id, "tracking"))
            if state == CampaignState.tracking and not session.scalar(
                chunks.where(SendChunk.state.not_in(FINAL_CHUNK_STATES))
            ):
                move(session, campaign_id, CampaignState.done, note="every task settled", expect=state)
                moves.append((campaign_id, "done"))
        except Conflict:
            continue
    return moves


@dataclass(frozen=True)
class Progress:
    planned: int  # residents whose digest carries the campaign's card
    tasks: int  # WeCom tasks created
    tasks_min: int  # the fewest possible for its round
    calls: int  # add_msg_template calls made
    confirmed: int  # tasks their members sent
    delivered: int  # residents WeCom delivered to
    not_delivered: int  # not a contact, over quota, left unsent
    outbid: int
    capped: int
    excluded: int  # opted out, unreachable, erased
    claimed: int  # coupons diners claimed from its cards
    redeemed: int  # of those, redeemed at the store

    def stages(self) -> list[tuple[str, int]]:
        """The progress bar, in order."""
        return [("planned", self.planned), ("tasks", self.tasks), ("confirmed", self.confirmed),
                ("delivered", self.delivered), ("claimed", self.claimed), ("redeemed", self.redeemed)]


def progress(session: Session, campaign: Campaign) -> Progress:
    """The progress bar's numbers, counted from the ledgers."""
    decisions = dict(session.execute(
        select(Push.decision, func.count()).where(Push.campaign_id == campaign.id).group_by(Push.decision)
    ).all())
    delivered = dict(session.execute(
        select(Delivery.status, func.count()).join(Push, Push.delivery_id == Delivery.id)
        .where(Push.campaign_id == campaign.id).group_by(Delivery.status)
    ).all())
    chunks = select(SendChunk).where(SendChunk.round_id == (campaign.round_id or -1), _contains(campaign.id)).subquery()
    tasks, calls, confirmed = session.execute(
        select(func.count(chunks.c.msgid), func.coalesce(func.sum(chunks.c.calls), 0),
               func.count().filter(chunks.c.state.in_((ChunkState.confirmed, ChunkState.partial))))
    ).one()
    tasks_min = session.scalar(select(PlanRound.min_calls).where(PlanRound.id == campaign.round_id)) or 0
    claimed, redeemed = session.execute(
        select(func.count(), func.count(Coupon.redeemed_at)).select_from(CampaignClaim)
        .join(Coupon, Coupon.id == CampaignClaim.coupon_id).where(CampaignClaim.campaign_id == campaign.id)
    ).one()
    by = {d.value: n for d, n in decisions.items()}
    st = {s.value: n for s, n in delivered.items()}
    return Progress(
        planned=by.get("matched", 0), tasks=tasks, tasks_min=tasks_min, calls=calls, confirmed=confirmed,
        delivered=st.get("sent", 0),
        not_delivered=st.get("not_contact", 0) + st.get("over_quota", 0) + st.get("unsent", 0),
        outbid=by.get("outbid", 0), capped=by.get("capped", 0),
        excluded=by.get("opted_out", 0) + by.get("unreachable", 0) + by.get("erased", 0),
        claimed=claimed, redeemed=redeemed,
    )
