"""Factories for coupon tests: a merchant with two stores, its owner and cashier; templates."""
from __future__ import annotations

import itertools
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone

from accounts.models import Role, User
from accounts.services import hash_password
from core.db import db
from core.txn import transaction
from coupons.models import CouponKind, TemplateStatus
from coupons.services import TemplateSpec, create_template
from merchants.models import Merchant, Region, ReviewStatus, Store

_seq = itertools.count(1)
PASSWORD = "s3cret-pass"
_HASH: list[str] = []


def _password_hash() -> str:
    """scrypt is slow on purpose; hash the shared test password once."""
    if not _HASH:
        _HASH.append(hash_password(PASSWORD))
    return _HASH[0]

# A Wednesday, 12:30 in Shanghai (04:30 UTC): inside weekday-lunch rules.
NOW = datetime(2025, 6, 11, 4, 30, tzinfo=timezone.utc)


@dataclass
class Shop:
    merchant: Merchant
    store: Store
    other_store: Store
    owner: User
    cashier: User


def make_shop(session, circle: Region, name: str = "川味小馆") -> Shop:
    n = next(_seq)
    merchant = Merchant(name=name, credit_code=f"91310000MA{n:08d}", contact_mobile="13800138000")
    session.add(merchant)
    session.flush()
    store = Store(merchant_id=merchant.id, name=f"{name}·{n}号店", address="幸福路 1 号",
                  circle_id=circle.id, cuisines=["sichuan"], status=ReviewStatus.approved)
    other = Store(merchant_id=merchant.id, name=f"{name}·分店{n}", address="幸福路 2 号",
                  circle_id=circle.id, cuisines=["sichuan"], status=ReviewStatus.approved)
    session.add_all([store, other])
    session.flush()
    owner = User(username=f"owner{n}", password_hash=_password_hash(), role=Role.owner, merchant_id=merchant.id)
    cashier = User(username=f"cashier{n}", password_hash=_password_hash(), role=Role.cashier,
                   merchant_id=merchant.id, store_id=store.id)
    session.add_all([owner, cashier])
    session.flush()
    return Shop(merchant, store, other, owner, cashier)


def spec(**kw) -> TemplateSpec:
    base = dict(
        name="满100减20", kind=CouponKind.amount_off, value=2000, min_spend_fen=10000,
        valid_from=date(2025, 6, 1), valid_until=date(2025, 6, 30), total_stock=100,
        per_diner_limit=1, status=TemplateStatus.active,
    )
    base.update(kw)
    return TemplateSpec(**base)


def make_template(shop: Shop, **kw):
    with tx():
        return create_template(db.session, shop.merchant.id, spec(**kw))


@contextmanager
def tx():
    """A test's unit of work, the app's own idiom: ``core.txn.transaction`` on the scoped
    session (it also takes over the read transaction an attribute reload autobegins)."""
    with transaction(db.session):
        yield db.session


_TOKEN_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token(client, url: str) -> str:
    page = client.get(url)
    match = _TOKEN_RE.search(page.get_data(as_text=True))
    assert match, f"no csrf token on {url} ({page.status_code})"
    return match.group(1)


def post_form(client, url: str, data: dict, token_url: str | None = None):
    """POST like a browser: take the CSRF token from the page (or ``token_url``) first."""
    return client.post(url, data={**data, "csrf_token": csrf_token(client, token_url or url)})


def login(client, user: User):
    resp = post_form(client, "/auth/login", {"username": user.username, "password": PASSWORD})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]


def logout(client) -> None:
    """Sign out (the test app context outlives requests, so Flask-Login's cached user must go)."""
    assert post_form(client, "/auth/logout", {}, token_url="/desk").status_code == 302
