"""Sessions end when access ends: deactivation, logging out (everywhere) and a new password
refuse every session and remember cookie issued before; remember-me lasts two weeks."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

from sqlalchemy import func, select

from accounts.models import User
from accounts.services import create_admin, end_sessions
from core.db import db
from core.txn import transaction
from coupons.models import Redemption
from merchants.models import Store
from merchants.services.staff import set_cashier_active
from tests.support.coupons import PASSWORD
from tests.support.merchants import csrf_token, make_admin, post_form


def sign_in(client, username: str, remember: bool = True):
    data = {"username": username, "password": PASSWORD}
    if remember:
        data["remember"] = "y"
    resp = post_form(client, "/auth/login", data)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return resp


def cookies_of(client) -> dict[str, str]:
    return {name: client.get_cookie(name).value for name in ("session", "remember_token") if client.get_cookie(name)}


def client_with(app, cookies: dict[str, str]):
    other = app.test_client()
    for name, value in cookies.items():
        other.set_cookie(name, value)
    return other


def refused(resp) -> bool:
    return resp.status_code == 302 and "/auth/login" in resp.headers["Location"]


def test_deactivated_cashier_is_signed_out_and_cannot_confirm(app, client, shop):
    sign_in(client, shop.cashier.username)
    assert client.get("/desk").status_code == 200
    saved = cookies_of(client)
    assert "remember_token" in saved
    token = csrf_token(client, "/desk")

    with transaction(db.session):
        set_cashier_active(db.session, db.session.get(Store, shop.store.id), shop.cashier.id, False)

    assert refused(client.get("/desk"))
    resp = client.post("/desk/c/ABCD2345", data={"csrf_token": token, "bill": "100", "store_id": shop.store.id,
                                                  "idempotency_key": "k1"})
    assert refused(resp)
    assert db.session.scalar(select(func.count(Redemption.id))) == 0
    # neither the session cookie nor the remember cookie alone brings the cashier back
    assert refused(client_with(app, {"session": saved["session"]}).get("/desk"))
    assert refused(client_with(app, {"remember_token": saved["remember_token"]}).get("/desk"))


def test_reactivated_cashier_signs_in_again(client, shop):
    with transaction(db.session):
        store = db.session.get(Store, shop.store.id)
        set_cashier_active(db.session, store, shop.cashier.id, False)
        set_cashier_active(db.session, store, shop.cashier.id, True)
    sign_in(client, shop.cashier.username)
    assert client.get("/desk").status_code == 200


def test_cookies_saved_before_logout_are_refused_after_it(app, client, shop):
    sign_in(client, shop.owner.username)
    assert client.get("/desk").status_code == 200
    saved = cookies_of(client)
    # a second browser of the same user, signed in before the logout
    laptop = app.test_client()
    sign_in(laptop, shop.owner.username, remember=False)

    resp = client.post("/auth/logout", data={"csrf_token": csrf_token(client, "/desk")})
    assert refused(resp)
    assert refused(client.get("/desk"))
    assert refused(client_with(app, {"session": saved["session"]}).get("/desk"))
    assert refused(client_with(app, {"remember_token": saved["remember_token"]}).get("/desk"))
    assert refused(laptop.get("/desk"))  # logging out is logging out everywhere
    sign_in(client, shop.owner.username)  # and signing in again works
    assert client.get("/desk").status_code == 200


def test_remember_cookie_ends_after_a_password_change(app, client):
    make_admin("root")
    sign_in(client, "root")
    saved = cookies_of(client)
    assert client.get("/admin/regions").status_code == 200
    with transaction(db.session):
        create_admin(db.session, "root", "another-pass-phrase")  # the CLI's password reset
    assert refused(client.get("/admin/regions"))  # role checks too
    assert refused(client_with(app, {"remember_token": saved["remember_token"]}).get("/admin/regions"))


def test_end_sessions_service_bumps_the_version(app, shop):
    before = db.session.get(User, shop.owner.id).session_version
    with transaction(db.session):
        end_sessions(db.session, shop.owner.id)
    db.session.expire_all()
    assert db.session.get(User, shop.owner.id).session_version == before + 1


def test_a_session_with_a_bare_user_id_is_refused(client, shop):
    with client.session_transaction() as sess:
        sess["_user_id"] = str(shop.owner.id)  # the id alone, as sessions held it before
        sess["_fresh"] = True
    assert refused(client.get("/desk"))


def test_remember_me_lasts_two_weeks(client, shop):
    resp = sign_in(client, shop.owner.username)
    cookie = next(c for c in resp.headers.getlist("Set-Cookie") if c.startswith("remember_token="))
    expires = next(p.split("=", 1)[1] for p in cookie.split("; ") if p.lower().startswith("expires="))
    left = parsedate_to_datetime(expires) - datetime.now(timezone.utc)
    assert timedelta(days=13) < left <= timedelta(days=14, minutes=1)
