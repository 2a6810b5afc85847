"""Test helpers for the portal: regions, users, enrolled merchants, CSRF-aware form posts."""
from __future__ import annotations

import itertools
import re

import pytest
from flask.globals import _cv_app
from flask.testing import FlaskClient

from accounts.models import Role, User
from accounts.services import create_admin, create_user
from core.db import db
from core.txn import transaction
from merchants import services
from merchants.models import RegionLevel
from merchants.services import StoreInput, create_manager, credit_code_check_char

PASSWORD = "s3cret-pass"
_seq = itertools.count(1)


def credit_code(n: int | None = None) -> str:
    """A real-shaped, checksum-valid unified social credit code (a new one per call)."""
    n = next(_seq) if n is None else n
    first17 = f"91310104MA{n:07d}"
    return first17 + credit_code_check_char(first17)


def make_regions() -> dict:
    """上海 → 徐汇区 → 徐家汇 / 田林, 上海 → 静安区 → 南京西路; ids by name."""
    with transaction(db.session):
        sh = services.create_region(db.session, name="上海", level=RegionLevel.city)
        xh = services.create_region(db.session, name="徐汇区", level=RegionLevel.district, parent_id=sh.id)
        ja = services.create_region(db.session, name="静安区", level=RegionLevel.district, parent_id=sh.id)
        xjh = services.create_region(db.session, name="徐家汇", level=RegionLevel.circle, parent_id=xh.id)
        tl = services.create_region(db.session, name="田林", level=RegionLevel.circle, parent_id=xh.id)
        njx = services.create_region(db.session, name="南京西路", level=RegionLevel.circle, parent_id=ja.id)
        ids = {r.name: r.id for r in (sh, xh, ja, xjh, tl, njx)}
    return ids


def make_admin(username: str = "admin") -> int:
    with transaction(db.session):
        return create_admin(db.session, username, PASSWORD).id


def make_manager(username: str, region_ids: list[int]) -> int:
    with transaction(db.session):
        return create_manager(db.session, username=username, password=PASSWORD, region_ids=region_ids).id


def make_owner(username: str) -> int:
    with transaction(db.session):
        return create_user(db.session, username=username, password=PASSWORD, role=Role.owner).id


def store_input(circle_id: int, name: str = "老王川菜馆") -> StoreInput:
    return StoreInput(
        name=name,
        address="漕溪北路 1 号",
        circle_id=circle_id,
        cuisines=["sichuan", "hotpot"],
        avg_spend_fen=6800,
        opening_hours={"mon": [["11:00", "14:00"]]},
    )


def make_merchant(username: str, circle_id: int, name: str = "老王餐饮") -> tuple[int, int, int]:
    """An owner with an enrolled merchant and one pending store: (user_id, merchant_id, store_id)."""
    user_id = make_owner(username)
    with transaction(db.session):
        user = db.session.get(User, user_id)
        merchant = services.enrol_merchant(
            db.session, user, name=name, credit_code=credit_code(), contact_mobile="13800138000",
            store=store_input(circle_id, name=f"{name}一店"),
        )
        store_id = merchant.stores[0].id
        merchant_id = merchant.id
    db.session.remove()
    return user_id, merchant_id, store_id


_TOKEN_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token(client, url: str) -> str:
    page = client.get(url)
    match = _TOKEN_RE.search(page.get_data(as_text=True))
    assert match, f"no csrf token on {url} ({page.status_code})"
    return match.group(1)


def post_form(client, url: str, data: dict, token_url: str | None = None):
    """POST like a browser: fetch the page (or ``token_url``) for a CSRF token first."""
    body = dict(data)
    body["csrf_token"] = csrf_token(client, token_url or url)
    return client.post(url, data=body)


def login(client, username: str, password: str = PASSWORD):
    return post_form(client, "/auth/login", {"username": username, "password": password})


class FreshContextClient(FlaskClient):
    """A test client whose requests behave like production ones: the ``app`` fixture keeps an
    app context pushed, and Flask reuses it for every request, so ``g`` (Flask-Login's cached
    user, Flask-Babel's locale) and the scoped session would leak from one request into the
    next. Each request here starts with a fresh ``g`` and session."""

    def open(self, *args, **kwargs):
        ctx = _cv_app.get(None)
        if ctx is not None and ctx.app is self.application:
            ctx.g = self.application.app_ctx_globals_class()
        db.session.remove()
        try:
            return super().open(*args, **kwargs)
        finally:
            db.session.remove()


@pytest.fixture(autouse=True)
def fast_hashing(request):
    """Cheap scrypt parameters for tests (production keeps werkzeug's default)."""
    if "app" in request.fixturenames:
        request.getfixturevalue("app").config["PASSWORD_HASH_METHOD"] = "scrypt:1024:8:1"


@pytest.fixture
def client(app):
    """Overrides the shared ``client`` for the portal tests (see FreshContextClient)."""
    app.test_client_class = FreshContextClient
    return app.test_client()
