"""The callback receiver end to end: WeCom's encrypted POST → event row → job on ``high`` →
a registered handler; and every way a request is refused leaves nothing behind."""
from __future__ import annotations

import io
import json
import logging
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis as redis_lib
from flask import Flask
from sqlalchemy import func, select, update

from core.db import db
from core.extensions import QUEUE_HIGH, get_queue
from core.inbox.models import WeComEvent
from marketplace.worker import drain
from wecom.callback import DEDUPE_PREFIX, CallbackSettings, create_callback_blueprint, parse_event_xml
from wecom.crypto import WeComCrypto, signature
from wecom.events import registry

URL = "/wecom/callback"
VECTORS = json.loads((Path(__file__).parent / "wecom-crypto-vectors.json").read_text("utf-8"))
REAL_EVENT = next(s for s in VECTORS["sets"] if s["name"] == "add_external_contact")

PROBE = "linli_test_probe"  # a ChangeType no domain handler listens to
received: list[dict] = []


@registry.on("change_external_contact", PROBE)
def _probe_handler(payload: dict) -> None:
    received.append(payload)


def event_xml(external_userid: str = "wmProbe0001", change_type: str = PROBE) -> str:
    return (
        "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_contact]]></Event>"
        f"<ChangeType><![CDATA[{change_type}]]></ChangeType><UserID><![CDATA[staff_li]]></UserID>"
        f"<ExternalUserID><![CDATA[{external_userid}]]></ExternalUserID>"
        "<State><![CDATA[s12-door]]></State></xml>"
    )


def envelope(encrypt: str, to: str = "ww0") -> str:
    return (
        f"<xml><ToUserName><![CDATA[{to}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt>"
        "<AgentID><![CDATA[1000002]]></AgentID></xml>"
    )


class Sender:
    """Builds requests the way WeCom does, from a token/key/receive id."""

    def __init__(self, client, token: str, aes_key: str, receive_id: str) -> None:
        self.client = client
        self.aes_key = aes_key
        self.crypto = WeComCrypto(token, aes_key, receive_id)

    def post(self, plaintext: str, *, timestamp: str | None = None, nonce: str = "1385925",
             receive_id: str | None = None, sig: str | None = None, body: str | None = None):
        ts = timestamp or str(int(time.time()))
        crypto = self.crypto
        if receive_id is not None:
            crypto = WeComCrypto(crypto.token, self.aes_key, receive_id)
        encrypt, good_sig = crypto.encrypt_message(plaintext, ts, nonce)
        return self.post_raw(body or envelope(encrypt), ts, nonce, sig or good_sig)

    def post_raw(self, body: str | bytes, ts: str, nonce: str, sig: str, **kw):
        query = {"msg_signature": sig, "timestamp": ts, "nonce": nonce}
        return self.client.post(URL, query_string=query, data=body, content_type="text/xml", **kw)


@pytest.fixture
def sender(app, client) -> Sender:
    cfg = app.config
    return Sender(client, cfg["WECOM_CALLBACK_TOKEN"], cfg["WECOM_CALLBACK_AES_KEY"], cfg["WECOM_CORP_ID"])


def event_count() -> int:
    return db.session.scalar(select(func.count()).select_from(WeComEvent))


def dedupe_keys(conn) -> list[bytes]:
    return list(conn.scan_iter(DEDUPE_PREFIX + "*"))


def assert_nothing_stored(app) -> None:
    conn = app.extensions["redis"]
    assert event_count() == 0
    assert dedupe_keys(conn) == []
    assert get_queue(QUEUE_HIGH).count == 0


# --- the happy path -------------------------------------------------------------------------

def test_valid_event_is_stored_enqueued_and_dispatched(app, sender):
    received.clear()
    resp = sender.post(event_xml())
    assert resp.status_code == 200
    assert resp.data == b""

    row = db.session.scalars(select(WeComEvent)).one()
    assert (row.event, row.change_type, row.status) == ("change_external_contact", PROBE, "pending")
    assert row.payload["ExternalUserID"] == "wmProbe0001"
    assert len(dedupe_keys(app.extensions["redis"])) == 1
    assert get_queue(QUEUE_HIGH).job_ids == [f"wecom-event-{row.id}"]
    db.session.remove()

    drain(app)

    assert [p["ExternalUserID"] for p in received] == ["wmProbe0001"]
    assert received[0]["UserID"] == "staff_li" and received[0]["State"] == "s12-door"
    assert db.session.scalars(select(WeComEvent)).one().status == "done"


def test_replay_of_the_same_request_is_dropped(app, sender):
    ts, nonce = str(int(time.time())), "77"
    encrypt, sig = sender.crypto.encrypt_message(event_xml("wmReplay"), ts, nonce)
    first = sender.post_raw(envelope(encrypt), ts, nonce, sig)
    second = sender.post_raw(envelope(encrypt), ts, nonce, sig)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.data == b""
    assert event_count() == 1
    assert get_queue(QUEUE_HIGH).count == 1


def test_url_verification_returns_plaintext_raw(app, client):
    cfg = app.config
    crypto = WeComCrypto(cfg["WECOM_CALLBACK_TOKEN"], cfg["WECOM_CALLBACK_AES_KEY"], cfg["WECOM_CORP_ID"])
    echostr = crypto.encrypt("5927782489442352469")
    ts, nonce = "1411443780", "437374425"
    query = {"msg_signature": signature(crypto.token, ts, nonce, echostr), "timestamp": ts,
             "nonce": nonce, "echostr": echostr}
    resp = client.get(URL, query_string=query)
    assert resp.status_code == 200
    assert resp.data == b"5927782489442352469"
    assert resp.mimetype == "text/plain"

    query["msg_signature"] = "0" * 40
    assert client.get(URL, query_string=query).status_code == 400
    del query["echostr"]
    assert client.get(URL, query_string=query).status_code == 400


# --- rejections: each leaves nothing behind -------------------------------------------------

XXE = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    "<xml><Encrypt>&xxe;</Encrypt></xml>"
)
LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    "<xml><Encrypt>&lol3;</Encrypt></xml>"
)


def _forged(sender):
    return sender.post(event_xml(), sig="0" * 40)


def _wrong_receive_id(sender):
    return sender.post(event_xml(), receive_id="ww_someone_else")


def _stale(sender):
    return sender.post(event_xml(), timestamp=str(int(time.time()) - 301))


def _future(sender):
    return sender.post(event_xml(), timestamp=str(int(time.time()) + 301))


def _bad_timestamp(sender):
    return sender.post(event_xml(), timestamp="yesterday")


def _malformed_outer(sender):
    return sender.post(event_xml(), body="<xml><Encrypt>abc")


def _no_encrypt(sender):
    return sender.post(event_xml(), body="<xml><ToUserName>x</ToUserName></xml>")


def _malformed_inner(sender):
    return sender.post("<xml><Event>change_external_contact</Event>")


def _xxe_outer(sender):
    return sender.post(event_xml(), body=XXE)


def _xxe_inner(sender):
    return sender.post(XXE.replace("<Encrypt>&xxe;</Encrypt>", "<Event>&xxe;</Event>"))


def _laughs_outer(sender):
    return sender.post(event_xml(), body=LAUGHS)


def _laughs_inner(sender):
    return sender.post(LAUGHS.replace("Encrypt", "Event"))


def _bad_ciphertext(sender):
    ts, nonce, junk = str(int(time.time())), "5", "bm90IGEgY2lwaGVydGV4dA=="
    return sender.post_raw(envelope(junk), ts, nonce, signature(sender.crypto.token, ts, nonce, junk))


def _oversized(sender):
    return sender.post(event_xml(), body="<xml>" + " " * 70_000 + "</xml>")


REJECTIONS = [
    (_forged, 403, "bad signature"),
    (_wrong_receive_id, 403, "receive id"),
    (_stale, 400, "stale timestamp"),
    (_future, 400, "stale timestamp"),
    (_bad_timestamp, 400, "bad timestamp"),
    (_malformed_outer, 400, "malformed XML"),
    (_no_encrypt, 400, "missing Encrypt"),
    (_malformed_inner, 400, "malformed event XML"),
    (_xxe_outer, 400, "DTDForbidden"),
    (_xxe_inner, 400, "DTDForbidden"),
    (_laughs_outer, 400, "DTDForbidden"),
    (_laughs_inner, 400, "DTDForbidden"),
    (_bad_ciphertext, 400, "decrypt failed"),
    (_oversized, 413, "body too large"),
]


@pytest.mark.parametrize("make, status, reason", REJECTIONS, ids=[r[0].__name__.strip("_") for r in REJECTIONS])
def test_rejections_store_nothing(app, sender, caplog, make, status, reason):
    with caplog.at_level(logging.WARNING, logger="wecom.callback"):
        resp = make(sender)
    assert resp.status_code == status
    assert reason in resp.get_data(as_text=True)
    assert resp.mimetype == "text/plain"
    assert any(r.name == "wecom.callback" and reason in r.getMessage() for r in caplog.records)
    assert_nothing_stored(app)


def test_missing_query_parameters(app, client):
    resp = client.post(URL, data=envelope("abc"), content_type="text/xml")
    assert resp.status_code == 400
    assert_nothing_stored(app)


# --- the shared real-shaped event on a minimal app, with an injected clock ------------------

@pytest.fixture
def plain_redis(redis_url):
    conn = redis_lib.Redis.from_url(redis_url)
    yield conn
    for key in dedupe_keys(conn):
        conn.delete(key)
    conn.close()


def minimal_app(conn, sink, *, clock, max_bytes=65536) -> Flask:
    s = REAL_EVENT
    settings = CallbackSettings(s["token"], s["encoding_aes_key"], s["receive_id"], max_bytes=max_bytes)
    app = Flask(__name__)
    app.register_blueprint(
        create_callback_blueprint(settings=lambda: settings, redis=lambda: conn, sink=sink, clock=clock)
    )
    return app


def real_event_request(client):
    v = REAL_EVENT["event"]
    query = {"msg_signature": v["msg_signature"], "timestamp": v["timestamp"], "nonce": v["nonce"]}
    return client.post(URL, query_string=query, data=envelope(v["encrypt"]), content_type="text/xml")


def test_real_shaped_add_external_contact(plain_redis):
    calls = []
    app = minimal_app(plain_redis, lambda p, d: calls.append((p, d)), clock=lambda: 1700000000 + 299)
    resp = real_event_request(app.test_client())
    assert (resp.status_code, resp.data) == (200, b"")
    [(payload, digest)] = calls
    assert payload == {
        "ToUserName": "wx5823bf96d3bd56c7", "FromUserName": "sys", "CreateTime": "1700000000",
        "MsgType": "event", "Event": "change_external_contact", "ChangeType": "add_external_contact",
        "UserID": "staff_li", "ExternalUserID": "wmDinerAAAAexample0001", "State": "s12-door",
        "WelcomeCode": "WELCOMECODE0001",
    }
    assert len(digest) == 64
    assert plain_redis.ttl(DEDUPE_PREFIX + digest) > 86000


def test_clock_decides_staleness(plain_redis):
    calls = []
    app = minimal_app(plain_redis, lambda p, d: calls.append(p), clock=lambda: 1700000000 + 301)
    resp = real_event_request(app.test_client())
    assert (resp.status_code, resp.get_data(as_text=True)) == (400, "stale timestamp")
    assert calls == [] and dedupe_keys(plain_redis) == []


def test_sink_failure_releases_dedupe_key_so_a_retry_succeeds(plain_redis):
    calls = []

    def flaky_sink(payload, digest):
        calls.append(digest)
        if len(calls) == 1:
            raise RuntimeError("database down")

    app = minimal_app(plain_redis, flaky_sink, clock=lambda: 1700000000)
    client = app.test_client()
    assert real_event_request(client).status_code == 500
    assert dedupe_keys(plain_redis) == []
    assert real_event_request(client).status_code == 200
    assert len(calls) == 2 and len(dedupe_keys(plain_redis)) == 1


def test_chunked_body_without_length_is_capped(plain_redis):
    calls = []
    app = minimal_app(plain_redis, lambda p, d: calls.append(p), clock=lambda: 1700000000, max_bytes=1024)
    v = REAL_EVENT["event"]
    query = {"msg_signature": v["msg_signature"], "timestamp": v["timestamp"], "nonce": v["nonce"]}
    resp = app.test_client().post(
        URL, query_string=query, input_stream=io.BytesIO(b"<xml>" + b" " * 4096 + b"</xml>"),
        content_type="text/xml", environ_overrides={"wsgi.input_terminated": True},
    )
    assert resp.status_code == 413
    assert calls == [] and dedupe_keys(plain_redis) == []


def test_parse_event_xml_lists_member_changes():
    xml = (
        "<xml><Event><![CDATA[change_external_chat]]></Event><ChatId><![CDATA[wrOgQhDgAA]]></ChatId>"
        "<ChangeType><![CDATA[update]]></ChangeType><UpdateDetail><![CDATA[add_member]]></UpdateDetail>"
        "<MemChangeCnt>2</MemChangeCnt><MemChangeList><Item><![CDATA[Jack]]></Item>"
        "<Item><![CDATA[Rose]]></Item></MemChangeList></xml>"
    )
    payload = parse_event_xml(xml)
    assert payload["MemChangeList"] == ["Jack", "Rose"]
    assert payload["MemChangeCnt"] == "2" and payload["ChatId"] == "wrOgQhDgAA"
    assert parse_event_xml("<xml><MemChangeList>Jack,Rose</MemChangeList></xml>")["MemChangeList"] == ["Jack", "Rose"]


def test_redis_outage_still_reaches_the_sink():
    """Without Redis the dedupe is skipped; the sink's unique digest is the backstop."""
    calls = []
    down = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=None)
    app = minimal_app(down, lambda p, d: calls.append(d), clock=lambda: 1700000000)
    assert real_event_request(app.test_client()).status_code == 200
    assert len(calls) == 1


def test_redis_outage_answers_200_and_loses_nothing(app, database_urls, backend, tmp_path, caplog):
    """With Redis unreachable (no dedupe, no queue) the event is still stored and answered
    200; the periodic sweep gives it a job once Redis is back."""
    from core.inbox.jobs import requeue_stranded_events
    from tests.support.servers import make_test_app

    down = make_test_app(tmp_path / "down", database_urls[backend], "redis://127.0.0.1:9/0")
    with down.app_context():
        cfg = down.config
        outage = Sender(down.test_client(), cfg["WECOM_CALLBACK_TOKEN"], cfg["WECOM_CALLBACK_AES_KEY"],
                        cfg["WECOM_CORP_ID"])
        resp = outage.post(event_xml("wmOutage"))
        db.session.remove()
    assert resp.status_code == 200
    assert "stored but not enqueued" in caplog.text

    received.clear()
    row = db.session.scalars(select(WeComEvent)).one()
    assert (row.payload["ExternalUserID"], row.status) == ("wmOutage", "pending")
    db.session.execute(update(WeComEvent).values(received_at=row.received_at - timedelta(minutes=6)))
    db.session.commit()
    assert requeue_stranded_events() == 1
    drain(app)
    assert [p["ExternalUserID"] for p in received] == ["wmOutage"]
    db.session.remove()  # the job ran in a session of its own
    assert db.session.scalars(select(WeComEvent)).one().status == "done"
