"""What a diner tells us about themselves: the taste survey and "quiet me".

Services take a session and never commit. A survey that changes the taste evidence queues
``signals.taste_changed`` through ``taste`` (tags and targeting follow the profile).
Campaign code asks ``may_push`` (one diner) or filters with ``pushable_clause`` (a batch)
before it spends a WeCom mass message on anyone.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from core.errors import Invalid
from merchants.models import CUISINES
from residents.models import Resident, SignalSource, TasteSignal
from residents.taste import clear_signals, preferred_cuisines, profile, record_signal

SURVEY_REF = "survey"
SPICE_LEVELS = (0, 1, 2, 3)
MAX_BUDGET_FEN = 100_000  # ¥1000 a head is plenty for a neighbourhood
MAX_MONTHLY_CAP = 30


class PreferenceError(Invalid, ValueError):
    """An answer outside what the form offers (400); still a ``ValueError`` for old callers."""


@dataclass
class SurveyAnswers:
    cuisines: list[str] = field(default_factory=list)
    spice_level: int | None = None
    budget_fen: int | None = None


def survey_answers(session: Session, resident: Resident) -> SurveyAnswers:
    """The diner's current answers (to prefill the form)."""
    cuisines = session.scalars(
        select(TasteSignal.cuisine)
        .where(TasteSignal.resident_id == resident.id, TasteSignal.source == SignalSource.survey)
        .order_by(TasteSignal.cuisine)
    ).all()
    return SurveyAnswers(list(cuisines), resident.spice_level, resident.budget_fen)


def save_survey(session: Session, resident: Resident, answers: SurveyAnswers) -> bool:
    """Replace the diner's survey answers. Cuisines no longer chosen are dropped; the chosen
    ones are (re)recorded, which refreshes their age. Returns True when the set of survey
    cuisines changed, i.e. the taste profile moved (``taste`` has queued ``taste_changed``)."""
    chosen = list(dict.fromkeys(answers.cuisines))
    unknown = [c for c in chosen if c not in CUISINES]
    if unknown:
        raise PreferenceError(f"unknown cuisines: {', '.join(unknown)}")
    if answers.spice_level is not None and answers.spice_level not in SPICE_LEVELS:
        raise PreferenceError("spice level must be 0..3")
    if answers.budget_fen is not None and not 0 <= answers.budget_fen <= MAX_BUDGET_FEN:
        raise PreferenceError("budget out of range")
    before = set(
        session.scalars(
            select(TasteSignal.cuisine).where(
                TasteSignal.resident_id == resident.id, TasteSignal.source == SignalSource.survey
            )
        )
    )
    clear_signals(session, resident.id, SignalSource.survey, keep_refs={f"{c}|{SURVEY_REF}" for c in chosen})
    for cuisine in chosen:
        record_signal(session, resident.id, cuisine, SignalSource.survey, ref=SURVEY_REF)
    resident.spice_level = answers.spice_level
    resident.budget_fen = answers.budget_fen
    session.flush()
    return before != set(chosen)


@dataclass
class TasteSummary:
    scores: list[tuple[str, float]]  # cuisine code, decayed score; highest first
    preferred: list[str]
    spice_level: int | None
    budget_fen: int | None

    @property
    def top(self) -> float:
        return self.scores[0][1] if self.scores else 0.0


def taste_summary(session: Session, resident: Resident) -> TasteSummary:
    scores = profile(session, resident.id)
    return TasteSummary(
        scores=list(scores.items()),
        preferred=preferred_cuisines(session, resident.id),
        spice_level=resident.spice_level,
        budget_fen=resident.budget_fen,
    )


# ---------------------------------------------------------------- quiet me


class QuietMode(str, enum.Enum):
    all = "all"  # campaigns may reach me (within the platform's own limits)
    capped = "capped"  # at most ``monthly_cap`` a month
    off = "off"  # no marketing pushes at all


def quiet_mode(resident: Resident) -> QuietMode:
    if resident.opted_out:
        return QuietMode.off
    return QuietMode.all if resident.monthly_cap is None else QuietMode.capped


def set_quiet(session: Session, resident: Resident, mode: QuietMode, cap: int | None = None) -> None:
    """Opt out entirely, cap pushes per month, or take everything again."""
    if mode == QuietMode.off:
        resident.opted_out = True  # the cap is kept: switching back on restores it
    elif mode == QuietMode.capped:
        if cap is None or not 1 <= cap <= MAX_MONTHLY_CAP:
            raise PreferenceError(f"monthly cap must be 1..{MAX_MONTHLY_CAP}")
        resident.opted_out, resident.monthly_cap = False, cap
    else:
        resident.opted_out, resident.monthly_cap = False, None
    session.flush()


def may_push(session: Session, resident_id: int, sent_this_month: int = 0) -> bool:
    """May a campaign push to this diner now? False if they opted out (or are gone or
    erased), or if ``sent_this_month`` marketing pushes already reached their own cap.
    The campaign code counts its deliveries; WeCom's platform quota is checked separately."""
    resident = session.get(Resident, resident_id)
    if resident is None or resident.erased_at is not None or resident.opted_out:
        return False
    return resident.monthly_cap is None or sent_this_month < resident.monthly_cap


def pushable_clause() -> ColumnElement[bool]:
    """``select(Resident).where(pushable_clause())``: diners who accept pushes at all (their
    monthly cap still needs the campaign's own count, see ``may_push``)."""
    return and_(
        Resident.opted_out.is_(False),
        Resident.erased_at.is_(None),
        or_(Resident.monthly_cap.is_(None), Resident.monthly_cap > 0),
    )
