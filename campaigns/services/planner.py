"""The planner's decisions, as plain functions over plain data (the plan job feeds them from SQL
in batches and stores what they decide).

Campaigns whose windows overlap compete for the same residents. One message to a resident is
one slot of every cap, and it can carry up to ``MAX_CARDS`` link cards from different
merchants: so a resident with a slot left gets **one digest** holding the best of the campaigns
that want them, and a resident with no slot left gets nothing (``capped``).

Where a resident is wanted by more merchants than a digest holds, cards are scarce. Each
merchant then gets at most its share of the scarce cards — proportional to how many of those
residents it competes for — in a draft: the merchant least served against its share picks
next, taking the resident most interested in it who still has room. Cards nobody could take
within their share go, in a second pass, to the next best (no card is wasted to keep a
share). A campaign that wanted a resident and lost is ``outbid``.

One WeCom call (``add_msg_template``) carries one identical message from one member to at
most ``MAX_RECIPIENTS`` customers, so residents who get the same cards through the same sending
member share a task; the fewest calls possible is the sum over (member, card set) of
⌈recipients / 10,000⌉, and ``chunks`` produces exactly that many.
"""
from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

MAX_CARDS = 9  # link cards in one message
MAX_RECIPIENTS = 10_000  # customers in one add_msg_template call

MATCHED, OUTBID, CAPPED = "matched", "outbid", "capped"


@dataclass(frozen=True)
class Candidate:
    """Campaign ``campaign_id`` (of ``merchant_id``) wants ``resident_id`` with ``score``."""

    resident_id: int
    campaign_id: int
    merchant_id: int
    score: float


@dataclass
class Plan:
    decisions: dict[tuple[int, int], str] = field(default_factory=dict)  # (resident, campaign) -> reason
    digests: dict[int, tuple[int, ...]] = field(default_factory=dict)  # resident -> campaign ids, best first

    def reason(self, resident_id: int, campaign_id: int) -> str | None:
        return self.decisions.get((resident_id, campaign_id))


def plan(candidates: Iterable[Candidate], slots: dict[int, int], *, max_cards: int = MAX_CARDS) -> Plan:
    """Decide every candidate: ``matched`` (in the resident's digest), ``outbid`` or ``capped``.

    ``slots``: messages each resident may still receive (missing = 0). At most one card per
    merchant per digest (a merchant's best campaign for that resident). Deterministic: ties
    go to the lower campaign id."""
    result = Plan()
    wants: dict[int, dict[int, Candidate]] = defaultdict(dict)  # resident -> merchant -> best candidate
    for c in candidates:
        if slots.get(c.resident_id, 0) <= 0:
            result.decisions[(c.resident_id, c.campaign_id)] = CAPPED
            continue
        best = wants[c.resident_id].get(c.merchant_id)
        if best is None or _key(c) < _key(best):
            if best is not None:
                result.decisions[(best.resident_id, best.campaign_id)] = OUTBID  # its own merchant's better one
            wants[c.resident_id][c.merchant_id] = c
        else:
            result.decisions[(c.resident_id, c.campaign_id)] = OUTBID

    chosen: dict[int, list[Candidate]] = {}
    scarce: list[Candidate] = []
    for resident_id, by_merchant in wants.items():
        if len(by_merchant) <= max_cards:
            chosen[resident_id] = list(by_merchant.values())
        else:
            chosen[resident_id] = []
            scarce.extend(by_merchant.values())

    if scarce:
        residents = {c.resident_id for c in scarce}
        demand: dict[int, int] = defaultdict(int)
        for c in scarce:
            demand[c.merchant_id] += 1
        total_cards = max_cards * len(residents)
        total_demand = sum(demand.values())
        share = {m: math.ceil(total_cards * d / total_demand) for m, d in demand.items()}
        won: dict[int, int] = defaultdict(int)
        by_merchant: dict[int, list[Candidate]] = defaultdict(list)
        for c in sorted(scarce, key=_key):
            by_merchant[c.merchant_id].append(c)
        taken: set[tuple[int, int]] = set()
        # pass 1, a draft: the merchant least served against its share picks next, taking its
        # most interested resident who still has room
        turn = [(0.0, m) for m in sorted(by_merchant)]
        heapq.heapify(turn)
        cursor = dict.fromkeys(by_merchant, 0)
        while turn:
            _served, m = heapq.heappop(turn)
            queue = by_merchant[m]
            while cursor[m] < len(queue) and len(chosen[queue[cursor[m]].resident_id]) >= max_cards:
                cursor[m] += 1
            if cursor[m] >= len(queue):
                continue  # nobody left with room among this merchant's residents
            c = queue[cursor[m]]
            cursor[m] += 1
            chosen[c.resident_id].append(c)
            taken.add((c.resident_id, c.campaign_id))
            won[m] += 1
            if won[m] < share[m]:
                heapq.heappush(turn, (won[m] / share[m], m))
        # pass 2: cards no one could take within their share go to the next best
        for c in sorted(scarce, key=_key):
            if (c.resident_id, c.campaign_id) in taken:
                continue
            if len(chosen[c.resident_id]) < max_cards:
                chosen[c.resident_id].append(c)
                won[c.merchant_id] += 1
            else:
                result.decisions[(c.resident_id, c.campaign_id)] = OUTBID

    for resident_id, cards in chosen.items():
        cards.sort(key=_key)
        result.digests[resident_id] = tuple(c.campaign_id for c in cards)
        for c in cards:
            result.decisions[(resident_id, c.campaign_id)] = MATCHED
    return result


def _key(c: Candidate) -> tuple[float, int, int]:
    return (-c.score, c.campaign_id, c.resident_id)


@dataclass(frozen=True)
class Chunk:
    member_id: int
    card_set: tuple[int, ...]  # campaign ids, in the digest's order
    number: int  # 0, 1, … within (member, card set)
    recipients: tuple[int, ...]  # resident ids, ascending


def chunks(assignments: Iterable[tuple[int, int, tuple[int, ...]]], *, size: int = MAX_RECIPIENTS) -> Iterator[Chunk]:
    """(resident, sending member, card set) → the tasks to create: one per (member, card set)
    and every ``size`` recipients, numbered from 0 — the chunk ledger's unique key."""
    groups: dict[tuple[int, tuple[int, ...]], list[int]] = defaultdict(list)
    for resident_id, member_id, card_set in assignments:
        groups[(member_id, card_set)].append(resident_id)
    for (member_id, card_set), residents in sorted(groups.items()):
        residents.sort()
        for number, start in enumerate(range(0, len(residents), size)):
            yield Chunk(member_id, card_set, number, tuple(residents[start:start + size]))


def minimum_calls(assignments: Iterable[tuple[int, int, tuple[int, ...]]], *, size: int = MAX_RECIPIENTS) -> int:
    """Σ over (member, card set) of ⌈recipients / size⌉: no plan can make fewer calls."""
    counts: dict[tuple[int, tuple[int, ...]], int] = defaultdict(int)
    for _resident, member_id, card_set in assignments:
        counts[(member_id, card_set)] += 1
    return sum(math.ceil(n / size) for n in counts.values())
