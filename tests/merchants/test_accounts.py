"""Accounts: sign up, sign in/out, CSRF, login throttling, role checks, cookie flags."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from accounts.models import Role, User
from accounts.services import AccountError, authenticate, create_admin, create_user
from core.db import db
from tests.support.merchants import PASSWORD, client, csrf_token, fast_hashing, login, make_admin, make_owner, post_form  # noqa: F401  (fixtures)


def test_signup_creates_owner_and_signs_in(client):
    resp = post_form(
        client, "/auth/signup",
        {"username": "laowang", "display_name": "老王", "password": PASSWORD, "confirm": PASSWORD},
    )
    assert resp.status_code == 302
    assert resp.headers["Location"].endswith("/portal/enrol")
    user = db.session.scalar(select(User).where(User.username == "laowang"))
    assert user.role == Role.owner and user.merchant_id is None
    assert user.password_hash.startswith("scrypt:")
    assert client.get("/portal/enrol").status_code == 200


def test_signup_errors_render_on_the_form(client):
    make_owner("taken")
    resp = post_form(client, "/auth/signup", {"username": "taken", "password": PASSWORD, "confirm": PASSWORD})
    assert resp.status_code == 200
    assert "用户名已被占用" in resp.get_data(as_text=True)
    resp = post_form(client, "/auth/signup", {"username": "newbie", "password": PASSWORD, "confirm": "different1"})
    assert "两次输入的密码不一致" in resp.get_data(as_text=True)


def test_login_logout(client):
    make_owner("owner1")
    resp = login(client, "owner1")
    assert resp.status_code == 302
    assert client.get("/portal/enrol").status_code == 200
    token = csrf_token(client, "/portal/enrol")
    assert client.post("/auth/logout", data={"csrf_token": token}).status_code == 302
    resp = client.get("/portal/enrol")
    assert resp.status_code == 302 and "/auth/login" in resp.headers["Location"]


def test_wrong_password_is_refused(client):
    make_owner("owner1")
    resp = login(client, "owner1", "wrong-password")
    assert resp.status_code == 401
    assert "用户名或密码不正确" in resp.get_data(as_text=True)


def test_login_next_stays_on_site(client):
    make_owner("owner1")
    token = csrf_token(client, "/auth/login")
    resp = client.post("/auth/login?next=https://evil.example/x", data={"csrf_token": token, "username": "owner1", "password": PASSWORD})
    assert resp.status_code == 302 and "evil" not in resp.headers["Location"]


def test_post_without_csrf_token_is_rejected(client):
    make_owner("owner1")
    resp = client.post("/auth/login", data={"username": "owner1", "password": PASSWORD})
    assert resp.status_code == 400
    resp = client.post("/auth/signup", data={"username": "x1234", "password": PASSWORD, "confirm": PASSWORD})
    assert resp.status_code == 400
    login(client, "owner1")
    assert client.post("/auth/logout").status_code == 400


def test_wecom_callback_is_not_csrf_protected(client):
    # WeCom cannot send our token; its own signature check answers instead (not CSRF's 400 page).
    resp = client.post("/wecom/callback?msg_signature=x&timestamp=1&nonce=n", data=b"<xml></xml>")
    assert b"CSRF" not in resp.get_data()


def test_login_throttled_after_five_failures(client, redis_conn):
    make_owner("owner1")
    for _ in range(5):
        assert login(client, "owner1", "wrong-password").status_code == 401
    resp = login(client, "owner1", PASSWORD)  # even the right password waits
    assert resp.status_code == 429
    assert "登录失败次数过多" in resp.get_data(as_text=True)
    # another username from the same IP is unaffected
    make_owner("owner2")
    assert login(client, "owner2").status_code == 302


def test_successful_login_resets_the_counter(client):
    make_owner("owner1")
    for _ in range(4):
        login(client, "owner1", "wrong-password")
    assert login(client, "owner1").status_code == 302
    client.post("/auth/logout", data={"csrf_token": csrf_token(client, "/portal/enrol")})
    for _ in range(4):
        assert login(client, "owner1", "wrong-password").status_code == 401


def test_create_admin_creates_then_resets_password(app):
    with db.session.begin():
        admin = create_admin(db.session, "root", PASSWORD)
    with db.session.begin():
        again = create_admin(db.session, "root", "another-password")
    assert again.id == admin.id and again.role == Role.admin
    assert authenticate(db.session, "root", "another-password") is not None
    db.session.rollback()
    make_owner("owner1")
    with pytest.raises(AccountError):
        with db.session.begin():
            create_admin(db.session, "owner1", PASSWORD)


@pytest.mark.parametrize("username,password", [("ab", PASSWORD), ("valid_name", "short")])
def test_account_rules(app, username, password):
    with pytest.raises(AccountError):
        create_user(db.session, username=username, password=password, role=Role.owner)
    db.session.rollback()


def test_role_checks(client):
    make_admin("root")
    make_owner("owner1")
    login(client, "owner1")
    assert client.get("/admin/regions").status_code == 403
    assert client.get("/portal/review").status_code == 403
    client.post("/auth/logout", data={"csrf_token": csrf_token(client, "/portal/enrol")})
    login(client, "root")
    assert client.get("/admin/regions").status_code == 200
    assert client.get("/portal/review").status_code == 200
    assert client.get("/portal/enrol").status_code == 403  # admins do not enrol merchants


def test_anonymous_users_go_to_login(client):
    for url in ("/portal/", "/portal/review", "/admin/regions", "/portal/stores/1"):
        resp = client.get(url)
        assert resp.status_code == 302 and "/auth/login" in resp.headers["Location"], url


def test_cookie_flags(client):
    make_owner("owner1")
    token = csrf_token(client, "/auth/login")
    resp = client.post("/auth/login", data={"csrf_token": token, "username": "owner1", "password": PASSWORD, "remember": "y"})
    cookies = resp.headers.getlist("Set-Cookie")
    session_cookie = next(c for c in cookies if c.startswith("session="))
    remember_cookie = next(c for c in cookies if c.startswith("remember_token="))
    for cookie in (session_cookie, remember_cookie):
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_secure_cookies_when_configured(database_urls, redis_url, tmp_path):
    from tests.support.servers import make_test_app

    app = make_test_app(tmp_path / "i", database_urls["sqlite"], redis_url, SESSION_COOKIE_SECURE=True)
    assert app.config["SESSION_COOKIE_SECURE"] and app.config["REMEMBER_COOKIE_SECURE"]


def test_language_switch_sets_cookie(client):
    resp = client.get("/auth/login?lang=en")
    assert "lang=en" in resp.headers.get("Set-Cookie", "")
    assert "Sign in" in resp.get_data(as_text=True)
    resp = client.get("/auth/login")  # remembered
    assert "Sign in" in resp.get_data(as_text=True)
    resp = client.get("/auth/login?lang=zh_CN")
    assert "登录" in resp.get_data(as_text=True)
