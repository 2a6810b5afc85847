"""Production refuses demo secrets; security headers on every page; signup refuses guessable
passwords."""
from __future__ import annotations

import base64
import hashlib
import html
import re

import pytest
from flask import render_template_string
from sqlalchemy import select

from accounts.models import User
from core.config import ROOT, DemoSecretsError
from core.db import db
from tests.support.merchants import PASSWORD, post_form
from tests.support.servers import make_test_app
from wecom.defaults import REAL_API_BASE

SECRET_NAMES = ["WECOM_CORP_ID", "WECOM_CONTACT_SECRET", "WECOM_CALLBACK_TOKEN", "WECOM_CALLBACK_AES_KEY",
                "WECHAT_OA_SECRET", "SECRET_KEY"]
REAL_VALUES = {
    "WECOM_CORP_ID": "ww0123456789abcdef",
    "WECOM_CONTACT_SECRET": "a-real-contact-secret-from-the-console",
    "WECOM_CALLBACK_TOKEN": "RealToken123",
    "WECOM_CALLBACK_AES_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    "WECHAT_OA_SECRET": "0123456789abcdef0123456789abcdef",
}


@pytest.fixture
def clean_env(monkeypatch):
    for name in [*SECRET_NAMES, "WECOM_API_BASE", "TESTING"]:
        monkeypatch.delenv(name, raising=False)


def production_app(tmp_path, database_urls, redis_url, **config):
    return make_test_app(tmp_path / "prod", database_urls["sqlite"], redis_url, TESTING=False, **config)


def test_real_wecom_with_demo_secrets_is_refused_naming_each(clean_env, tmp_path, database_urls, redis_url):
    with pytest.raises(DemoSecretsError) as info:
        production_app(tmp_path, database_urls, redis_url)  # SECRET_KEY: the tests' committed one
    assert info.value.names == SECRET_NAMES
    for name in SECRET_NAMES:
        assert name in str(info.value)
    # one forgotten variable is named alone
    with pytest.raises(DemoSecretsError) as info:
        production_app(tmp_path, database_urls, redis_url, SECRET_KEY="k" * 64,
                       **{**REAL_VALUES, "WECOM_CALLBACK_TOKEN": "LinliDemoToken2026"})
    assert info.value.names == ["WECOM_CALLBACK_TOKEN"]


def test_real_wecom_with_real_secrets_builds(clean_env, tmp_path, database_urls, redis_url):
    app = production_app(tmp_path, database_urls, redis_url, SECRET_KEY="", **REAL_VALUES)
    assert app.config["WECOM_API_BASE"] == REAL_API_BASE
    assert (tmp_path / "prod" / "secret_key").exists()  # a generated key is nobody's demo value
    app.extensions["redis"].close()


def test_simulator_and_tests_keep_the_demo_secrets(clean_env, tmp_path, database_urls, redis_url):
    app = production_app(tmp_path, database_urls, redis_url, WECOM_API_BASE="http://127.0.0.1:5001/cgi-bin/")
    assert app.config["WECOM_CORP_ID"] == "ww5a9c2d4e6f708192"
    app.extensions["redis"].close()
    app = make_test_app(tmp_path / "t", database_urls["sqlite"], redis_url)  # TESTING, real base
    app.extensions["redis"].close()


# ------------------------------------------------------------------ headers


def _csp(resp) -> dict[str, str]:
    policy = resp.headers["Content-Security-Policy"]
    return {d.split(" ", 1)[0]: d.split(" ", 1)[1] if " " in d else "" for d in policy.split("; ")}


def test_security_headers_on_pages(client):
    for url in ("/auth/login", "/static/linli.css", "/no-such-page"):
        resp = client.get(url)
        resp.close()  # the static file's handle
        csp = _csp(resp)
        assert csp["default-src"] == "'self'", url
        assert csp["frame-ancestors"] == "'none'" and csp["object-src"] == "'none'"
        assert "'unsafe-inline'" not in csp["script-src"]
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "same-origin"
        assert "Strict-Transport-Security" not in resp.headers


def test_inline_scripts_carry_the_requests_nonce(app, client):
    app.add_url_rule("/_nonce", "nonce_probe", lambda: render_template_string('<script nonce="{{ csp_nonce() }}"></script>'))
    resp = client.get("/_nonce")
    nonce = re.search(r'nonce="([^"]+)"', resp.get_data(as_text=True)).group(1)
    assert f"'nonce-{nonce}'" in _csp(resp)["script-src"]
    assert nonce not in client.get("/_nonce").headers["Content-Security-Policy"]  # one per request


def test_every_template_script_is_allowed_by_the_policy(client):
    """Inline <script>s need the nonce; constant inline handlers are allowed by hash."""
    script_src = _csp(client.get("/auth/login"))["script-src"]
    for path in (ROOT / "templates").rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag or 'nonce="{{ csp_nonce() }}"' in tag, f"{path}: {tag}"
        for handler in re.findall(r'\son[a-z]+="([^"]*)"', text):
            digest = base64.b64encode(hashlib.sha256(html.unescape(handler).encode()).digest()).decode()
            assert f"'sha256-{digest}'" in script_src, f"{path}: {handler}"


def test_hsts_when_cookies_are_secure(database_urls, redis_url, tmp_path):
    app = make_test_app(tmp_path / "i", database_urls["sqlite"], redis_url, SESSION_COOKIE_SECURE=True)
    with app.app_context():
        resp = app.test_client().get("/auth/login")
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
    app.extensions["redis"].close()


# ------------------------------------------------------------------ passwords


@pytest.mark.parametrize("password", ["password123", "12345678", "qwertyuiop", "laowang2024"])
def test_signup_refuses_guessable_passwords(client, password):
    resp = post_form(client, "/auth/signup", {"username": "laowang", "password": password, "confirm": password})
    assert resp.status_code == 200
    assert "密码太常见或太容易猜到" in resp.get_data(as_text=True)
    assert db.session.scalar(select(User).where(User.username == "laowang")) is None


def test_signup_refuses_the_username_as_password(client):
    resp = post_form(client, "/auth/signup", {"username": "Xu-Jiahui-2026", "password": "xu-jiahui-2026",
                                              "confirm": "xu-jiahui-2026"})
    assert resp.status_code == 200
    assert "密码不能与用户名相同" in resp.get_data(as_text=True)


def test_signup_accepts_a_decent_password(client):
    resp = post_form(client, "/auth/signup", {"username": "laowang", "password": PASSWORD, "confirm": PASSWORD})
    assert resp.status_code == 302
