"""Callbacks: build the event XML, queue it, deliver it encrypted from a background thread.

Delivery follows WeCom: POST ``?msg_signature=&timestamp=&nonce=`` with the
``<xml><ToUserName/><Encrypt/><AgentID/></xml>`` envelope; anything but HTTP 200 within the
timeout counts as a failure and the same request is sent again, ``callback_tries`` in all.
Only user actions (phone, console) call ``emit``; API writes never do, as in WeCom.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from wecom.simulator.models import Callback

log = logging.getLogger(__name__)


def _cdata(value: str) -> str:
    return "<![CDATA[" + str(value).replace("]]>", "]]]]><![CDATA[>") + "]]>"


def event_xml(corp_id: str, create_time: int, event: str, fields: dict[str, Any]) -> str:
    """The decrypted event body, field order and CDATA use as in WeCom's doc samples."""
    parts = [
        f"<ToUserName>{_cdata(corp_id)}</ToUserName>",
        f"<FromUserName>{_cdata('sys')}</FromUserName>",
        f"<CreateTime>{create_time}</CreateTime>",
        f"<MsgType>{_cdata('event')}</MsgType>",
        f"<Event>{_cdata(event)}</Event>",
    ]
    for name, value in fields.items():
        if value is None or value == "":
            continue
        if isinstance(value, list):
            items = "".join(f"<Item>{_cdata(v)}</Item>" for v in value)
            parts.append(f"<{name}>{items}</{name}>")
        elif isinstance(value, int):
            parts.append(f"<{name}>{value}</{name}>")
        else:
            parts.append(f"<{name}>{_cdata(value)}</{name}>")
    return "<xml>" + "".join(parts) + "</xml>"


def envelope(corp_id: str, encrypt: str, agent_id: str) -> str:
    return (
        f"<xml><ToUserName>{_cdata(corp_id)}</ToUserName><Encrypt>{_cdata(encrypt)}</Encrypt>"
        f"<AgentID>{_cdata(agent_id)}</AgentID></xml>"
    )


def emit(session: Session, sim, event: str, change_type: str, **fields: Any) -> Callback:
    """Queue a callback in the caller's transaction; it is sent after commit."""
    body = event_xml(sim.settings.corp_id, int(sim.now()), event, {"ChangeType": change_type, **fields})
    url = sim.settings.callback_url
    row = Callback(
        event=event,
        change_type=change_type,
        plaintext=body,
        url=url or "",
        status="pending" if url else "skipped",
        created_at=sim.now(),
    )
    session.add(row)
    session.info["emitted"] = True
    return row


class Dispatcher:
    """One daemon thread delivering pending callbacks in order (started on first use)."""

    def __init__(self, sim) -> None:
        self.sim = sim
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def kick(self) -> None:
        with self._lock:
            self._idle.clear()
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="wecom-sim-callbacks", daemon=True)
                self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every queued callback has been delivered or given up (tests)."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        with httpx.Client() as http:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    self._deliver_pending(http)
                except Exception:  # keep the thread alive: a bad row must not stop delivery
                    log.exception("callback delivery loop failed")
                if not self._wake.is_set():
                    self._idle.set()
                self._wake.wait(1.0)

    def _deliver_pending(self, http: httpx.Client) -> None:
        while not self._stop.is_set():
            with self.sim.reading() as session:
                row = session.scalars(
                    select(Callback).where(Callback.status == "pending").order_by(Callback.id).limit(1)
                ).first()
            if row is None:
                return
            self._deliver(http, row)

    def _deliver(self, http: httpx.Client, row: Callback) -> None:
        s = self.sim.settings
        timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**10))
        encrypt, signature = self.sim.crypto.encrypt_message(row.plaintext, timestamp, nonce)
        body = envelope(s.corp_id, encrypt, s.agent_id)
        params = {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce}
        status, error, attempts = None, None, 0
        for attempt in range(max(1, s.callback_tries)):
            attempts = attempt + 1
            try:
                response = http.post(
                    row.url, params=params, content=body.encode(),
                    headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=s.callback_timeout,
                )
                status, error = response.status_code, None
                if status == 200:
                    break
                error = f"HTTP {status}"
            except httpx.HTTPError as exc:
                status, error = None, f"{type(exc).__name__}: {exc}"
            if attempt + 1 < s.callback_tries:
                time.sleep(s.callback_retry_delay)
        with self.sim.transaction() as session:
            saved = session.get(Callback, row.id)
            saved.attempts = attempts
            saved.last_status = status
            saved.last_error = error
            saved.status = "delivered" if status == 200 else "failed"
            saved.finished_at = self.sim.now()

