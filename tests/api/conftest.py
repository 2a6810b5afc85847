"""API test fixtures: two merchants in one circle, each with a live template valid today, and
keys for each (merchant-wide, store-only) and for a manager."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from core.db import db, utcnow
from core.localtime import local
from core.txn import transaction
from coupons import services as coupons
from coupons.models import CouponKind
from integrations.services import keys
from tests.support.coupons import Shop, make_shop, make_template
from tests.support.merchants import make_manager
from tests.support.residents import make_circle


@dataclass
class Tenant:
    shop: Shop
    template_id: int
    token: str  # merchant-wide key
    store_token: str  # narrowed to shop.store

    def coupon(self, holder: str | None = None) -> str:
        with transaction(db.session) as session:
            return coupons.issue_coupon(session, self.template_id, holder or f"wm-{utcnow().timestamp()}").short_code


def auth(token: str, key: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


@pytest.fixture
def circle(app):
    with transaction(db.session) as session:
        return make_circle(session)


def _tenant(circle, name: str) -> Tenant:
    with transaction(db.session) as session:
        shop = make_shop(session, circle, name=name)
    today = local(utcnow()).date()
    template = make_template(shop, valid_from=today - timedelta(days=1), valid_until=today + timedelta(days=30),
                             total_stock=None, per_diner_limit=100, kind=CouponKind.amount_off, value=2000,
                             min_spend_fen=10000)
    with transaction(db.session) as session:
        token = keys.create_key(session, merchant_id=shop.merchant.id, label="POS").token
        store_token = keys.create_key(session, store_id=shop.store.id, label="till 1").token
    return Tenant(shop, template.id, token, store_token)


@pytest.fixture
def tenant(app, circle) -> Tenant:
    return _tenant(circle, "川味小馆")


@pytest.fixture
def rival(app, circle) -> Tenant:
    return _tenant(circle, "湘里人家")


@pytest.fixture
def manager_token(app, circle) -> str:
    manager_id = make_manager("api-manager", [circle.parent_id])
    with transaction(db.session) as session:
        return keys.create_key(session, manager_id=manager_id).token
