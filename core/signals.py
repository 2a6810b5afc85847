"""Every signal of the app, in one blinker namespace, and after-commit delivery.

Services never commit, so a sender inside a transaction queues its signal on the caller's
session with ``send_after_commit``: it goes out once that transaction commits, and never if
it rolls back. Receivers run inside SQLAlchemy's ``after_commit`` hook, where the session
can emit no SQL: they must be cheap and hand real work to a job. A failing receiver is
logged, never raised: the commit has already happened. A sender that has already committed
(a job after its transaction) may call ``signal.send`` directly.

Receivers live in each domain's ``handlers.py``.
"""
from __future__ import annotations

import logging

from blinker import Namespace, Signal
from sqlalchemy import event
from sqlalchemy.orm import Session, scoped_session

log = logging.getLogger(__name__)

_signals = Namespace()

# --- merchants ---------------------------------------------------------------------------
# sender=the app, kwargs: store_id — a store's serving staff changed (committed); the channel
# codes follow so printed posters keep working.
store_staff_changed = _signals.signal("store-staff-changed")

# --- coupons -----------------------------------------------------------------------------
# kwargs: coupon_id, redemption_id, store_id, resident_id (None for a holder we don't know)
coupon_redeemed = _signals.signal("coupon-redeemed")
# kwargs: coupon_id, redemption_id, resident_id (None for a holder we don't know)
redemption_reversed = _signals.signal("redemption-reversed")

# --- residents ---------------------------------------------------------------------------
# kwargs: resident_id, member_id, store_id (None when unknown), first_time (bool), scan (for a
# diner's own add: {"state", "at"} — the evidence it brings is recorded later; None for a handover)
contact_added = _signals.signal("resident-contact-added")
# kwargs: resident_id, member_id, reason ("del_external_contact" | "del_follow_user" | "transfer")
contact_closed = _signals.signal("resident-contact-closed")
# kwargs: resident_id — the taste profile changed (new or refreshed signals)
taste_changed = _signals.signal("resident-taste-changed")

_PENDING = "core.signals.pending"


def send_after_commit(session: Session | scoped_session, signal: Signal, **kwargs) -> None:
    """Send ``signal(**kwargs)`` after the session's outermost commit; drop it on rollback."""
    if isinstance(session, scoped_session):
        session = session()
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        event.listen(session, "after_commit", _send_pending)
        event.listen(session, "after_rollback", _drop_pending)
    pending.append((signal, kwargs))


def _send_pending(session: Session) -> None:
    pending = session.info.get(_PENDING) or []
    items, pending[:] = list(pending), []
    for signal, kwargs in items:
        try:
            signal.send(None, **kwargs)
        except Exception:
            log.exception("receiver of %s failed (%s)", signal.name, kwargs)


def _drop_pending(session: Session) -> None:
    pending = session.info.get(_PENDING)
    if pending:
        pending.clear()
