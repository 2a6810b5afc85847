"""The taste profile: evidence (signals) per cuisine, each with a source and a weight that
halves every ``HALF_LIFE_DAYS``. The profile is computed on read, so decay needs no job.

This module is the one sender of ``signals.taste_changed``: whenever evidence is added,
dropped or re-weighted here, the signal is queued on the caller's session and goes out once
per resident after that transaction commits (never on rollback). Seeing the same evidence
again (a replayed event, the survey re-saved unchanged) only refreshes its age and sends
nothing."""
from __future__ import annotations

import math
from datetime import datetime, timezone

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, scoped_session

from core import signals
from core.db import utcnow
from merchants.models import CUISINES
from residents.models import ResidentTaste, SignalSource, TasteSignal

HALF_LIFE_DAYS = 90.0
# How much one piece of evidence says, by source: an answer in the survey is the diner's
# own word; a redemption is money spent; a scan is a single visit; staff tags are hearsay.
SOURCE_WEIGHTS: dict[SignalSource, float] = {
    SignalSource.survey: 3.0,
    SignalSource.redeem: 2.0,
    SignalSource.scan: 1.0,
    SignalSource.staff_tag: 1.5,
}
# A cuisine counts as a preference (and gets a WeCom tag) at this decayed score.
PREFERENCE_THRESHOLD = 0.75
# ``resident_tastes.score`` is the decayed profile expressed at this instant (see ResidentTaste).
SCORE_EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
_MOVED = "residents.taste.moved"  # session.info: (root transaction, resident ids already queued)


def _profile_moved(session: Session | scoped_session, resident_id: int) -> None:
    """Queue ``taste_changed`` for the resident, once per transaction."""
    if isinstance(session, scoped_session):
        session = session()
    txn = session.get_transaction()
    marked = session.info.get(_MOVED)
    if marked is None or marked[0] is not txn:
        marked = session.info[_MOVED] = (txn, set())
    if resident_id not in marked[1]:
        marked[1].add(resident_id)
        signals.send_after_commit(session, signals.taste_changed, resident_id=resident_id)


def _growth(at: datetime) -> float:
    """2^((at − epoch) / half-life): a signal's weight at ``at`` expressed at the epoch."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return math.pow(2.0, (at - SCORE_EPOCH).total_seconds() / 86400.0 / HALF_LIFE_DAYS)


def score_threshold(weight: float, now: datetime | None = None) -> float:
    """The ``resident_tastes.score`` a profile weight of ``weight`` on ``now`` corresponds to."""
    return weight * _growth(now or utcnow())


def rescore(session: Session | scoped_session, resident_id: int) -> None:
    """Rewrite the resident's ``resident_tastes`` rows from their signals (few per resident)."""
    session.flush()
    scores: dict[str, float] = {}
    for weight, observed_at, cuisine in session.execute(
        select(TasteSignal.weight, TasteSignal.observed_at, TasteSignal.cuisine).where(
            TasteSignal.resident_id == resident_id
        )
    ):
        scores[cuisine] = scores.get(cuisine, 0.0) + weight * _growth(observed_at)
    session.execute(delete(ResidentTaste).where(ResidentTaste.resident_id == resident_id))
    session.add_all(ResidentTaste(resident_id=resident_id, cuisine=c, score=v) for c, v in scores.items())
    session.flush()


def store_cuisines(store) -> list[str]:
    """A store's known cuisines, each once, in its own order (one signal each)."""
    return [c for c in dict.fromkeys(store.cuisines or []) if c in CUISINES]


def record_signal(
    session: Session,
    resident_id: int,
    cuisine: str,
    source: SignalSource,
    ref: str = "",
    weight: float | None = None,
    at: datetime | None = None,
) -> TasteSignal:
    """Add one piece of evidence, or refresh it when the same (source, ref) recurs.

    Idempotent per (resident, cuisine, source, ref): a retried callback or a second scan of
    the same store refreshes ``observed_at`` instead of counting twice. New evidence (or a
    new weight) queues ``taste_changed``.
    """
    if cuisine not in CUISINES:
        raise ValueError(f"unknown cuisine {cuisine!r}")
    at = at or utcnow()
    weight = SOURCE_WEIGHTS[source] if weight is None else weight
    signal = session.scalar(
        select(TasteSignal).where(
            TasteSignal.resident_id == resident_id,
            TasteSignal.cuisine == cuisine,
            TasteSignal.source == source,
            TasteSignal.ref == ref,
        )
    )
    if signal is None:
        signal = TasteSignal(
            resident_id=resident_id, cuisine=cuisine, source=source, ref=ref, weight=weight, observed_at=at
        )
        session.add(signal)
        session.flush()
        _profile_moved(session, resident_id)
    else:
        if signal.weight != weight:
            signal.weight = weight
            _profile_moved(session, resident_id)
        signal.observed_at = max(signal.observed_at, at)
    rescore(session, resident_id)
    return signal


def clear_signals(session: Session, resident_id: int, source: SignalSource, keep_refs: set[str] | None = None) -> int:
    """Drop a resident's signals of one source (the survey re-answered, staff untagged)."""
    rows = session.scalars(
        select(TasteSignal).where(TasteSignal.resident_id == resident_id, TasteSignal.source == source)
    ).all()
    dropped = 0
    for row in rows:
        if keep_refs is None or f"{row.cuisine}|{row.ref}" not in keep_refs:
            session.delete(row)
            dropped += 1
    if dropped:
        _profile_moved(session, resident_id)
        rescore(session, resident_id)
    return dropped


def drop_signals(session: Session, source: SignalSource, ref: str) -> int:
    """Drop every resident's signals of one source and ref (a reversed redemption's
    ``coupon:<id>`` is no evidence of taste any more)."""
    rows = session.scalars(select(TasteSignal).where(TasteSignal.source == source, TasteSignal.ref == ref)).all()
    for row in rows:
        session.delete(row)
        _profile_moved(session, row.resident_id)
    for resident_id in {row.resident_id for row in rows}:
        rescore(session, resident_id)
    return len(rows)


def decayed(weight: float, observed_at: datetime, now: datetime) -> float:
    age_days = max((now - observed_at).total_seconds(), 0.0) / 86400.0
    return weight * math.pow(0.5, age_days / HALF_LIFE_DAYS)


def profile(session: Session, resident_id: int, now: datetime | None = None) -> dict[str, float]:
    """Cuisine → decayed score, highest first (from the signals; ``resident_tastes`` holds
    the same numbers for SQL)."""
    now = now or utcnow()
    scores: dict[str, float] = {}
    for signal in session.scalars(select(TasteSignal).where(TasteSignal.resident_id == resident_id)):
        scores[signal.cuisine] = scores.get(signal.cuisine, 0.0) + decayed(signal.weight, signal.observed_at, now)
    return dict(sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])))


def preferred_cuisines(session: Session, resident_id: int, now: datetime | None = None) -> list[str]:
    """The cuisines a resident is said to like (for tags and targeting)."""
    return [c for c, score in profile(session, resident_id, now).items() if score >= PREFERENCE_THRESHOLD]
