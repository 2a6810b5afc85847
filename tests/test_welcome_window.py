"""Past capacity the welcome degrades instead of wasting WeCom calls: a job that starts after
the code is about to die (``WELCOME_CODE_MAX_AGE``) sends nothing and counts the miss, and the
operator sees the count."""
from __future__ import annotations

from datetime import timedelta

from core.db import utcnow
from marketplace import welcome
from tests.support.merchants import FreshContextClient, login, make_admin


class NoWeCom:
    """Stands in for the client to prove no call is made (any attribute access fails)."""

    def __getattr__(self, name):
        raise AssertionError(f"WeCom was called ({name})")


def test_a_code_older_than_the_window_is_not_sent_and_is_counted(app):
    app.extensions["wecom"] = NoWeCom()
    outcome = welcome.send_welcome("code-1", "欢迎", issued_at=utcnow() - timedelta(seconds=19))
    assert outcome == welcome.STALE
    assert welcome.missed_count() == 1 and welcome.stale_count() == 1


def test_a_fresh_code_is_sent(app):
    sent = []

    class Messages:
        def send_welcome(self, code, **kw):
            sent.append(code)

    class Client:
        messages = Messages()

    app.extensions["wecom"] = Client()
    assert welcome.send_welcome("code-2", "欢迎", issued_at=utcnow() - timedelta(seconds=3)) == welcome.SENT
    assert sent == ["code-2"] and welcome.stale_count() == 0


def test_the_window_is_a_setting(app):
    app.config["WELCOME_CODE_MAX_AGE"] = 5
    app.extensions["wecom"] = NoWeCom()
    assert welcome.send_welcome("code-3", "欢迎", issued_at=utcnow() - timedelta(seconds=6)) == welcome.STALE


def test_the_operator_sees_the_misses(app):
    app.extensions["wecom"] = NoWeCom()
    welcome.send_welcome("code-4", "欢迎", issued_at=utcnow() - timedelta(seconds=60))
    app.test_client_class = FreshContextClient
    client = app.test_client()
    make_admin("ops-window")
    login(client, "ops-window")
    page = client.get("/admin/events").get_data(as_text=True)
    assert "欢迎语未送达：1 次（其中 1 次因处理太晚" in page
