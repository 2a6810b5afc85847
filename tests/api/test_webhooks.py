"""Signed webhooks: a real HTTP receiver on a loopback port checks every signature the way a
merchant's server would (HMAC-SHA256 over "<t>." + body, a fresh t), a receiver that fails
twice gets the event on the third try under the same id, one that never answers is given up
on 24 h after the event, the portal's log redelivers, and a worker killed between the claim
and the answer leaves the delivery pending."""
from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import socket
import threading
import time
from datetime import datetime, timedelta

import httpx
import pytest
from blinker import Signal
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from campaigns.models import Campaign, CampaignState
from campaigns.services.lifecycle import move
from core import signals
from core.db import db, utcnow
from core.errors import Invalid
from core.txn import transaction
from coupons.models import CouponSource
from coupons.services import issue_coupon
from integrations import jobs
from integrations.services import webhooks
from integrations.webhook_models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent
from tests.api.conftest import auth
from tests.support.coupons import csrf_token, login, logout
from tests.support.servers import BACKENDS

TOLERANCE = 300  # seconds: an older signature is a replay


class Receiver:
    """A merchant's webhook endpoint: answers the next planned status (then 200), records
    what arrived and whether its signature held."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.secret = ""
        self.statuses = list(statuses or [])
        self.got: list[dict] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.got.append({"body": body, "event_id": self.headers.get("Linli-Event-Id"),
                                     "type": self.headers.get("Content-Type"),
                                     "verified": receiver.verify(self.headers.get("Linli-Signature") or "", body)})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status if receiver.got[-1]["verified"] else 400)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/linli"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def verify(self, header: str, body: bytes) -> bool:
        parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
        try:
            t = int(parts["t"])
        except (KeyError, ValueError):
            return False
        if abs(time.time() - t) > TOLERANCE:
            return False
        expected = hmac.new(self.secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, parts.get("v1", ""))

    def events(self) -> list[dict]:
        return [json.loads(g["body"]) for g in self.got]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(app):
    """A receiver on this machine: the app may send to it (development's WEBHOOK_ALLOW_HTTP)."""
    app.config["WEBHOOK_ALLOW_HTTP"] = True
    r = Receiver()
    yield r
    r.stop()


def _endpoint(merchant_id: int, url: str, events: list[str] | None = None) -> WebhookEndpoint:
    with transaction(db.session) as session:
        return webhooks.create_endpoint(session, merchant_id, url, events or ["coupon.redeemed", "coupon.reversed"],
                                        allow_http=True)


def _subscribe(tenant, receiver: Receiver, events: list[str] | None = None) -> WebhookEndpoint:
    endpoint = _endpoint(tenant.shop.merchant.id, receiver.url, events)
    receiver.secret = endpoint.secret
    return endpoint


def _redeem(client, tenant, key: str = "k-1") -> dict:
    resp = client.post("/api/v1/redemptions", json={"code": tenant.coupon(), "bill_fen": 12800},
                       headers=auth(tenant.store_token, key))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()


def _delivery() -> WebhookDelivery:
    db.session.expire_all()
    return db.session.scalar(select(WebhookDelivery).order_by(WebhookDelivery.id.desc()))


def _later(at: datetime, seconds: float = 1) -> datetime:
    return at + timedelta(seconds=seconds)


def test_a_redemption_reaches_the_receiver_signed(client, tenant, rival, receiver):
    _subscribe(tenant, receiver)
    red = _redeem(client, tenant)
    _redeem(client, rival)  # no endpoint: no event at all
    assert db.session.scalar(select(func.count(WebhookEvent.id))) == 1
    assert jobs.deliver_due() == 1
    assert len(receiver.got) == 1 and receiver.got[0]["verified"]
    assert receiver.got[0]["type"] == "application/json"
    body = receiver.events()[0]
    assert body["type"] == "coupon.redeemed" and receiver.got[0]["event_id"] == body["id"]
    assert body["data"]["redemption_id"] == red["id"] and body["data"]["code"] == red["code"]
    assert body["data"]["store_id"] == tenant.shop.store.id and body["data"]["template_id"] == tenant.template_id
    assert (body["data"]["bill_fen"], body["data"]["discount_fen"], body["data"]["payable_fen"]) == (12800, 2000, 10800)
    d = _delivery()
    assert d.status == DeliveryStatus.succeeded and d.attempts == 1 and d.last_status_code == 200
    assert jobs.deliver_due() == 0  # nothing more is due

    # the reversal is an event of its own
    resp = client.post(f"/api/v1/redemptions/{red['id']}/reverse", json={}, headers=auth(tenant.token, "r-1"))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert jobs.deliver_due() == 1
    reversed_ = receiver.events()[1]
    assert reversed_["type"] == "coupon.reversed" and reversed_["data"]["redemption_id"] == red["id"]
    assert reversed_["data"]["reversed_at"] and receiver.got[1]["verified"]


def test_a_wrong_secret_does_not_verify(client, tenant, receiver):
    _subscribe(tenant, receiver)
    receiver.secret = "whsec_not-the-one"
    _redeem(client, tenant)
    jobs.deliver_due()
    assert receiver.got and not receiver.got[0]["verified"]
    d = _delivery()
    assert d.status == DeliveryStatus.pending and d.last_status_code == 400 and d.attempts == 1


def test_two_failures_then_the_third_try_delivers(client, tenant, receiver):
    _subscribe(tenant, receiver)
    receiver.statuses = [500, 500]
    _redeem(client, tenant)
    t0 = utcnow()
    assert jobs.deliver_due(now=t0) == 1
    first = _delivery()
    assert first.status == DeliveryStatus.pending and first.last_status_code == 500
    assert first.next_attempt_at == t0 + timedelta(seconds=30)
    assert jobs.deliver_due(now=_later(t0, 10)) == 0  # not due yet
    t1 = _later(first.next_attempt_at)
    assert jobs.deliver_due(now=t1) == 1
    second = _delivery()
    assert second.attempts == 2 and second.next_attempt_at == t1 + timedelta(seconds=60)  # doubled
    assert jobs.deliver_due(now=_later(second.next_attempt_at)) == 1
    third = _delivery()
    assert third.status == DeliveryStatus.succeeded and third.attempts == 3 and third.last_status_code == 200
    assert len(receiver.got) == 3 and all(g["verified"] for g in receiver.got)
    assert len({g["event_id"] for g in receiver.got}) == 1  # one event id on every try
    assert len({g["body"] for g in receiver.got}) == 1  # and the very same body


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/gone"


def test_a_receiver_that_never_answers_is_given_up_after_24_hours(app, client, tenant):
    app.config["WEBHOOK_ALLOW_HTTP"] = True  # the closed port is on this machine
    _endpoint(tenant.shop.merchant.id, _closed_port_url())
    _redeem(client, tenant)
    created = db.session.scalar(select(WebhookEvent.created_at))
    now, tries = utcnow(), 0
    while tries < 100:
        assert jobs.deliver_due(now=now) == 1
        tries += 1
        d = _delivery()
        assert d.last_status_code is None and d.last_error == "connection failed"  # no more: no port map
        if d.status != DeliveryStatus.pending:
            break
        assert d.next_attempt_at <= created + timedelta(hours=24)
        assert d.next_attempt_at - now <= timedelta(hours=1)  # backoff is capped
        now = d.next_attempt_at
    assert d.status == DeliveryStatus.failed and d.attempts == tries
    assert d.last_attempt_at >= created + timedelta(hours=24)
    assert 20 < tries < 40  # 30 s doubling to an hour apart, over a day
    assert jobs.deliver_due(now=now + timedelta(days=1)) == 0  # failed is final


class Killed(BaseException):
    """What a SIGKILL looks like from inside: nothing after it runs, no handler catches it."""


def test_a_worker_killed_mid_post_leaves_the_delivery_pending(client, tenant, receiver, monkeypatch):
    _subscribe(tenant, receiver)
    _redeem(client, tenant)

    def killed(*args, **kwargs):
        raise Killed()

    with monkeypatch.context() as patch:
        patch.setattr(httpx.Client, "stream", killed)
        with pytest.raises(Killed):
            jobs.deliver_due()
    d = _delivery()
    assert d.status == DeliveryStatus.pending and d.attempts == 0 and d.last_attempt_at is None
    assert jobs.deliver_due() == 1  # the next tick sends it
    assert _delivery().status == DeliveryStatus.succeeded and receiver.got[0]["verified"]


def test_an_error_in_the_post_is_a_failed_try_retried_later(client, tenant, receiver, monkeypatch):
    _subscribe(tenant, receiver)
    _redeem(client, tenant)

    def broken(*args, **kwargs):
        raise RuntimeError("the receiver's TLS went away")

    t0 = utcnow()
    with monkeypatch.context() as patch:
        patch.setattr(httpx.Client, "stream", broken)
        assert jobs.deliver_due(now=t0) == 1
    d = _delivery()
    assert d.status == DeliveryStatus.pending and d.attempts == 1 and d.last_error == "connection failed"
    assert d.next_attempt_at > t0
    assert jobs.deliver_due(now=_later(d.next_attempt_at)) == 1
    assert _delivery().status == DeliveryStatus.succeeded


# Row locks (FOR UPDATE SKIP LOCKED) are PostgreSQL's; SQLite has one writer: PostgreSQL only.
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b == "postgresql"], indirect=True)
def test_a_claimed_delivery_is_skipped_by_another_worker(app, backend, client, tenant, receiver):
    _subscribe(tenant, receiver)
    _redeem(client, tenant)
    with Session(db.engine) as first, first.begin():
        assert webhooks.claim_due(first) is not None
        with Session(db.engine) as second, second.begin():
            assert webhooks.claim_due(second) is None  # locked: skipped, not waited for
    assert jobs.deliver_due() == 1


def test_only_subscribed_active_endpoints_get_events(client, tenant, receiver):
    _subscribe(tenant, receiver, ["coupon.claimed"])
    _redeem(client, tenant)
    assert db.session.scalar(select(func.count(WebhookEvent.id))) == 0
    with transaction(db.session) as session:
        coupon = issue_coupon(session, tenant.template_id, "wm-claimer", source=CouponSource.store,
                              store_id=tenant.shop.store.id)
        code = coupon.short_code
    with transaction(db.session) as session:  # issued by the operator: not a claim
        issue_coupon(session, tenant.template_id, "wm-other")
    assert jobs.deliver_due() == 1
    claimed = receiver.events()[0]
    assert claimed["type"] == "coupon.claimed" and claimed["data"]["code"] == code
    assert claimed["data"]["source"] == "store" and claimed["data"]["store_id"] == tenant.shop.store.id
    # a paused endpoint gets no new events
    with transaction(db.session) as session:
        webhooks.set_active(session, session.get(WebhookEndpoint, _delivery().endpoint_id), False)
    with transaction(db.session) as session:
        issue_coupon(session, tenant.template_id, "wm-third", source=CouponSource.store, store_id=tenant.shop.store.id)
    assert db.session.scalar(select(func.count(WebhookEvent.id))) == 1


def test_a_rolled_back_claim_sends_nothing(client, tenant, receiver):
    _subscribe(tenant, receiver, ["coupon.claimed"])
    with pytest.raises(RuntimeError), transaction(db.session) as session:
        issue_coupon(session, tenant.template_id, "wm-undone", source=CouponSource.store)
        raise RuntimeError("the claim's transaction failed")
    assert db.session.scalar(select(func.count(WebhookEvent.id))) == 0


@pytest.mark.parametrize("state", [CampaignState.done, CampaignState.cancelled])
def test_a_finished_campaign_is_an_event(client, tenant, receiver, state):
    _subscribe(tenant, receiver, ["campaign.finished"])
    now = utcnow()
    with transaction(db.session) as session:
        campaign = Campaign(merchant_id=tenant.shop.merchant.id, name="周末满减", message="m", reason="r",
                            audience={}, send_from=now - timedelta(days=2), send_until=now - timedelta(days=1),
                            state=CampaignState.tracking)
        session.add(campaign)
        session.flush()
        campaign_id = campaign.id
    with transaction(db.session) as session:
        move(session, campaign_id, state, note="test")
    assert jobs.deliver_due() == 1
    body = receiver.events()[0]
    assert body["type"] == "campaign.finished" and receiver.got[0]["verified"]
    assert body["data"]["campaign_id"] == campaign_id and body["data"]["name"] == "周末满减"
    assert body["data"]["state"] == state.value


# --------------------------------------------------------------------------- the portal


def test_the_portal_creates_lists_and_redelivers(client, tenant, receiver, app):
    app.config["WEBHOOK_ALLOW_HTTP"] = True
    login(client, tenant.shop.owner)
    page = "/portal/webhooks/"
    resp = client.post(page, data={"url": receiver.url, "events": ["coupon.redeemed"],
                                   "csrf_token": csrf_token(client, page)})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:2000]
    endpoint = db.session.scalar(select(WebhookEndpoint))
    assert endpoint.merchant_id == tenant.shop.merchant.id and endpoint.events == ["coupon.redeemed"]
    receiver.secret = endpoint.secret
    html = client.get(page).get_data(as_text=True)
    assert endpoint.secret in html and receiver.url in html

    _redeem(client, tenant)
    jobs.deliver_due()
    html = client.get(page).get_data(as_text=True)
    assert 'data-testid="delivery-log"' in html and "HTTP 200" in html
    d = _delivery()
    resp = client.post(f"/portal/webhooks/deliveries/{d.id}/redeliver", data={"csrf_token": csrf_token(client, page)})
    assert resp.status_code == 302
    again = _delivery()
    assert again.status == DeliveryStatus.pending and again.next_attempt_at <= utcnow()
    assert jobs.deliver_due() == 1
    assert len(receiver.got) == 2 and receiver.got[0]["event_id"] == receiver.got[1]["event_id"]
    assert all(g["verified"] for g in receiver.got)
    # without the CSRF token: refused
    assert client.post(f"/portal/webhooks/deliveries/{d.id}/redeliver").status_code == 400
    # pause, then delete
    assert client.post(f"/portal/webhooks/{endpoint.id}/pause",
                       data={"csrf_token": csrf_token(client, page)}).status_code == 302
    db.session.expire_all()
    assert db.session.get(WebhookEndpoint, endpoint.id).active is False
    assert client.post(f"/portal/webhooks/{endpoint.id}/delete",
                       data={"csrf_token": csrf_token(client, page)}).status_code == 302
    assert db.session.scalar(select(func.count(WebhookEndpoint.id))) == 0
    assert db.session.scalar(select(func.count(WebhookDelivery.id))) == 0


def test_another_merchants_endpoints_and_deliveries_are_not_found(client, tenant, rival, receiver):
    endpoint = _subscribe(tenant, receiver)
    _redeem(client, tenant)
    delivery_id = _delivery().id
    login(client, rival.shop.owner)
    page = "/portal/webhooks/"
    token = csrf_token(client, page)
    for url in (f"/portal/webhooks/deliveries/{delivery_id}/redeliver", f"/portal/webhooks/{endpoint.id}/pause",
                f"/portal/webhooks/{endpoint.id}/resume", f"/portal/webhooks/{endpoint.id}/delete",
                "/portal/webhooks/deliveries/2147483647/redeliver"):
        assert client.post(url, data={"csrf_token": token}).status_code == 404, url
    html = client.get(page).get_data(as_text=True)
    assert endpoint.secret not in html and receiver.url not in html
    db.session.expire_all()
    assert db.session.get(WebhookEndpoint, endpoint.id).active is True
    logout(client)
    login(client, tenant.shop.cashier)  # owners only
    assert client.get(page).status_code in (302, 403)


def test_plain_http_is_refused_unless_the_setting_allows(client, tenant, app):
    login(client, tenant.shop.owner)
    page = "/portal/webhooks/"
    app.config["WEBHOOK_ALLOW_HTTP"] = False
    for url in ("http://127.0.0.1:9/hook", "https://127.0.0.1/hook", "ftp://example.com/x", "https://",
                "not a url", "https://10.1.2.3/hook", "https://example.com:99999/x", "https://e.com/" + "x" * 500):
        resp = client.post(page, data={"url": url, "events": ["coupon.redeemed"], "csrf_token": csrf_token(client, page)})
        assert resp.status_code == 400, url
    resp = client.post(page, data={"url": "https://pos.example.com/h", "events": ["nonsense"],
                                   "csrf_token": csrf_token(client, page)})
    assert resp.status_code == 400
    resp = client.post(page, data={"url": "https://pos.example.com/h", "csrf_token": csrf_token(client, page)})
    assert resp.status_code == 400  # no event chosen
    assert db.session.scalar(select(func.count(WebhookEndpoint.id))) == 0
    resp = client.post(page, data={"url": "https://pos.example.com/h", "events": ["coupon.redeemed"],
                                   "csrf_token": csrf_token(client, page)})
    assert resp.status_code == 302
    app.config["WEBHOOK_ALLOW_HTTP"] = True
    resp = client.post(page, data={"url": "http://127.0.0.1:9/hook", "events": ["coupon.redeemed"],
                                   "csrf_token": csrf_token(client, page)})
    assert resp.status_code == 302
    assert db.session.scalar(select(func.count(WebhookEndpoint.id))) == 2
    with pytest.raises(Invalid):
        webhooks.check_url("http://pos.example.com/h", allow_http=True)  # http only to this machine


def test_signals_wait_for_the_outermost_commit(app):
    """SQLAlchemy fires after_commit when a savepoint is released too (the API runs each
    mutation in one): signals queued inside wait for the real commit, and a savepoint rolled
    back drops only its own."""
    got: list[int] = []
    signal = Signal()
    signal.connect(lambda sender, n: got.append(n), weak=False)
    with transaction(db.session) as session:
        signals.send_after_commit(session, signal, n=1)
        with session.begin_nested():
            signals.send_after_commit(session, signal, n=2)
        assert got == []
        with pytest.raises(RuntimeError), session.begin_nested():
            signals.send_after_commit(session, signal, n=3)
            raise RuntimeError()
    assert got == [1, 2]


@pytest.mark.parametrize("url", ["https://127.1/hook", "https://2130706433/hook", "https://0x7f000001/hook",
                                 "https://10.0.0.1/hook", "https://169.254.169.254/latest", "https://localhost./x"])
def test_internal_addresses_are_refused_in_any_spelling(app, url):
    with pytest.raises(Invalid):
        webhooks.check_url(url, allow_http=False)


def test_a_name_that_resolves_inside_is_not_sent_to(app, client, tenant, receiver, monkeypatch):
    """Checked when sending, not only when registered: a public-looking name that points at a
    private address (or is re-pointed later) gets nothing, and the log says only that."""
    app.config["WEBHOOK_ALLOW_HTTP"] = False
    with transaction(db.session) as session:
        endpoint = webhooks.create_endpoint(session, tenant.shop.merchant.id, "https://hooks.example.com/in",
                                            ["coupon.redeemed"])
    real = socket.getaddrinfo
    monkeypatch.setattr(webhooks.socket, "getaddrinfo", lambda host, *a, **k: (
        [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 443))] if host == "hooks.example.com"
        else real(host, *a, **k)))
    _redeem(client, tenant)
    assert jobs.deliver_due() == 1
    d = _delivery()
    assert d.endpoint_id == endpoint.id and d.status == DeliveryStatus.pending and d.last_error == "address not allowed"
    assert receiver.got == []


def test_settled_events_are_swept_after_30_days_and_pending_ones_kept(client, tenant, receiver):
    _subscribe(tenant, receiver)
    _redeem(client, tenant, "k-old-ok")
    assert jobs.deliver_due() == 1 and _delivery().status == DeliveryStatus.succeeded
    receiver.statuses = [500] * 10
    _redeem(client, tenant, "k-old-pending")
    assert jobs.deliver_due() == 1 and _delivery().status == DeliveryStatus.pending
    with transaction(db.session) as session:  # both are 31 days old; a third is new and settled
        session.execute(update(WebhookEvent).values(created_at=utcnow() - timedelta(days=31)))
    receiver.statuses = []
    _redeem(client, tenant, "k-new")
    assert jobs.deliver_due() == 1  # the new one (the pending one's retry is not due yet)

    assert jobs.sweep_webhooks() == 1
    db.session.expire_all()
    kept = db.session.execute(select(WebhookEvent.id, WebhookDelivery.status)
                              .join(WebhookDelivery, WebhookDelivery.event_id == WebhookEvent.id)
                              .order_by(WebhookEvent.id)).all()
    assert [status for _id, status in kept] == [DeliveryStatus.pending, DeliveryStatus.succeeded]
    assert jobs.sweep_webhooks() == 0  # nothing more to forget
