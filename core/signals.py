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
from sqlalchemy.orm import Session, SessionTransaction, scoped_session

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
# kwargs: coupon_id — a diner claimed a coupon themselves (a store page, a campaign card)
coupon_claimed = _signals.signal("coupon-claimed")

# --- residents ---------------------------------------------------------------------------
# kwargs: resident_id, member_id, store_id (None when unknown), first_time (bool), scan (for a
# diner's own add: {"state", "at"} — the evidence it brings is recorded later; None for a handover)
contact_added = _signals.signal("resident-contact-added")
# kwargs: resident_id, member_id, reason ("del_external_contact" | "del_follow_user" | "transfer")
contact_closed = _signals.signal("resident-contact-closed")
# kwargs: resident_id — the taste profile changed (new or refreshed signals)
taste_changed = _signals.signal("resident-taste-changed")

# --- campaigns ---------------------------------------------------------------------------
# kwargs: campaign_id, state ("done" | "cancelled") — the campaign has ended
campaign_finished = _signals.signal("campaign-finished")

_PENDING = "core.signals.pending"


def send_after_commit(session: Session | scoped_session, signal: Signal, **kwargs) -> None:
    """Send ``signal(**kwargs)`` after the session's outermost commit; drop it on rollback
    (of the whole transaction, or of the savepoint it was queued in)."""
    if isinstance(session, scoped_session):
        session = session()
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        event.listen(session, "after_commit", _send_pending)
        event.listen(session, "after_soft_rollback", _drop_pending)
    pending.append((session.get_nested_transaction(), signal, kwargs))


def _send_pending(session: Session) -> None:
    # SQLAlchemy also fires after_commit when a savepoint is released: its signals wait.
    if session.in_nested_transaction():
        return
    pending = session.info.get(_PENDING) or []
    items, pending[:] = list(pending), []
    for _savepoint, signal, kwargs in items:
        try:
            signal.send(None, **kwargs)
        except Exception:
            log.exception("receiver of %s failed (%s)", signal.name, kwargs)


def _within(savepoint: SessionTransaction | None, ended: SessionTransaction) -> bool:
    while savepoint is not None:
        if savepoint is ended:
            return True
        savepoint = savepoint.parent
    return False


def _drop_pending(session: Session, previous_transaction: SessionTransaction) -> None:
    pending = session.info.get(_PENDING)
    if not pending:
        return
    if not previous_transaction.nested:
        pending.clear()
    else:  # a savepoint rolled back: only what was queued inside it goes
        pending[:] = [item for item in pending if not _within(item[0], previous_transaction)]
