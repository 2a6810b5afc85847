"""Signals coupons send for other packages (residents' taste profile) to subscribe to.

Coupon services never commit, so they queue a signal on the caller's session with
``send_after_commit``: it goes out once that transaction commits, and never if it rolls
back. Receivers run inside SQLAlchemy's ``after_commit`` hook, where the session can emit no
SQL: they must be cheap and hand real work to a job. A failing receiver is logged, never
raised: the commit has already happened.
"""
from __future__ import annotations

import logging

from blinker import Namespace, Signal
from sqlalchemy import event
from sqlalchemy.orm import Session, scoped_session

log = logging.getLogger(__name__)

_signals = Namespace()

# kwargs: coupon_id, redemption_id, store_id, resident_id (None for a holder we don't know)
coupon_redeemed = _signals.signal("coupon-redeemed")
# kwargs: coupon_id, redemption_id, resident_id (None for a holder we don't know)
redemption_reversed = _signals.signal("redemption-reversed")

_PENDING = "coupons.signals.pending"


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
