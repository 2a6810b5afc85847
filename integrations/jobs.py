"""RQ entry points of the integrations (thin, each owning its transaction)."""
from __future__ import annotations

import time
from datetime import datetime

from flask import current_app

from core.db import db
from core.txn import transaction
from integrations.services import idempotency, webhooks


def sweep_idempotency() -> int:
    """The clock's: drop idempotency records past their keeping time."""
    with transaction(db.session) as session:
        return idempotency.sweep(session)


def sweep_webhooks() -> int:
    """The clock's (daily): drop settled webhook events past their keeping time."""
    with transaction(db.session) as session:
        return webhooks.sweep(session)


def deliver_due(now: datetime | None = None, limit: int = 100, budget: float = 10.0) -> int:
    """The clock's (every 15 s): POST due webhook deliveries, each claimed and settled in its
    own transaction (a killed worker leaves its one delivery pending), until none is due,
    ``limit`` were tried or ``budget`` seconds have passed. Returns how many were tried."""
    tried = 0
    stop_at = time.monotonic() + budget
    allow_local = bool(current_app.config.get("WEBHOOK_ALLOW_HTTP"))  # development: this machine too
    with webhooks.new_client() as client:
        while tried < limit and time.monotonic() < stop_at:
            with transaction(db.session) as session:
                delivery = webhooks.claim_due(session, now)
                if delivery is None:
                    break
                webhooks.attempt(session, client, delivery, now, allow_local=allow_local)
            tried += 1
    return tried

