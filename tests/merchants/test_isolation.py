"""Tenant isolation: every portal URL tried with another merchant's ids answers 404 and
never shows or changes the other merchant's data."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from accounts.models import Role, User
from core.db import db
from core.errors import NotFound
from core.txn import transaction
from merchants import services
from merchants.models import Store
from tests.support.merchants import client, csrf_token, fast_hashing, login, make_manager, make_merchant, make_regions  # noqa: F401  (fixtures)


@pytest.fixture
def two_merchants(app):
    ids = make_regions()
    _, _, mine = make_merchant("mine_owner", ids["徐家汇"], name="我的小馆")
    _, _, theirs = make_merchant("their_owner", ids["南京西路"], name="别家秘制牛蛙")
    with transaction(db.session):
        their_store = db.session.get(Store, theirs)
        their_cashier = services.add_cashier(db.session, their_store, username="their_till", password="cashier-pass")
        my_cashier = services.add_cashier(db.session, db.session.get(Store, mine), username="my_till", password="cashier-pass")
    return {"ids": ids, "mine": mine, "theirs": theirs, "their_cashier": their_cashier.id, "my_cashier": my_cashier.id}


def owner_urls(store_id: int, cashier_id: int) -> list[tuple[str, str]]:
    return [
        ("GET", f"/portal/stores/{store_id}"),
        ("GET", f"/portal/stores/{store_id}/edit"),
        ("POST", f"/portal/stores/{store_id}/edit"),
        ("GET", f"/portal/stores/{store_id}/staff"),
        ("POST", f"/portal/stores/{store_id}/staff"),
        ("GET", f"/portal/stores/{store_id}/cashiers"),
        ("POST", f"/portal/stores/{store_id}/cashiers"),
        ("POST", f"/portal/stores/{store_id}/cashiers/{cashier_id}/active"),
    ]


def test_owner_gets_404_for_another_merchants_store(client, two_merchants):
    theirs, their_cashier = two_merchants["theirs"], two_merchants["their_cashier"]
    login(client, "mine_owner")
    token = csrf_token(client, "/portal/")
    form = {
        "csrf_token": token, "store_name": "偷改", "address": "x", "circle_id": str(two_merchants["ids"]["徐家汇"]),
        "cuisines": ["bbq"], "avg_spend": "1", "member": "zhangwei", "username": "intruder",
        "password": "intruder-pass", "active": "0",
    }
    for method, url in owner_urls(theirs, their_cashier):
        resp = client.open(url, method=method, data=form if method == "POST" else None)
        assert resp.status_code == 404, (method, url)
        assert "别家秘制牛蛙" not in resp.get_data(as_text=True)
    db.session.expire_all()
    store = db.session.get(Store, theirs)
    assert store.name == "别家秘制牛蛙一店" and not store.staff
    assert db.session.scalar(select(User).where(User.username == "intruder")) is None
    assert db.session.get(User, their_cashier).active


def test_owner_cannot_toggle_another_stores_cashier_through_their_own_store(client, two_merchants):
    login(client, "mine_owner")
    token = csrf_token(client, "/portal/")
    resp = client.post(
        f"/portal/stores/{two_merchants['mine']}/cashiers/{two_merchants['their_cashier']}/active",
        data={"csrf_token": token, "active": "0"},
    )
    assert resp.status_code == 404
    assert db.session.get(User, two_merchants["their_cashier"]).active


def test_own_urls_work(client, two_merchants):
    mine = two_merchants["mine"]
    login(client, "mine_owner")
    for url in (f"/portal/stores/{mine}", f"/portal/stores/{mine}/edit", f"/portal/stores/{mine}/cashiers"):
        assert client.get(url).status_code == 200, url
    home = client.get("/portal/").get_data(as_text=True)
    assert "我的小馆" in home and "别家秘制牛蛙" not in home


def test_missing_store_is_404_too(client, two_merchants):
    login(client, "mine_owner")
    assert client.get("/portal/stores/999999").status_code == 404


def test_manager_outside_region_gets_404(client, two_merchants):
    make_manager("mgr_xh", [two_merchants["ids"]["徐汇区"]])
    login(client, "mgr_xh")
    theirs = two_merchants["theirs"]  # in 静安区
    assert client.get(f"/portal/stores/{theirs}").status_code == 404
    token = csrf_token(client, "/portal/review")
    resp = client.post(f"/portal/review/{theirs}", data={"csrf_token": token, f"s{theirs}-decision": "approve"})
    assert resp.status_code == 404
    assert "别家秘制牛蛙" not in client.get("/portal/review").get_data(as_text=True)
    # owner-only pages stay closed to managers even inside their region
    assert client.get(f"/portal/stores/{two_merchants['mine']}/staff").status_code == 403


def test_get_store_for_scopes_every_role(app, two_merchants):
    mine, theirs = two_merchants["mine"], two_merchants["theirs"]
    users = {u.username: u for u in db.session.scalars(select(User))}
    assert services.get_store_for(db.session, users["mine_owner"], mine).id == mine
    assert services.get_store_for(db.session, users["my_till"], mine).id == mine
    for username, store_id in (("mine_owner", theirs), ("their_owner", mine), ("my_till", theirs), ("their_till", mine)):
        with pytest.raises(NotFound):
            services.get_store_for(db.session, users[username], store_id)
    assert users["my_till"].role == Role.cashier
