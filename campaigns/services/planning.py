"""The plan job's rules: the campaigns due at one clock tick become one round, and the round
walks the residents by id in batches up to a bound frozen when it opened (keyset pagination:
never the whole audience in memory, and diners who arrive meanwhile wait for the next round).

Each batch asks every campaign's audience query about its id range, lets the planner decide
(``planner.plan``: one digest per resident with a slot, fair between merchants), and stores in
one transaction every decision (``pushes``), the messages (``deliveries``), the chunks they
fill (one per sending member and card set, 10,000 recipients each) and the cursor. A planner
killed mid-walk loses only its open transaction: the next run resumes after the cursor, and
the unique keys refuse anything decided twice.
"""
from __future__ import annotations

import math
import secrets
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from campaigns.models import (
    COUNTING,
    Campaign,
    CampaignState,
    Channels,
    ChunkState,
    Decision,
    Delivery,
    PlanRound,
    Push,
    SendChunk,
)
from campaigns.services import audience, budget, planner
from campaigns.services.lifecycle import move
from core import tally
from core.errors import Conflict
from coupons.models import Coupon, CouponTemplate
from merchants.models import Store
from residents import taste
from residents.models import (
    ContactRelationship,
    CustomerGroup,
    GroupStatus,
    RelationshipStatus,
    Resident,
    ResidentTaste,
)

BATCH = 5_000  # resident ids per batch (one transaction)
REDEEMED_BONUS, REDEEMED_MAX = 0.5, 3  # interest added per past redemption at the merchant


def card_key(card_set: tuple[int, ...]) -> str:
    return ",".join(str(c) for c in card_set)


def card_ids(key: str) -> list[int]:
    return [int(c) for c in key.split(",") if c]


def open_round(session: Session, now: datetime) -> PlanRound | None:
    """The scheduled campaigns whose window is open now, moved to planning together in a new
    round (None when none is due). Two clocks racing move each campaign once: the loser's
    conditional UPDATE finds it no longer scheduled."""
    due = session.scalars(
        select(Campaign.id).where(
            Campaign.state == CampaignState.scheduled, Campaign.send_from <= now, Campaign.send_until > now
        ).order_by(Campaign.id)
    ).all()
    if not due:
        return None
    upper = session.scalar(select(func.coalesce(func.max(Resident.id), 0)))
    round_ = PlanRound(upper_id=upper, cursor_id=0, local_day=budget.local_day(now), started_at=now, heartbeat_at=now)
    session.add(round_)
    session.flush()
    moved = 0
    for campaign_id in due:
        try:
            move(session, campaign_id, CampaignState.planning, note=f"round {round_.id}", expect=CampaignState.scheduled)
        except Conflict:
            continue
        session.execute(update(Campaign).where(Campaign.id == campaign_id).values(round_id=round_.id))
        moved += 1
    if not moved:
        session.delete(round_)
        return None
    return round_


@dataclass
class _Scope:
    campaign: Campaign
    fairness_key: int  # the merchant, or (negative) the region for a platform campaign
    cuisines: tuple[str, ...]  # what its coupons are: the rule's cuisines, else its stores'
    merchant_ids: frozenset[int]  # whose stores its cards are redeemed at (sending member's store first)
    store_ids: list[int]  # the approved stores whose contacts it may reach


def _scopes(session: Session, round_id: int, cache: dict | None = None) -> list[_Scope]:
    """The round's campaigns with what the walk needs of each; ``cache`` (one job's) keeps the
    per-campaign facts across batches, the campaign rows are read fresh every batch."""
    # a pause holds the sending, not the decisions: paused campaigns are planned with the rest
    campaigns = session.scalars(
        select(Campaign).where(
            Campaign.round_id == round_id, Campaign.state.in_((CampaignState.planning, CampaignState.paused))
        ).order_by(Campaign.id)
    ).all()
    cache = cache if cache is not None else {}
    scopes = []
    for c in campaigns:
        facts = cache.get(c.id)
        if facts is None:
            rule = audience.AudienceRule.from_dict(c.audience)
            store_ids = audience.scope_store_ids(session, c, rule)
            store_cuisines = session.scalars(select(Store.cuisines).where(Store.id.in_(store_ids or [-1]))).all()
            cuisines = tuple(rule.cuisines) or tuple(dict.fromkeys(x for cs in store_cuisines for x in (cs or [])))
            template_merchants = session.scalars(
                select(CouponTemplate.merchant_id).where(CouponTemplate.id.in_([t.template_id for t in c.templates]))
            ).all()
            facts = cache[c.id] = (c.merchant_id if c.merchant_id is not None else -(c.region_id or 0), cuisines,
                                   frozenset(template_merchants), store_ids)
        scopes.append(_Scope(c, *facts))
    return scopes


def plan_batch(session: Session, round_id: int, now: datetime, timings: dict[str, float] | None = None,
               batch: int = BATCH, cache: dict | None = None) -> bool:
    """Decide one batch of the round's walk; True once the walk is over (the round is then
    planned: its chunks complete, its campaigns sending). ``timings`` (a benchmark's) adds
    the seconds spent on the audience queries, the planner and the ledger writes."""
    clock = _Clock(timings)
    round_ = session.get(PlanRound, round_id, with_for_update=True)
    if round_ is None or round_.state != "planning":
        return True
    scopes = _scopes(session, round_id, cache)
    low = round_.cursor_id
    if low >= round_.upper_id or not any(s.campaign.channels != Channels.groups for s in scopes):
        finish_round(session, round_, now)
        return True
    high = min(low + batch, round_.upper_id)
    audience.tune_for_counting(session)
    clock.lap("setup")

    decisions: dict[tuple[int, int], Decision] = {}
    eligible: dict[int, list[_Scope]] = defaultdict(list)
    slots: dict[int, int] = {}
    for scope in scopes:
        if scope.campaign.channels == Channels.groups:
            continue  # reaches diners only through their groups (planned when the walk ends)
        for resident_id, reason, _name, left in session.execute(
            audience.classified(session, scope.campaign, now, id_range=(low, high), store_ids=scope.store_ids,
                                planning=True)
        ):
            if reason == audience.ELIGIBLE:
                eligible[resident_id].append(scope)
                slots[resident_id] = min(slots.get(resident_id, left), left)
            else:
                decisions[(resident_id, scope.campaign.id)] = Decision(reason)

    clock.lap("audience")
    scores = _scores(session, eligible, scopes, now, (low, high))
    clock.lap("scores")
    candidates = [
        planner.Candidate(resident_id, scope.campaign.id, scope.fairness_key, scores[(resident_id, scope.campaign.id)])
        for resident_id, wanted in eligible.items() for scope in wanted
    ]
    plan = planner.plan(candidates, slots)
    for key, reason in plan.decisions.items():
        decisions[key] = Decision(reason)

    by_id = {s.campaign.id: s for s in scopes}
    senders = _senders(session, plan.digests, by_id, (low, high))
    clock.lap("plan")
    for resident_id in set(plan.digests) - set(senders):  # their last relationship closed just now
        for campaign_id in plan.digests[resident_id]:
            decisions[(resident_id, campaign_id)] = Decision.unreachable
    delivery_of = _fill_chunks(session, round_, plan.digests, senders)
    rows = [
        {"campaign_id": campaign_id, "resident_id": resident_id, "decision": decision,
         "delivery_id": delivery_of.get(resident_id) if decision == Decision.matched else None,
         "score": scores.get((resident_id, campaign_id), 0.0), "created_at": now}
        for (resident_id, campaign_id), decision in sorted(decisions.items())
    ]
    if rows:
        session.execute(insert(Push.__table__), rows)
        _count_planned(session, rows, now)
    round_.cursor_id, round_.heartbeat_at = high, now
    session.flush()
    clock.lap("ledger")
    if high >= round_.upper_id:
        finish_round(session, round_, now)
        return True
    return False


class _Clock:
    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings, self.last = timings, time.perf_counter()

    def lap(self, phase: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[phase] = self.timings.get(phase, 0.0) + now - self.last
            self.last = now


def _scores(session: Session, eligible: dict[int, list[_Scope]], scopes: list[_Scope], now: datetime,
            id_range: tuple[int, int]) -> dict:
    """Predicted interest of each (resident, campaign): the taste profile's weight for the
    campaign's cuisines (its best match) plus a little for each past redemption at its merchants."""
    if not eligible:
        return {}
    low, high = id_range  # the batch's range, not its ids: no statement with thousands of parameters
    cuisines = {c for s in scopes for c in s.cuisines}
    unit = taste.score_threshold(1.0, now)  # stored scores are at a fixed epoch; this makes them weights
    tastes: dict[int, dict[str, float]] = defaultdict(dict)
    for resident_id, cuisine, score in session.execute(
        select(ResidentTaste.resident_id, ResidentTaste.cuisine, ResidentTaste.score).where(
            ResidentTaste.resident_id > low, ResidentTaste.resident_id <= high,
            ResidentTaste.cuisine.in_(cuisines or {""})
        )
    ):
        tastes[resident_id][cuisine] = score / unit
    redeemed: dict[tuple[int, int], int] = {}
    for resident_id, merchant_id, n in session.execute(
        select(Coupon.resident_id, CouponTemplate.merchant_id, func.count())
        .join(CouponTemplate, CouponTemplate.id == Coupon.template_id)
        .where(Coupon.resident_id > low, Coupon.resident_id <= high, Coupon.redeemed_at.is_not(None))
        .group_by(Coupon.resident_id, CouponTemplate.merchant_id)
    ):
        redeemed[(resident_id, merchant_id)] = n
    out = {}
    for resident_id, wanted in eligible.items():
        profile = tastes.get(resident_id, {})
        for scope in wanted:
            match = max((profile.get(c, 0.0) for c in scope.cuisines), default=0.0)
            visits = sum(redeemed.get((resident_id, m), 0) for m in scope.merchant_ids)
            out[(resident_id, scope.campaign.id)] = round(match + REDEEMED_BONUS * min(visits, REDEEMED_MAX), 4)
    return out


def _senders(session: Session, digests: dict[int, tuple[int, ...]], by_id: dict[int, _Scope],
             id_range: tuple[int, int]) -> dict[int, int]:
    """resident -> the member who sends them the digest: one with an open relationship, whose
    store belongs to the best card's merchant if any, else to another card's, else the latest."""
    if not digests:
        return {}
    rels: dict[int, list[tuple[int, int | None]]] = defaultdict(list)
    for resident_id, member_id, merchant_id in session.execute(
        select(ContactRelationship.resident_id, ContactRelationship.member_id, Store.merchant_id)
        .outerjoin(Store, Store.id == ContactRelationship.store_id)
        .where(ContactRelationship.resident_id > id_range[0], ContactRelationship.resident_id <= id_range[1],
               ContactRelationship.status == RelationshipStatus.open)
        .order_by(ContactRelationship.added_at.desc(), ContactRelationship.id.desc())
    ):
        rels[resident_id].append((member_id, merchant_id))
    out = {}
    for resident_id, card_set in digests.items():
        options = rels.get(resident_id)
        if not options:
            continue  # the relationship closed since the audience query: no digest this round
        choice = options[0][0]
        for campaign_id in reversed(card_set):  # the best card's merchant wins, so it is checked last
            merchants = by_id[campaign_id].merchant_ids
            choice = next((m for m, merchant in options if merchant in merchants), choice)
        out[resident_id] = choice
    return out


def _fill_chunks(session: Session, round_: PlanRound, digests: dict[int, tuple[int, ...]],
                 senders: dict[int, int]) -> dict[int, int]:
    """Deliveries for this batch's digests, added to the round's open chunk of their (member,
    card set) until it holds 10,000, then to a new one: so the round's calls stay the minimum.
    Returns resident -> delivery id."""
    groups: dict[tuple[int, str], list[int]] = defaultdict(list)
    for resident_id, card_set in sorted(digests.items()):
        if resident_id in senders:
            groups[(senders[resident_id], card_key(card_set))].append(resident_id)
    if not groups:
        return {}
    filling = {
        (c.member_id, c.card_set): c
        for c in session.scalars(
            select(SendChunk).where(
                SendChunk.round_id == round_.id, SendChunk.state == ChunkState.filling,
                SendChunk.chat_type == "single", SendChunk.member_id.in_({m for m, _ in groups}),
            )
        )
    }
    numbers = {
        f"{member_id}:{key}": number
        for member_id, key, number in session.execute(
            select(SendChunk.member_id, SendChunk.card_set, func.max(SendChunk.number))
            .where(SendChunk.round_id == round_.id, SendChunk.chat_type == "single",
                   SendChunk.member_id.in_({m for m, _ in groups}))
            .group_by(SendChunk.member_id, SendChunk.card_set)
        )
    }
    delivery_rows = []
    for (member_id, key), residents in sorted(groups.items()):
        chunk = filling.get((member_id, key))
        for resident_id in residents:
            if chunk is None or chunk.size >= planner.MAX_RECIPIENTS:
                if chunk is not None:
                    chunk.state = ChunkState.planned  # full: it may go while the walk goes on
                number = numbers.get(f"{member_id}:{key}")
                number = 0 if number is None else number + 1
                numbers[f"{member_id}:{key}"] = number
                chunk = SendChunk(round_id=round_.id, member_id=member_id, card_set=key, number=number, size=0,
                                  token=secrets.token_urlsafe(12), state=ChunkState.filling)
                session.add(chunk)
                session.flush()
            chunk.size += 1
            delivery_rows.append({"chunk_id": chunk.id, "resident_id": resident_id, "local_day": round_.local_day})
    table = Delivery.__table__
    ids = session.execute(insert(table).returning(table.c.resident_id, table.c.id), delivery_rows).all()
    return dict(ids)


MAX_GROUPS = 2_000  # chat_id_list per add_msg_template call


def plan_groups(session: Session, round_: PlanRound, scopes: list[_Scope]) -> None:
    """Campaigns sent to customer groups (channels ``groups`` or ``both``): each active group
    whose owner is a member, linked to a store the campaign may reach (or, linked to no store,
    to one of its circles), gets one message with the round's cards for it (one per merchant,
    up to 9) while WeCom's per-group quota has room; one task per owner and card set
    (``chat_id_list``, up to 2,000 groups)."""
    wanted = [s for s in scopes if s.campaign.channels in (Channels.groups, Channels.both)]
    if not wanted:
        return
    by_group: dict[int, list[_Scope]] = defaultdict(list)
    groups: dict[int, tuple[str, int]] = {}
    for scope in wanted:
        circles = set(session.scalars(select(Store.circle_id).where(Store.id.in_(scope.store_ids or [-1]))))
        for group_id, chat_id, owner in session.execute(
            select(CustomerGroup.id, CustomerGroup.chat_id, CustomerGroup.owner_member_id).where(
                CustomerGroup.status == GroupStatus.active, CustomerGroup.owner_member_id.is_not(None),
                or_(CustomerGroup.store_id.in_(scope.store_ids or [-1]),
                    and_(CustomerGroup.store_id.is_(None), CustomerGroup.circle_id.in_(circles or {-1}))),
            )
        ):
            groups[group_id] = (chat_id, owner)
            by_group[group_id].append(scope)
    if not groups:
        return
    caps = budget.caps_on(round_.local_day)
    chats = [chat for chat, _owner in groups.values()]
    used = dict(session.execute(
        select(Delivery.chat_id, func.count()).where(
            Delivery.chat_id.in_(chats), Delivery.status.in_(COUNTING),
            Delivery.local_day >= caps.wecom.start, Delivery.local_day < caps.wecom.end,
        ).group_by(Delivery.chat_id)
    ).all())
    decisions: dict[tuple[str, int], Decision] = {}
    assignments: dict[tuple[int, str], list[str]] = defaultdict(list)
    for group_id, scopes_ in sorted(by_group.items()):
        chat_id, owner = groups[group_id]
        if used.get(chat_id, 0) >= caps.wecom.limit:
            decisions.update({(chat_id, s.campaign.id): Decision.capped for s in scopes_})
            continue
        cards, merchants = [], set()
        for scope in sorted(scopes_, key=lambda s: s.campaign.id):
            if scope.fairness_key in merchants or len(cards) >= planner.MAX_CARDS:
                decisions[(chat_id, scope.campaign.id)] = Decision.outbid
                continue
            merchants.add(scope.fairness_key)
            cards.append(scope.campaign.id)
            decisions[(chat_id, scope.campaign.id)] = Decision.matched
        assignments[(owner, card_key(tuple(cards)))].append(chat_id)
    delivery_of: dict[str, int] = {}
    for (owner, key), chat_ids in sorted(assignments.items()):
        for number, start in enumerate(range(0, len(chat_ids), MAX_GROUPS)):
            part = chat_ids[start:start + MAX_GROUPS]
            chunk = SendChunk(round_id=round_.id, member_id=owner, card_set=key, chat_type="group", number=number,
                              size=len(part), token=secrets.token_urlsafe(12), state=ChunkState.filling)
            session.add(chunk)
            session.flush()
            table = Delivery.__table__
            rows = session.execute(insert(table).returning(table.c.chat_id, table.c.id), [
                {"chunk_id": chunk.id, "chat_id": chat, "local_day": round_.local_day} for chat in part
            ]).all()
            delivery_of.update(dict(rows))
    rows = [
        {"campaign_id": campaign_id, "chat_id": chat_id, "decision": decision,
         "delivery_id": delivery_of.get(chat_id) if decision == Decision.matched else None, "score": 0.0,
         "created_at": round_.heartbeat_at}
        for (chat_id, campaign_id), decision in sorted(decisions.items())
    ]
    if rows:
        session.execute(insert(Push.__table__), rows)
        _count_planned(session, rows, round_.heartbeat_at)


def _count_planned(session: Session, rows: list[dict], at: datetime) -> None:
    """The batch's pushes with a message, per campaign, for the statistics."""
    planned = Counter(r["campaign_id"] for r in rows if r["delivery_id"] is not None)
    day = tally.local_day(at)
    tally.count_many(session, [(day, {"campaign_id": c}, {"pushes_planned": n}) for c, n in sorted(planned.items())])


def finish_round(session: Session, round_: PlanRound, now: datetime) -> None:
    """The walk is over: the groups' messages planned, chunks complete, the fewest calls
    possible recorded, campaigns sending."""
    plan_groups(session, round_, _scopes(session, round_.id))
    session.execute(
        update(SendChunk).where(SendChunk.round_id == round_.id, SendChunk.state == ChunkState.filling)
        .values(state=ChunkState.planned).execution_options(synchronize_session=False)
    )
    sizes = session.execute(
        select(SendChunk.chat_type, func.sum(SendChunk.size)).where(SendChunk.round_id == round_.id)
        .group_by(SendChunk.member_id, SendChunk.chat_type, SendChunk.card_set)
    ).all()
    round_.min_calls = sum(math.ceil(n / (MAX_GROUPS if kind == "group" else planner.MAX_RECIPIENTS))
                           for kind, n in sizes if n)
    round_.state, round_.finished_at, round_.heartbeat_at = "planned", now, now
    session.flush()
    for campaign_id in session.scalars(
        select(Campaign.id).where(Campaign.round_id == round_.id, Campaign.state == CampaignState.planning)
    ).all():
        try:
            move(session, campaign_id, CampaignState.sending, note=f"round {round_.id} planned",
                 expect=CampaignState.planning)
        except Conflict:
            continue
