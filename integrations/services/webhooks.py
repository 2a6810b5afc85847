"""Webhooks: endpoints a merchant registers, events written when a fact commits, and signed
deliveries retried with exponential backoff for 24 h.

A delivery is claimed by a row lock inside the transaction that writes its outcome
(``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two workers never send one delivery
at once), never by a state change: a worker killed between the claim and the answer rolls
back with nothing written, and the row is still pending and due. Receivers may therefore
see an event twice; its id is the same on every try, so they can tell.

The body is signed as Stripe does: ``Linli-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>." + body under the endpoint's secret>``; a receiver recomputes it and refuses an old
``t`` (replays)."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from campaigns.models import Campaign
from core.errors import Conflict, Invalid, NotFound
from core.localtime import as_utc
from coupons.models import Coupon, CouponTemplate, Redemption, RedemptionReversal
from integrations.webhook_models import (
    ERROR_MAX,
    URL_MAX,
    DeliveryStatus,
    EventType,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Linli-Signature"
EVENT_ID_HEADER = "Linli-Event-Id"
TIMEOUT = 5.0  # seconds per POST
RETRY_FOR = timedelta(hours=24)
FIRST_RETRY = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=1)
MAX_ENDPOINTS = 10  # per merchant
LOG_SIZE = 50
KEEP_FOR = timedelta(days=30)  # settled events and their delivery log, then swept
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Fact:
    """An event to write: whose, what, and the body's ``data``."""

    merchant_id: int
    type: EventType
    data: dict


@dataclass(frozen=True)
class LogRow:
    delivery: WebhookDelivery
    event: WebhookEvent
    url: str


# --------------------------------------------------------------------------- endpoints


def check_url(raw: str, *, allow_http: bool = False) -> str:
    """An https URL with a host that is not a private address; plain http to this machine
    only when ``allow_http`` (development, tests)."""
    url = (raw or "").strip()
    if not url or len(url) > URL_MAX or not url.isprintable() or " " in url:
        raise _bad_url()
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise _bad_url() from None
    if not host or parts.scheme not in ("https", "http"):
        raise _bad_url()
    host = host.rstrip(".")
    if _ipv4_spelling(host) and not _canonical_ip(host):  # 127.1, 2130706433, 0x7f000001 …
        raise Invalid(_l("不能发送到内网地址"), field="url")
    local = host in LOCAL_HOSTS
    if parts.scheme == "http" and not (allow_http and local):
        raise _bad_url()
    if local and not allow_http:
        raise Invalid(_l("不能发送到本机地址"), field="url")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and not local and not address.is_global:
        raise Invalid(_l("不能发送到内网地址"), field="url")
    return url


def _ipv4_spelling(host: str) -> bool:
    """Whether the resolver would read ``host`` as an IPv4 address (it takes shorthand and
    decimal or hex forms too)."""
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


def _canonical_ip(host: str) -> bool:
    try:
        return str(ipaddress.ip_address(host)) == host
    except ValueError:
        return False


class BlockedAddress(Exception):
    """The receiver's name resolves to an address we do not send to (private, loopback …)."""


def public_address(host: str, port: int, *, allow_local: bool = False) -> str:
    """The address to connect to for ``host``, checked when sending (a name may point inside
    the network, or be re-pointed after it was registered): every address it resolves to must
    be public; this machine only when ``allow_local`` and the name is a local one."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BlockedAddress("unresolved") from exc
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    local_ok = allow_local and host in LOCAL_HOSTS
    if not addresses or not all(a.is_global or (local_ok and a.is_loopback) for a in addresses):
        raise BlockedAddress("not public")
    return str(addresses[0])


def _pinned(url: str, allow_local: bool) -> tuple[str, dict, dict]:
    """The request to ``url`` sent to the address checked now (so a later answer of the
    resolver cannot send it elsewhere): URL with that address, Host header, TLS name."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = public_address(host, port, allow_local=allow_local)
    netloc = f"[{address}]" if ":" in address else address
    if parts.port:
        netloc += f":{parts.port}"
    headers = {"Host": parts.netloc.rsplit("@", 1)[-1]}
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return parts._replace(netloc=netloc).geturl(), headers, extensions


def _bad_url() -> Invalid:
    return Invalid(_l("请填写 https:// 开头的完整地址（最多 %(n)s 个字符）", n=URL_MAX), field="url")


def check_events(raw: list[str]) -> list[str]:
    known = {t.value for t in EventType}
    events = [t.value for t in EventType if t.value in set(raw or [])]
    if not events or any(e not in known for e in raw or []):
        raise Invalid(_l("请至少选择一种事件"), field="events")
    return events


def create_endpoint(session: Session, merchant_id: int, url: str, events: list[str], *,
                    allow_http: bool = False) -> WebhookEndpoint:
    """A new endpoint with a fresh signing secret (shown to the owner on the page)."""
    url = check_url(url, allow_http=allow_http)
    events = check_events(events)
    if len(endpoints_of(session, merchant_id)) >= MAX_ENDPOINTS:
        raise Invalid(_l("最多 %(n)s 个接收地址", n=MAX_ENDPOINTS), field="url")
    endpoint = WebhookEndpoint(merchant_id=merchant_id, url=url, events=events, active=True,
                               secret=f"whsec_{secrets.token_hex(24)}")
    session.add(endpoint)
    session.flush()
    return endpoint


def endpoints_of(session: Session, merchant_id: int) -> list[WebhookEndpoint]:
    return list(session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.merchant_id == merchant_id)
                                .order_by(WebhookEndpoint.id)))


def get_endpoint_for(session: Session, endpoint_id: int, merchant_id: int) -> WebhookEndpoint:
    """The tenant lookup: another merchant's endpoint is not found."""
    endpoint = session.scalar(select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id,
                                                            WebhookEndpoint.merchant_id == merchant_id))
    if endpoint is None:
        raise NotFound()
    return endpoint


def set_active(session: Session, endpoint: WebhookEndpoint, active: bool) -> None:
    """An inactive endpoint gets no new events; its pending deliveries wait (and give up
    after their 24 h like any other)."""
    endpoint.active = active
    session.flush()


def delete_endpoint(session: Session, endpoint: WebhookEndpoint) -> None:
    """The endpoint and its deliveries go; the events stay for the merchant's other endpoints."""
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    session.delete(endpoint)
    session.flush()


# --------------------------------------------------------------------------- the log


def deliveries_of(session: Session, merchant_id: int, limit: int = LOG_SIZE) -> list[LogRow]:
    """The merchant's latest deliveries, newest first, with their event and URL (one query)."""
    rows = session.execute(
        select(WebhookDelivery, WebhookEvent, WebhookEndpoint.url)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookEndpoint.merchant_id == merchant_id)
        .order_by(WebhookDelivery.id.desc()).limit(limit)
    )
    return [LogRow(d, e, url) for d, e, url in rows]


def get_delivery_for(session: Session, delivery_id: int, merchant_id: int) -> WebhookDelivery:
    """The tenant lookup: a delivery to another merchant's endpoint is not found."""
    delivery = session.scalar(
        select(WebhookDelivery).join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.id == delivery_id, WebhookEndpoint.merchant_id == merchant_id))
    if delivery is None:
        raise NotFound()
    return delivery


def redeliver(session: Session, delivery: WebhookDelivery, now: datetime | None = None) -> None:
    """Back to pending, due now (the clock's next tick sends it). One that already gave up
    gets this one try: its 24 h still count from the event."""
    endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
    if not endpoint.active:
        raise Conflict(_l("这个接收地址已停用，启用后才能重发"))
    delivery.status = DeliveryStatus.pending
    delivery.next_attempt_at = as_utc(now)
    session.flush()


# --------------------------------------------------------------------------- events


def redemption_fact(session: Session, redemption_id: int, type_: EventType) -> Fact | None:
    row = session.execute(
        select(Redemption, Coupon.short_code, Coupon.template_id, CouponTemplate.merchant_id)
        .join(Coupon, Coupon.id == Redemption.coupon_id)
        .join(CouponTemplate, CouponTemplate.id == Coupon.template_id)
        .where(Redemption.id == redemption_id)
    ).first()
    if row is None:
        return None
    red, code, template_id, merchant_id = row
    data = {"code": code, "template_id": template_id, "store_id": red.store_id, "redemption_id": red.id,
            "bill_fen": red.bill_fen, "discount_fen": red.discount_fen,
            "payable_fen": red.bill_fen - red.discount_fen, "redeemed_at": _iso(red.redeemed_at)}
    if type_ == EventType.coupon_reversed:
        reversed_at = session.scalar(select(RedemptionReversal.reversed_at)
                                     .where(RedemptionReversal.redemption_id == red.id))
        data["reversed_at"] = _iso(reversed_at) if reversed_at else None
    return Fact(merchant_id, type_, data)


def claim_fact(session: Session, coupon_id: int) -> Fact | None:
    row = session.execute(select(Coupon, CouponTemplate.merchant_id)
                          .join(CouponTemplate, CouponTemplate.id == Coupon.template_id)
                          .where(Coupon.id == coupon_id)).first()
    if row is None:
        return None
    coupon, merchant_id = row
    return Fact(merchant_id, EventType.coupon_claimed, {
        "code": coupon.short_code, "template_id": coupon.template_id, "store_id": coupon.origin_store_id,
        "campaign_id": coupon.origin_campaign_id, "source": getattr(coupon.source, "value", coupon.source),
        "claimed_at": _iso(coupon.issued_at), "valid_from": _iso(coupon.valid_from),
        "valid_until": _iso(coupon.valid_until)})


def campaign_fact(session: Session, campaign_id: int) -> Fact | None:
    """A merchant's campaign only: a region's (platform-funded) has no merchant to tell."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or campaign.merchant_id is None:
        return None
    return Fact(campaign.merchant_id, EventType.campaign_finished, {
        "campaign_id": campaign.id, "name": campaign.name, "state": getattr(campaign.state, "value", campaign.state),
        "send_from": _iso(campaign.send_from), "send_until": _iso(campaign.send_until),
        "finished_at": _iso(campaign.updated_at)})


def record(session: Session, fact: Fact | None, now: datetime | None = None) -> WebhookEvent | None:
    """The event and one pending delivery per active endpoint subscribed to its type; no rows
    at all when none is."""
    if fact is None:
        return None
    endpoints = [e for e in endpoints_of(session, fact.merchant_id) if e.active and fact.type.value in (e.events or [])]
    if not endpoints:
        return None
    now = as_utc(now)
    event = WebhookEvent(merchant_id=fact.merchant_id, type=fact.type, payload=fact.data, created_at=now)
    session.add(event)
    session.flush()
    session.add_all([WebhookDelivery(event_id=event.id, endpoint_id=e.id, status=DeliveryStatus.pending,
                                     next_attempt_at=now, created_at=now) for e in endpoints])
    session.flush()
    return event


# --------------------------------------------------------------------------- sending


def public_id(event: WebhookEvent) -> str:
    return f"evt_{event.id}"


def body_of(event: WebhookEvent) -> bytes:
    """The same bytes on every try (sorted keys), so a receiver's checks are stable too."""
    body = {"id": public_id(event), "type": getattr(event.type, "value", event.type),
            "created": _iso(event.created_at), "data": event.payload}
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def sweep(session: Session, now: datetime | None = None) -> int:
    """Forget events older than ``KEEP_FOR`` whose deliveries are all settled (succeeded or
    given up), with their deliveries: the log is for recent trouble, not an archive, and a
    pending delivery is never dropped. Returns how many events went."""
    cutoff = as_utc(now) - KEEP_FOR
    unsettled = select(WebhookDelivery.event_id).where(WebhookDelivery.status == DeliveryStatus.pending)
    old = select(WebhookEvent.id).where(WebhookEvent.created_at < cutoff, WebhookEvent.id.not_in(unsettled))
    # the deliveries first (SQLite may not cascade); the events then have none pending
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(old)))
    return session.execute(delete(WebhookEvent).where(WebhookEvent.id.in_(old))).rowcount or 0


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def backoff(attempts: int) -> timedelta:
    """30 s after the first failure, doubling, at most an hour apart."""
    return min(FIRST_RETRY * 2 ** (max(attempts, 1) - 1), MAX_BACKOFF)


def claim_due(session: Session, now: datetime | None = None) -> WebhookDelivery | None:
    """The most overdue pending delivery to an active endpoint, locked for this transaction
    (others skip it); None when nothing is due."""
    return session.scalar(
        select(WebhookDelivery)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.status == DeliveryStatus.pending, WebhookDelivery.next_attempt_at <= as_utc(now),
               WebhookEndpoint.active.is_(True))
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(1)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    )


def attempt(session: Session, client: httpx.Client, delivery: WebhookDelivery, now: datetime | None = None,
            *, allow_local: bool = False) -> bool:
    """POST the delivery's event and write the outcome: 2xx succeeds; anything else (another
    status, a redirect, a timeout, a refused connection) retries later, or gives up once the
    event is 24 h old. True when it succeeded."""
    now = as_utc(now)
    event = session.get(WebhookEvent, delivery.event_id)
    endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
    body = body_of(event)
    headers = {"Content-Type": "application/json", EVENT_ID_HEADER: public_id(event),
               SIGNATURE_HEADER: signature(endpoint.secret, int(time.time()), body),
               "User-Agent": "Linli-Webhooks/1"}
    status_code, error = None, ""
    try:
        url, host_header, extensions = _pinned(endpoint.url, allow_local)
        with client.stream("POST", url, content=body, headers={**headers, **host_header},
                           extensions=extensions) as resp:
            status_code = resp.status_code  # the body is not read: only the status matters
    except BlockedAddress:
        error = "address not allowed"
    except httpx.TimeoutException:
        error = "timeout"
    except Exception as exc:  # noqa: BLE001  (any failure of the receiver is a failed try)
        # the owner sees only "connection failed": refused / reset would map the network
        error = "connection failed"
        log.info("webhook delivery %s to %s: %s: %s", delivery.id, endpoint.url, type(exc).__name__, exc)
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.last_status_code = status_code
    if status_code is not None and 200 <= status_code < 300:
        delivery.status = DeliveryStatus.succeeded
        delivery.delivered_at = now
        delivery.last_error = ""
        session.flush()
        return True
    delivery.last_error = (error or f"HTTP {status_code}")[:ERROR_MAX]
    give_up_at = event.created_at + RETRY_FOR
    if now >= give_up_at:
        delivery.status = DeliveryStatus.failed
    else:
        delivery.next_attempt_at = min(now + backoff(delivery.attempts), give_up_at)
    session.flush()
    return False


def new_client() -> httpx.Client:
    return httpx.Client(timeout=TIMEOUT, follow_redirects=False)


def _iso(at: datetime | None) -> str | None:
    return as_utc(at).isoformat() if at is not None else None
