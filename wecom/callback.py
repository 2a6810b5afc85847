"""The WeCom callback receiver: verify, decrypt, de-duplicate, hand over, answer at once.

WeCom waits 5 s and retries failures, so the view does no work of its own: an accepted event
goes to ``sink(payload, digest)`` (which stores it and enqueues a job) and the answer is an
empty 200. Every rejection is logged and leaves nothing behind — no dedupe key, no row.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Callable

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring
from flask import Blueprint, Response, request
from redis import Redis, RedisError

from wecom.crypto import CryptoError, WeComCrypto

log = logging.getLogger("wecom.callback")

DEDUPE_PREFIX = "wecom:callback:seen:"
LIST_FIELDS = {"MemChangeList"}  # <MemChangeList><Item>a</Item>…</MemChangeList> or "a,b"


@dataclass(frozen=True)
class CallbackSettings:
    token: str
    encoding_aes_key: str
    receive_id: str
    max_age: int = 300  # seconds either side of our clock
    max_bytes: int = 65536
    dedupe_ttl: int = 86400


class MalformedXML(ValueError):
    """Unparseable XML, or XML with a DTD/entities (XXE, billion laughs)."""


class Rejected(Exception):
    """A request we refuse; carries the HTTP status and a short reason for the log and body."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def parse_event_xml(text: str | bytes) -> dict:
    """A flat dict of the root's children; list fields (``MemChangeList``) become lists.

    defusedxml with ``forbid_dtd``: callbacks never carry a DTD, so any DTD is an attack.
    """
    try:
        root = fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException) as exc:
        raise MalformedXML(f"{type(exc).__name__}: {exc}") from exc
    payload: dict = {}
    for child in root:
        items = [item.text or "" for item in child]
        if items:
            payload[child.tag] = items
        elif child.tag in LIST_FIELDS:
            payload[child.tag] = [v for v in (child.text or "").split(",") if v]
        else:
            payload[child.tag] = child.text or ""
    return payload


def dedupe_key(digest: str) -> str:
    return DEDUPE_PREFIX + digest


def create_callback_blueprint(
    *,
    settings: Callable[[], CallbackSettings],
    redis: Callable[[], Redis],
    sink: Callable[[dict, str], None],
    clock: Callable[[], float] = time.time,
) -> Blueprint:
    """``GET|POST /wecom/callback``; ``settings``/``redis`` are read per request (app context)."""
    bp = Blueprint("wecom_callback", __name__)

    @bp.errorhandler(Rejected)
    def rejected(exc: Rejected):
        log.warning("rejected %s %s: %s (from %s)", request.method, request.path, exc.reason,
                    request.remote_addr)
        return _text(exc.reason, exc.status)

    @bp.get("/wecom/callback")
    def verify_url():
        cfg = settings()
        sig, ts, nonce, echostr = _params("msg_signature", "timestamp", "nonce", "echostr")
        try:
            plain = _crypto(cfg).verify_url(sig, ts, nonce, echostr)
        except CryptoError as exc:
            raise Rejected(400, f"verification failed: {exc}") from exc
        return _text(plain, 200)

    @bp.post("/wecom/callback")
    def receive():
        cfg = settings()
        sig, ts, nonce = _params("msg_signature", "timestamp", "nonce")
        body = _read_body(cfg.max_bytes)
        _check_fresh(ts, clock(), cfg.max_age)
        encrypt = _envelope(body).get("Encrypt")
        if not isinstance(encrypt, str) or not encrypt:
            raise Rejected(400, "missing Encrypt")
        plaintext = _decrypt(_crypto(cfg), sig, ts, nonce, encrypt)
        try:
            payload = parse_event_xml(plaintext)
        except MalformedXML as exc:
            raise Rejected(400, f"malformed event XML ({exc})") from exc

        digest = hashlib.sha256(plaintext.encode()).hexdigest()
        conn = redis()
        if not _claim(conn, digest, cfg.dedupe_ttl):
            log.info("duplicate callback %s dropped", digest)
            return _text("", 200)
        try:
            sink(payload, digest)
        except Exception:
            log.exception("callback sink failed for %s; releasing dedupe key", digest)
            _release(conn, digest)
            return _text("sink failed", 500)
        return _text("", 200)

    return bp


def _text(body: str, status: int) -> Response:
    return Response(body, status=status, mimetype="text/plain")


def _crypto(cfg: CallbackSettings) -> WeComCrypto:
    return WeComCrypto(cfg.token, cfg.encoding_aes_key, cfg.receive_id)


def _params(*names: str) -> list[str]:
    values = [request.args.get(name, "") for name in names]
    if not all(values):
        raise Rejected(400, "missing query parameters")
    return values


def _read_body(max_bytes: int) -> bytes:
    """Refuse on the declared length before reading; cap the read for chunked bodies."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise Rejected(413, "body too large")
    chunks, size = [], 0
    while size <= max_bytes:  # a raw stream may return short reads
        chunk = request.stream.read(max_bytes + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > max_bytes:
        raise Rejected(413, "body too large")
    return b"".join(chunks)


def _check_fresh(timestamp: str, now: float, max_age: int) -> None:
    try:
        sent = int(timestamp)
    except ValueError:
        raise Rejected(400, "bad timestamp") from None
    if abs(now - sent) > max_age:
        raise Rejected(400, "stale timestamp")


def _envelope(body: bytes) -> dict:
    try:
        return parse_event_xml(body)
    except MalformedXML as exc:
        raise Rejected(400, f"malformed XML ({exc})") from exc


def _decrypt(crypto: WeComCrypto, sig: str, ts: str, nonce: str, encrypt: str) -> str:
    try:
        crypto.check_signature(sig, ts, nonce, encrypt)
    except CryptoError:
        raise Rejected(403, "bad signature") from None
    try:
        return crypto.decrypt(encrypt)
    except CryptoError as exc:
        # A correctly signed message for another corp/app is a refusal, not a bad request.
        status = 403 if "receive id" in str(exc) else 400
        raise Rejected(status, f"decrypt failed: {exc}") from exc


def _claim(conn: Redis, digest: str, ttl: int) -> bool:
    """SET NX: True for the first sighting. If Redis is down, let the sink's unique digest
    decide rather than dropping the event."""
    try:
        return bool(conn.set(dedupe_key(digest), b"1", nx=True, ex=ttl))
    except RedisError:
        log.warning("redis unavailable; skipping callback dedupe for %s", digest, exc_info=True)
        return True


def _release(conn: Redis, digest: str) -> None:
    try:
        conn.delete(dedupe_key(digest))
    except RedisError:
        log.warning("could not release dedupe key for %s", digest, exc_info=True)
