"""The WeCom event log for the operator: failed events are listed (/admin/events, ``linli
events list``) and can be replayed (a button, ``linli events retry``); a replay that
succeeds marks the event done."""
from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import select

from core.db import db
from core.errors import NotFound
from core.inbox.jobs import accept_callback, process_event, retry_failed
from core.inbox.models import WeComEvent
from core.inbox.services import list_events, mark_for_retry, status_counts
from marketplace.cli import main
from marketplace.worker import drain
from tests.support.merchants import FreshContextClient, login, make_admin
from wecom.events import registry

EVENT = "linli_test_event"


class Flaky:
    """A handler that fails until it is fixed (like a bad template until the owner edits it)."""

    def __init__(self) -> None:
        self.broken = True
        self.calls = 0

    def __call__(self, payload: dict) -> None:
        self.calls += 1
        if self.broken:
            raise OverflowError("date value out of range")


@pytest.fixture
def flaky(app):
    handler = Flaky()
    registry.on(EVENT)(handler)
    yield handler
    registry._handlers.pop((EVENT, None), None)


def _failed_event(n: int = 1) -> int:
    payload = {"Event": EVENT, "N": n}
    accept_callback(payload, hashlib.sha256(f"{EVENT}:{n}".encode()).hexdigest())
    row_id = db.session.scalar(select(WeComEvent.id).where(WeComEvent.event == EVENT).order_by(WeComEvent.id.desc()))
    with pytest.raises(OverflowError):
        process_event(row_id)
    db.session.remove()
    return row_id


def _status(event_id: int) -> str:
    db.session.remove()
    return db.session.get(WeComEvent, event_id).status


def test_failed_events_stay_listed_until_retried(app, flaky):
    first, second = _failed_event(1), _failed_event(2)
    assert status_counts(db.session)["failed"] == 2
    assert [r.id for r in list_events(db.session)] == [second, first]
    assert "OverflowError" in list_events(db.session)[0].error

    flaky.broken = False
    outcome = retry_failed([first], now=True)
    assert outcome == {first: "handled by 1"}
    assert (_status(first), _status(second)) == ("done", "failed")
    assert db.session.get(WeComEvent, first).error is None

    with pytest.raises(NotFound):  # done now: not a failed event any more
        mark_for_retry(db.session, [first])
    with pytest.raises(NotFound):
        mark_for_retry(db.session, [10**25])
    db.session.rollback()


def test_retry_queues_jobs_that_finish_the_events(app, flaky):
    event_id = _failed_event()
    flaky.broken = False
    assert retry_failed() == {event_id: "queued"}
    assert _status(event_id) == "pending"
    db.session.remove()
    drain(app)
    assert _status(event_id) == "done" and flaky.calls == 2


def test_a_retry_that_fails_again_stays_failed(app, flaky):
    event_id = _failed_event()
    outcome = retry_failed(None, now=True)
    assert outcome[event_id].startswith("failed: OverflowError")
    assert _status(event_id) == "failed"


def test_cli_lists_and_retries_failed_events(app, flaky, runner):
    event_id = _failed_event()
    listed = runner.invoke(main, ["events", "list"])
    assert listed.exit_code == 0, listed.output
    assert "failed: 1" in listed.output and f"{event_id}\t" in listed.output and "OverflowError" in listed.output

    assert runner.invoke(main, ["events", "retry"]).exit_code != 0  # ids or --all
    assert runner.invoke(main, ["events", "retry", "99999999999999999999999"]).exit_code == 2  # out of range
    missing = runner.invoke(main, ["events", "retry", "424242"])
    assert missing.exit_code == 1 and "424242" in missing.output

    again = runner.invoke(main, ["events", "retry", "--all", "--now"])
    assert again.exit_code == 1 and "failed" in again.output  # still broken: still failed
    assert _status(event_id) == "failed"

    flaky.broken = False
    fixed = runner.invoke(main, ["events", "retry", str(event_id), "--now"])
    assert fixed.exit_code == 0, fixed.output
    assert "1 event(s) retried" in fixed.output
    assert _status(event_id) == "done"


def test_admin_page_lists_failed_events_and_replays_them(app, flaky):
    app.config["PASSWORD_HASH_METHOD"] = "scrypt:1024:8:1"
    app.test_client_class = FreshContextClient
    client = app.test_client()
    event_id = _failed_event()
    assert client.get("/admin/events").status_code == 302  # admins only

    make_admin("ops")
    assert login(client, "ops").status_code == 302
    page = client.get("/admin/events")
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "OverflowError" in body and f"/admin/events/{event_id}/retry" in body
    assert client.get("/admin/events?status=bogus").status_code == 404
    assert client.get("/admin/events?status=done").status_code == 200

    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', body).group(1)
    assert client.post(f"/admin/events/{event_id}/retry").status_code == 400  # CSRF
    assert client.post("/admin/events/99999999999999999999/retry", data={"csrf_token": token}).status_code == 404

    flaky.broken = False
    done = client.post(f"/admin/events/{event_id}/retry", data={"csrf_token": token})
    assert done.status_code == 302
    assert _status(event_id) == "pending"
    drain(app)
    assert _status(event_id) == "done"
    gone = client.post(f"/admin/events/{event_id}/retry", data={"csrf_token": token}, follow_redirects=True)
    assert gone.status_code == 200 and "已不是失败状态" in gone.get_data(as_text=True)
    assert client.post("/admin/events/retry", data={"csrf_token": token}).status_code == 302
