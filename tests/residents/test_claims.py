"""Store-page claims (issue 10, item 8): a known diner claims a coupon the merchant lets diners
take on the store page; the merchant's checkbox on the template form; refusals are 4xx pages
with the reason (not claimable, another merchant's, not for this store, limit, sold out, an
unknown diner); and 50 racing claims on one template hold its stock and per-diner limit (the
database decides: a conditional UPDATE and a unique key). On SQLite, and on PostgreSQL with
TEST_DATABASE_URL, where the 50 claims really run at once (a pool of 50 connections)."""
from __future__ import annotations

import re
import threading
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import sessionmaker

from core.db import db, utcnow
from core.txn import transaction
from coupons import services as coupon_svc
from coupons.models import Coupon, CouponTemplate, TemplateStatus
from residents import claims, identity
from residents.models import Resident
from residents.tokens import make_token
from tests.support.coupons import login, make_shop, make_template, post_form, tx
from tests.support.merchants import FreshContextClient
from tests.support.residents import make_circle, make_resident

TOKEN_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
THREADS = 50


@pytest.fixture
def client(app):
    app.test_client_class = FreshContextClient
    return app.test_client()


@pytest.fixture
def shop(app):
    with tx() as session:
        return make_shop(session, make_circle(session), name="川味小馆")


@pytest.fixture
def rival(app):
    with tx() as session:
        return make_shop(session, make_circle(session), name="湘里人家")


def offer(shop, **kw) -> CouponTemplate:
    base = dict(name="到店满100减20", valid_from=None, valid_until=None, valid_days=30, total_stock=None,
                per_diner_limit=1, claimable=True)
    base.update(kw)
    return make_template(shop, **base)


def new_resident(**fields) -> Resident:
    with tx() as session:
        return make_resident(session, **fields)


def sign_in(client, resident: Resident, path: str) -> None:
    resp = client.get(f"{path}?t={make_token(resident.id)}")
    assert resp.status_code == 302 and resp.headers["Location"] == path


def claim(client, store_id: int, template_id: int):
    """Post a 领取 form (the CSRF token is the browser session's; the store page shows no
    button once the limit is reached, so take it from a page that always has one)."""
    page = client.get("/auth/login").get_data(as_text=True)
    token = TOKEN_RE.search(page).group(1)
    return client.post(f"/m/s/{store_id}/claim/{template_id}", data={"csrf_token": token})


def coupons_of(resident_id: int, template_id: int | None = None) -> list[Coupon]:
    db.session.remove()
    stmt = select(Coupon).where(Coupon.resident_id == resident_id)
    if template_id is not None:
        stmt = stmt.where(Coupon.template_id == template_id)
    return list(db.session.scalars(stmt))


def test_a_known_diner_claims_on_the_store_page(app, client, shop):
    template = offer(shop)
    quiet = make_template(shop, name="只在欢迎语里送", valid_from=None, valid_until=None, valid_days=30)
    diner = new_resident()
    store_url = f"/m/s/{shop.store.id}"

    anonymous = client.get(store_url).get_data(as_text=True)
    assert "到店满100减20" in anonymous and 'data-testid="claim"' not in anonymous  # nobody to give it to
    assert "添加店员即可领取" in anonymous  # the hint for a diner we do not know

    sign_in(client, diner, store_url)
    page = client.get(store_url).get_data(as_text=True)
    assert f'action="/m/s/{shop.store.id}/claim/{template.id}"' in page
    assert f"/claim/{quiet.id}" not in page  # the merchant did not let diners claim this one

    resp = claim(client, shop.store.id, template.id)
    (coupon,) = coupons_of(diner.id)
    assert resp.status_code == 302 and resp.headers["Location"] == f"/m/c/{coupon.short_code}"
    assert coupon.template_id == template.id and coupon.holder_ref == f"r:{diner.id}"  # the welcome's holder key
    shown = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "领取成功" in shown and coupon_svc.format_code(coupon.short_code) in shown
    after = client.get(store_url).get_data(as_text=True)
    assert 'data-testid="claimed"' in after and f"/claim/{template.id}" not in after  # limit reached: no button


def test_a_second_claim_over_the_limit_is_refused(app, client, shop):
    template = offer(shop, per_diner_limit=2)
    diner = new_resident()
    sign_in(client, diner, f"/m/s/{shop.store.id}")
    assert claim(client, shop.store.id, template.id).status_code == 302
    assert claim(client, shop.store.id, template.id).status_code == 302
    resp = claim(client, shop.store.id, template.id)
    assert resp.status_code == 409
    assert "每人限领 2 张，您已领过" in resp.get_data(as_text=True)
    assert len(coupons_of(diner.id)) == 2


def test_refusals_are_clear_and_never_500(app, client, shop, rival):
    not_claimable = make_template(shop, name="欢迎券", valid_from=None, valid_until=None, valid_days=30)
    other_store_only = offer(shop, name="分店专享", store_ids=[shop.other_store.id])
    sold_out = offer(shop, name="限量10张", total_stock=1)
    paused = offer(shop, name="暂停中")
    theirs = offer(rival, name="湘菜满100减20")
    with tx() as session:
        session.get(CouponTemplate, paused.id).status = TemplateStatus.paused
        coupon_svc.issue_coupon(session, sold_out.id, "wm_someone_else")
    diner = new_resident()
    sign_in(client, diner, f"/m/s/{shop.store.id}")

    cases = [
        (not_claimable.id, 409, "这张券不能在门店页领取"),
        (other_store_only.id, 409, "这张券不能在本店使用"),
        (sold_out.id, 409, "券已领完"),
        (paused.id, 409, "这张券当前不可领取"),
        (theirs.id, 404, None),  # another merchant's template through this store: as if it did not exist
        (2_000_000_000, 404, None),
    ]
    for template_id, status, message in cases:
        resp = claim(client, shop.store.id, template_id)
        assert resp.status_code == status, (template_id, resp.status_code)
        if message:
            assert message in resp.get_data(as_text=True)
    assert coupons_of(diner.id) == []
    # the other store's own page offers it
    assert claim(client, shop.other_store.id, other_store_only.id).status_code == 302


def test_an_unknown_diner_cannot_claim(app, client, shop):
    template = offer(shop)
    resp = claim(client, shop.store.id, template.id)
    assert resp.status_code == 403
    assert "请先到店扫码添加店员" in resp.get_data(as_text=True)
    erased = new_resident()
    sign_in(client, erased, f"/m/s/{shop.store.id}")
    with tx() as session:
        session.get(Resident, erased.id).erased_at = session.get(Resident, erased.id).created_at
    assert claim(client, shop.store.id, template.id).status_code == 403  # erasing ends the session
    db.session.remove()
    assert db.session.scalar(select(func.count(Coupon.id))) == 0
    # without the CSRF token nothing happens either
    sign_in(client, new_resident(), f"/m/s/{shop.store.id}")
    assert client.post(f"/m/s/{shop.store.id}/claim/{template.id}").status_code == 400


def test_the_merchant_ticks_claimable_on_the_template_form(app, client, shop):
    login(client, shop.owner)
    data = {
        "name": "门店页满50减10", "kind": "amount_off", "amount": "10", "min_spend": "50", "validity_mode": "days",
        "valid_days": "30", "weekdays": [str(d) for d in range(7)], "per_diner_limit": "1", "status": "active",
        "claimable": "y",
    }
    page = client.get("/portal/coupons/new").get_data(as_text=True)
    assert "允许顾客在门店页领取" in page
    assert post_form(client, "/portal/coupons/new", data).status_code == 302
    db.session.remove()
    template = db.session.scalar(select(CouponTemplate).where(CouponTemplate.name == "门店页满50减10"))
    assert template.claimable is True
    assert 'data-testid="claimable-badge"' in client.get("/portal/coupons/").get_data(as_text=True)
    edit = f"/portal/coupons/{template.id}/edit"
    (box,) = re.findall(r'<input[^>]*name="claimable"[^>]*>', client.get(edit).get_data(as_text=True))
    assert "checked" in box and 'type="checkbox"' in box
    data.pop("claimable")  # unticked boxes are not posted
    assert post_form(client, edit, data).status_code == 302
    db.session.remove()
    assert db.session.get(CouponTemplate, template.id).claimable is False


def test_claimable_at_is_the_one_rule(app, shop, rival):
    now = datetime(2025, 6, 11, 4, 30, tzinfo=timezone.utc)
    dated = offer(shop, valid_days=None, valid_from=date(2025, 6, 1), valid_until=date(2025, 6, 11))
    with tx() as session:
        t = session.get(CouponTemplate, dated.id)
        store, other = session.merge(shop.store), session.merge(rival.store)
        assert claims.claimable_at(t, store, now)
        assert not claims.claimable_at(t, other, now)  # another merchant's store
        assert not claims.claimable_at(t, store, datetime(2025, 6, 11, 16, 0, tzinfo=timezone.utc))  # 6-12 local
        t.claimable = False
        assert not claims.claimable_at(t, store, now)


# ---------------------------------------------------------------- 50 at once


def race(backend, work) -> list:
    """Run ``work(session, i)`` in THREADS threads released together, one transaction each. On
    PostgreSQL every thread holds its own connection at once (a pool of THREADS)."""
    engine = create_engine(db.engine.url, pool_size=THREADS, max_overflow=0) if backend == "postgresql" else None
    factory = sessionmaker(engine) if engine is not None else db._factory
    barrier = threading.Barrier(THREADS)
    outcomes: list = [None] * THREADS

    def run(i: int) -> None:
        session = factory()
        try:
            barrier.wait()
            with transaction(session):
                outcomes[i] = work(session, i)
        except Exception as exc:  # noqa: BLE001 - the outcome is what we test
            outcomes[i] = exc
        finally:
            session.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if engine is not None:
        engine.dispose()
    for o in outcomes:
        assert o is not None, "a thread did not finish"
        # every loser is told by a rule (never a lock error, a timeout or a 500)
        assert not isinstance(o, Exception) or isinstance(o, coupon_svc.IssueError), repr(o)
    return outcomes


def test_fifty_racing_claims_hold_the_stock(app, backend, shop):
    template = offer(shop, total_stock=10)
    with tx() as session:
        diners = [make_resident(session).id for _ in range(THREADS)]
    store_id, template_id = shop.store.id, template.id

    outcomes = race(backend, lambda s, i: claims.claim_at_store(
        s, store_id, template_id, s.get(Resident, diners[i]), utcnow()).id)

    refused = [o for o in outcomes if isinstance(o, coupon_svc.IssueError)]
    assert len(refused) == THREADS - 10 and all(e.code == "sold_out" for e in refused)
    db.session.remove()
    assert db.session.scalar(select(func.count(Coupon.id)).where(Coupon.template_id == template_id)) == 10
    assert db.session.get(CouponTemplate, template_id).issued_count == 10


def test_fifty_racing_claims_by_one_diner_give_one_coupon(app, backend, shop):
    template = offer(shop, total_stock=None, per_diner_limit=1)
    diner = new_resident()
    store_id, template_id, diner_id = shop.store.id, template.id, diner.id

    outcomes = race(backend, lambda s, i: claims.claim_at_store(
        s, store_id, template_id, s.get(Resident, diner_id), utcnow()).id)

    refused = [o for o in outcomes if isinstance(o, coupon_svc.IssueError)]
    assert len(refused) == THREADS - 1 and all(e.code == "limit" for e in refused)
    assert len(coupons_of(diner_id, template_id)) == 1
    assert db.session.get(CouponTemplate, template_id).issued_count == 1


def test_identity_is_the_diner_session(app, client, shop):
    """The claim trusts only the signed session (identity), never a form field."""
    template = offer(shop)
    diner, other = new_resident(), new_resident()
    sign_in(client, diner, f"/m/s/{shop.store.id}")
    page = client.get(f"/m/s/{shop.store.id}").get_data(as_text=True)
    token = TOKEN_RE.search(page).group(1)
    client.post(f"/m/s/{shop.store.id}/claim/{template.id}",
                data={"csrf_token": token, "resident_id": str(other.id), identity.SESSION_KEY: str(other.id)})
    assert len(coupons_of(diner.id)) == 1 and coupons_of(other.id) == []
