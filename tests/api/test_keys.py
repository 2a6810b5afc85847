"""API keys for people: ``linli api-key`` (create prints the token alone on its last line,
once; list never shows a secret; revoke, label) and the owners' portal page (the token shown
once, in the POST's answer; rename, revoke; other merchants' keys are 404, cashiers 403);
``last_used_at`` written at most once a minute."""
from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from core.db import db
from core.txn import transaction
from integrations.models import ApiKey
from integrations.services import keys
from marketplace.cli import main
from tests.api.conftest import auth
from tests.support.coupons import login, post_form
from tests.support.merchants import FreshContextClient, fast_hashing  # noqa: F401  (an autouse fixture)

PAGE = "/portal/api-keys/"
TOKEN_RE = re.compile(r'data-testid="new-token"[^>]*>(lk_[^<]+)<')


@pytest.fixture
def client(app):
    """Requests like production ones: a fresh ``g`` and session each (the portal signs in)."""
    app.test_client_class = FreshContextClient
    return app.test_client()


def run(runner, *args: str):
    return runner.invoke(main, ["api-key", *args])


def key_of(token: str) -> ApiKey:
    db.session.remove()
    return db.session.scalar(select(ApiKey).where(ApiKey.prefix == token.split("_")[1]))


def store_ids(client, token: str):
    resp = client.get("/api/v1/stores", headers=auth(token))
    return resp.status_code, [s["id"] for s in (resp.get_json() or {}).get("data", [])]


# --------------------------------------------------------------------------- the CLI


def test_create_prints_the_token_alone_on_the_last_line_and_keeps_only_its_hash(runner, client, tenant):
    shop = tenant.shop
    result = run(runner, "create", "--merchant", str(shop.merchant.id), "--label", "前台收银")
    assert result.exit_code == 0, result.output
    *lines, token = result.stdout.strip().splitlines()
    assert re.fullmatch(r"lk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", token), token
    secret = token.split("_", 2)[2]
    assert secret not in "\n".join(lines) and "前台收银" in lines[-1] and "merchant" in lines[-1]
    key = key_of(token)
    assert key.merchant_id == shop.merchant.id and key.store_id is None and key.label == "前台收银"
    assert key.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    assert not any(secret in str(getattr(key, c.key)) for c in ApiKey.__table__.columns)
    assert store_ids(client, token) == (200, sorted([shop.store.id, shop.other_store.id]))

    # a store key (its merchant implied), and a store of the merchant named with it
    for args in (["--store", str(shop.other_store.id)],
                 ["--merchant", str(shop.merchant.id), "--store", str(shop.other_store.id)]):
        result = run(runner, "create", *args)
        assert result.exit_code == 0, result.output
        store_token = result.stdout.strip().splitlines()[-1]
        assert store_ids(client, store_token) == (200, [shop.other_store.id])


def test_a_manager_key_is_not_a_store_key(runner, client, tenant, manager_token):
    manager_id = key_of(manager_token).manager_id
    result = run(runner, "create", "--manager", str(manager_id))
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert key_of(token).kind == "manager"
    assert client.get("/api/v1/stores", headers=auth(token)).status_code == 403


def test_list_shows_every_key_but_no_secret(runner, tenant, manager_token):
    result = run(runner, "list")
    assert result.exit_code == 0, result.output
    for token in (tenant.token, tenant.store_token, manager_token):
        prefix, secret = token.split("_", 2)[1:]
        assert prefix in result.output and secret not in result.output
    assert f"merchant {tenant.shop.merchant.id} store {tenant.shop.store.id}" in result.output
    assert "till 1" in result.output and "never" in result.output and "3 key(s)" in result.output


def test_revoke_refuses_the_token_and_label_renames(runner, client, tenant):
    key_id = key_of(tenant.token).id
    assert store_ids(client, tenant.token)[0] == 200
    result = run(runner, "revoke", str(key_id))
    assert result.exit_code == 0 and "revoked" in result.output, result.output
    assert client.get("/api/v1/stores", headers=auth(tenant.token)).status_code == 401
    assert store_ids(client, tenant.store_token)[0] == 200  # the other key lives on
    again = run(runner, "revoke", str(key_id))
    assert again.exit_code == 0 and "already" in again.output
    listed = run(runner, "list").output
    row = next(line for line in listed.splitlines() if line.startswith(f"{key_id}\t"))
    assert not row.endswith("\t-")  # the revoked column has a time

    result = run(runner, "label", str(key_id), "  旧收银机  ")
    assert result.exit_code == 0, result.output
    assert key_of(tenant.token).label == "旧收银机"


def test_bad_arguments_exit_2_with_a_message(runner, tenant, manager_token):
    shop = tenant.shop
    manager_id = key_of(manager_token).manager_id
    before = len(keys_now())
    cases = [
        (["create", "--merchant", str(shop.merchant.id), "--manager", str(manager_id)], "not both"),
        (["create", "--store", str(shop.store.id), "--manager", str(manager_id)], "not both"),
        (["create"], "--merchant"),
        (["create", "--merchant", "999999"], "商户"),
        (["create", "--store", "999999"], "门店"),
        (["create", "--manager", "999999"], "区域经理"),
        (["create", "--manager", str(shop.owner.id)], "区域经理"),  # not a manager
        (["create", "--merchant", "99999999999"], "99999999999"),  # absurd: click's range, not the database's
        (["create", "--merchant", "abc"], "abc"),
        (["create", "--merchant", str(shop.merchant.id), "--label", "x" * 65], "64"),
        (["create", "--merchant", str(shop.merchant.id), "--store", "999999"], "门店"),
        (["revoke", "999999"], "no API key 999999"),
        (["label", "999999", "x"], "no API key 999999"),
        (["label", str(key_of(tenant.token).id), "x" * 65], "64"),
    ]
    for args, message in cases:
        result = run(runner, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "lk_" not in result.output, args
    assert len(keys_now()) == before


def test_a_store_of_another_merchant_is_refused(runner, tenant, rival):
    result = run(runner, "create", "--merchant", str(tenant.shop.merchant.id), "--store", str(rival.shop.store.id))
    assert result.exit_code == 2 and "门店" in result.output, result.output


def keys_now() -> list[ApiKey]:
    db.session.remove()
    return list(db.session.scalars(select(ApiKey)))


# --------------------------------------------------------------------------- the owners' page


def test_owner_creates_a_key_and_sees_its_token_once(app, client, tenant, rival):
    shop = tenant.shop
    login(client, shop.owner)
    page = client.get(PAGE)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert key_of(tenant.token).prefix in text and "till 1" in text and shop.store.name in text
    assert key_of(rival.token).prefix not in text

    resp = post_form(client, PAGE, {"label": "外卖收银", "scope": str(shop.other_store.id)})
    assert resp.status_code == 200, resp.get_data(as_text=True)[:2000]
    assert resp.headers["Cache-Control"] == "no-store"
    match = TOKEN_RE.search(resp.get_data(as_text=True))
    assert match, "the new token is on the answer to the POST"
    token = match.group(1)
    cookie = client.get_cookie(app.config.get("SESSION_COOKIE_NAME", "session"))
    kept = app.session_interface.get_signing_serializer(app).loads(cookie.value) if cookie else {}
    assert token.split("_", 2)[2] not in str(kept)  # not in a flash message, not in the session
    key = key_of(token)
    assert (key.merchant_id, key.store_id, key.label, key.created_by_id) == (
        shop.merchant.id, shop.other_store.id, "外卖收银", shop.owner.id)
    assert store_ids(client, token) == (200, [shop.other_store.id])

    again = client.get(PAGE).get_data(as_text=True)
    assert token not in again and token.split("_", 2)[2] not in again
    assert key.prefix in again and "外卖收银" in again

    # merchant-wide
    resp = post_form(client, PAGE, {"label": "", "scope": "0"})
    token = TOKEN_RE.search(resp.get_data(as_text=True)).group(1)
    assert key_of(token).store_id is None and key_of(token).merchant_id == shop.merchant.id


def test_bad_create_forms_answer_400_and_make_nothing(client, tenant, rival):
    login(client, tenant.shop.owner)
    before = len(keys_now())
    for data in ({"label": "x", "scope": str(rival.shop.store.id)},  # another merchant's store
                 {"label": "x", "scope": "abc"},
                 {"label": "x", "scope": "99999999999999999999"},
                 {"label": "x" * 65, "scope": "0"}):
        resp = post_form(client, PAGE, data)
        assert resp.status_code == 400, data
        assert not TOKEN_RE.search(resp.get_data(as_text=True))
    assert len(keys_now()) == before


def test_owner_relabels_and_revokes(client, tenant):
    login(client, tenant.shop.owner)
    key_id = key_of(tenant.store_token).id
    resp = post_form(client, f"{PAGE}{key_id}/label", {"label": "二号收银台"}, token_url=PAGE)
    assert resp.status_code == 302
    assert key_of(tenant.store_token).label == "二号收银台"
    assert "二号收银台" in client.get(PAGE).get_data(as_text=True)
    resp = post_form(client, f"{PAGE}{key_id}/label", {"label": "x" * 65}, token_url=PAGE)
    assert resp.status_code == 400 and 'data-testid="label-error"' in resp.get_data(as_text=True)
    assert key_of(tenant.store_token).label == "二号收银台"

    assert store_ids(client, tenant.store_token)[0] == 200
    resp = post_form(client, f"{PAGE}{key_id}/revoke", {}, token_url=PAGE)
    assert resp.status_code == 302
    assert key_of(tenant.store_token).revoked_at is not None
    assert client.get("/api/v1/stores", headers=auth(tenant.store_token)).status_code == 401
    row = client.get(PAGE).get_data(as_text=True).split(f'data-key-id="{key_id}"')[1].split("</tr>")[0]
    assert "已停用" in row and 'data-testid="revoke"' not in row
    # without the CSRF token: refused
    assert client.post(f"{PAGE}{key_id}/revoke").status_code == 400


def test_another_merchants_key_is_not_found(client, tenant, rival, manager_token):
    login(client, rival.shop.owner)
    for token in (tenant.token, manager_token):
        key_id = key_of(token).id
        for action, data in (("label", {"label": "mine now"}), ("revoke", {})):
            resp = post_form(client, f"{PAGE}{key_id}/{action}", data, token_url=PAGE)
            assert resp.status_code == 404, (token, action)
    assert post_form(client, f"{PAGE}999999/revoke", {}, token_url=PAGE).status_code == 404
    key = key_of(tenant.token)
    assert key.revoked_at is None and key.label == "POS"


def test_cashiers_and_strangers_may_not(client, tenant):
    anonymous = client.get(PAGE)
    assert anonymous.status_code == 302 and "/auth/login" in anonymous.headers["Location"]
    login(client, tenant.shop.cashier)
    assert client.get(PAGE).status_code == 403
    key_id = key_of(tenant.token).id
    before = len(keys_now())
    # with a valid CSRF token (from the desk), the role still refuses
    for url, data in ((PAGE, {"label": "x", "scope": "0"}), (f"{PAGE}{key_id}/label", {"label": "x"}),
                      (f"{PAGE}{key_id}/revoke", {})):
        assert post_form(client, url, data, token_url="/desk").status_code == 403, url
    key = key_of(tenant.token)
    assert key.revoked_at is None and key.label == "POS" and len(keys_now()) == before


# --------------------------------------------------------------------------- last used


def test_last_used_is_written_at_most_once_a_minute(client, tenant):
    assert key_of(tenant.token).last_used_at is None
    assert store_ids(client, tenant.token)[0] == 200
    first = key_of(tenant.token).last_used_at
    assert first is not None
    assert store_ids(client, tenant.token)[0] == 200
    assert key_of(tenant.token).last_used_at == first  # within the minute: no write
    with transaction(db.session) as session:
        assert keys.authenticate(session, tenant.token, now=first + timedelta(seconds=30)) is not None
    assert key_of(tenant.token).last_used_at == first
    later = first + keys.TOUCH_EVERY + timedelta(seconds=1)
    with transaction(db.session) as session:
        keys.authenticate(session, tenant.token, now=later)
    assert key_of(tenant.token).last_used_at == later

    login(client, tenant.shop.owner)
    row = client.get(PAGE).get_data(as_text=True).split(f'data-key-id="{key_of(tenant.token).id}"')[1]
    assert "从未使用" not in row.split("</tr>")[0]
