"""No lazy-load N+1 in list views: every list-like page is rendered with a few rows and with
many, and must take the same number of SQL statements (counted by ``tests/querycount.py``).

Rows are built so that each brings its own related objects (its own merchant, circle,
member, template…): rows sharing one parent would let SQLAlchemy's identity map hide a
per-row lazy load. Each page is requested once before it is counted, so one-off work (a
first connection, WeCom members first copied in) stays out of the count, and
``FreshContextClient`` starts every request with an empty session, so nothing loaded while
building the rows is reused by the page.
"""
from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select

from accounts.models import Role, User
from core.db import db, utcnow
from coupons import services as coupon_svc
from coupons.models import CouponKind, CouponSource
from merchants.models import Channel, ChannelAdd, MemberGrant, Merchant, Region, RegionLevel, ReviewStatus, Store, StoreMember
from residents.models import (
    ContactRelationship,
    MemberTransfer,
    RelationshipStatus,
    TransferItem,
    TransferItemStatus,
    TransferKind,
    TransferStatus,
)
from residents.tokens import make_token
from tests.support.coupons import Shop, make_shop, make_template, tx
from tests.support.merchants import FreshContextClient, client, fast_hashing, login, make_admin, make_manager  # noqa: F401  (fixtures)
from tests.support.querycount import QueryLog, count_queries
from tests.support.residents import add_staff, make_member, make_resident
from tests.support.servers import running_app, serve_simulator

FEW, MANY = 2, 17
_n = itertools.count(1)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def queries():
    """``with queries() as log: …; log.count``: statements on the engine of the app this
    test made (read when the block starts, since each test app configures its own)."""
    return count_queries


@dataclass
class Page:
    html: str
    log: QueryLog


@pytest.fixture
def render(queries):
    """GET ``url`` twice through ``client``; the second request is counted."""

    def _render(client, url: str, status: int = 200) -> Page:
        warm = client.get(url)
        assert warm.status_code == status, f"{url}: {warm.status_code}\n{warm.get_data(as_text=True)[:800]}"
        with queries() as log:
            resp = client.get(url)
        assert resp.status_code == status, f"{url}: {resp.status_code}"
        return Page(resp.get_data(as_text=True), log)

    return _render


def assert_flat(few: Page, many: Page, shown: list[str], slack: int = 0) -> None:
    """``many`` really shows its rows, and took no more statements than ``few`` (+ slack)."""
    missing = [s for s in shown if s not in many.html]
    assert not missing, f"rows not on the page: {missing[:5]}"
    if many.log.count > few.log.count + slack:
        pytest.fail(
            f"statements grew with the rows: {few.log.count} -> {many.log.count}\n"
            f"--- few:\n{few.log.report()}\n--- many:\n{many.log.report()}",
            pytrace=False,
        )


def uniq(prefix: str) -> str:
    return f"{prefix}{next(_n)}"


def new_circle(session, city: Region | None = None) -> Region:
    """A business circle under its own district (and its own city unless given): a row in
    it has a region path of its own, nothing shared with the rows next to it."""
    if city is None:
        city = Region(name=uniq("市"), level=RegionLevel.city)
        session.add(city)
        session.flush()
    district = Region(name=uniq("区"), level=RegionLevel.district, parent_id=city.id)
    session.add(district)
    session.flush()
    circle = Region(name=uniq("商圈"), level=RegionLevel.circle, parent_id=district.id)
    session.add(circle)
    session.flush()
    return circle


@pytest.fixture
def shop(app) -> Shop:
    """A merchant with two approved stores, its owner and a cashier."""
    with tx() as session:
        return make_shop(session, new_circle(session), name=uniq("川味小馆"))


def add_stores(shop: Shop, count: int) -> list[str]:
    names = []
    with tx() as session:
        for i in range(count):
            name = uniq("分店")
            rejected = i % 3 == 0
            session.add(Store(
                merchant_id=shop.merchant.id, name=name, address=uniq("幸福路"), circle_id=new_circle(session).id,
                cuisines=["hunan", "bbq"], avg_spend_fen=5000 + i,
                status=ReviewStatus.rejected if rejected else ReviewStatus.approved,
                review_reason="照片不清楚" if rejected else None,
            ))
            names.append(name)
    return names


def add_staff_members(store_id: int, count: int) -> list[str]:
    """``count`` members of our own (each a new WeCom userid) serving the store."""
    names = []
    with tx() as session:
        store = session.get(Store, store_id)
        for i in range(count):
            sm = add_staff(session, store, uniq("member"), backup=i % 4 == 3)
            names.append(sm.member.name)
    return names


def live_template(shop: Shop, **kw):
    """Redeemable now, whatever the clock says (valid N days from issue)."""
    base = dict(valid_from=None, valid_until=None, valid_days=30, total_stock=None, per_diner_limit=5)
    base.update(kw)
    return make_template(shop, **base)


def redeemed_coupon(shop: Shop, template_id: int, store_id: int, *, resident_id: int | None = None,
                    when=None) -> None:
    """Issue a coupon and redeem it at ``store_id`` through the services (at ``when``)."""
    when = when or utcnow()
    with tx() as session:
        holder = f"r:{resident_id}" if resident_id else uniq("wmHolder")
        coupon = coupon_svc.issue_coupon(session, template_id, holder, resident_id=resident_id,
                                         now=when - timedelta(minutes=5))
        coupon_svc.redeem(session, coupon.short_code, store_id, shop.cashier.id, 12000, uuid.uuid4().hex,
                          now=when, merchant_id=shop.merchant.id)


# --------------------------------------------------------------------------- owner's portal


def test_portal_home_lists_stores_in_constant_queries(client, shop, render):
    login(client, shop.owner.username)
    few = render(client, "/portal/")
    names = add_stores(shop, MANY - FEW)
    many = render(client, "/portal/")
    assert_flat(few, many, names)


def test_store_form_circle_choices_in_constant_queries(client, shop, render):
    """The new-store form offers every business circle by its full path."""
    login(client, shop.owner.username)
    few = render(client, "/portal/stores/new")
    with tx() as session:
        names = [new_circle(session).name for _ in range(MANY)]
    many = render(client, "/portal/stores/new")
    assert_flat(few, many, names)


def test_store_page_lists_staff_in_constant_queries(client, shop, render):
    url = f"/portal/stores/{shop.store.id}"
    add_staff_members(shop.store.id, FEW)
    login(client, shop.owner.username)
    few = render(client, url)
    names = add_staff_members(shop.store.id, MANY - FEW)
    with tx() as session:
        for _ in range(MANY):
            session.add(User(username=uniq("till"), password_hash="!", role=Role.cashier,
                             merchant_id=shop.merchant.id, store_id=shop.store.id))
    many = render(client, url)
    assert_flat(few, many, names)


def test_cashiers_page_in_constant_queries(client, shop, render):
    url = f"/portal/stores/{shop.store.id}/cashiers"

    def add_cashiers(count: int) -> list[str]:
        names = []
        with tx() as session:
            for i in range(count):
                names.append(uniq("till"))
                session.add(User(username=names[-1], display_name=uniq("收银员"), password_hash="!",
                                 role=Role.cashier, merchant_id=shop.merchant.id, store_id=shop.store.id,
                                 active=i % 2 == 0))
        return names

    add_cashiers(FEW - 1)  # and the shop's own cashier
    login(client, shop.owner.username)
    few = render(client, url)
    names = add_cashiers(MANY - FEW)
    many = render(client, url)
    assert_flat(few, many, names)


def add_channels(store_id: int, count: int) -> list[str]:
    """Channel codes as WeCom made them (config_id, QR), each with a few scans."""
    names = []
    with tx() as session:
        for i in range(count):
            channel = Channel(store_id=store_id, name=uniq("桌贴"), kind=("door", "table", "flyer")[i % 3],
                              config_id=uuid.uuid4().hex, qr_code=f"https://wework.qpic.cn/{uuid.uuid4().hex}.png",
                              users=["zhangwei"], auto_accept_hours_only=i % 2 == 0)
            session.add(channel)
            session.flush()
            for k in range(i % 3 + 1):
                session.add(ChannelAdd(channel_id=channel.id, external_userid=uniq("wmScan"), member_userid="zhangwei"))
            names.append(channel.name)
    return names


def test_channels_list_in_constant_queries(client, shop, render):
    url = f"/portal/stores/{shop.store.id}/channels"
    add_channels(shop.store.id, FEW)
    login(client, shop.owner.username)
    few = render(client, url)
    names = add_channels(shop.store.id, MANY - FEW)
    many = render(client, url)
    assert_flat(few, many, names)


def add_templates(shop: Shop, count: int) -> list[str]:
    """Templates of every kind, half limited to a store of their own, some with coupons
    issued and redeemed (the list shows the counts)."""
    names = []
    for i in range(count):
        with tx() as session:
            store = Store(merchant_id=shop.merchant.id, name=uniq("店"), address="幸福路", status=ReviewStatus.approved,
                          circle_id=shop.store.circle_id, cuisines=["sichuan"])
            session.add(store)
            session.flush()
            store_id = store.id
        kind = (CouponKind.amount_off, CouponKind.percent_off, CouponKind.voucher)[i % 3]
        terms = {
            CouponKind.amount_off: dict(value=2000, min_spend_fen=10000),
            CouponKind.percent_off: dict(value=85, cap_fen=3000, min_spend_fen=0),
            CouponKind.voucher: dict(value=1000, min_spend_fen=0),
        }[kind]
        template = live_template(shop, name=uniq("券"), kind=kind, store_ids=[store_id] if i % 2 else [], **terms)
        if i % 3 == 0:
            redeemed_coupon(shop, template.id, store_id)
        names.append(template.name)
    return names


def test_coupon_templates_list_in_constant_queries(client, shop, render):
    add_templates(shop, FEW)
    login(client, shop.owner.username)
    few = render(client, "/portal/coupons/")
    names = add_templates(shop, MANY - FEW)
    many = render(client, "/portal/coupons/")
    assert_flat(few, many, names)


def add_redemptions(shop: Shop, count: int) -> list[str]:
    """Redemptions at the shop's main store, each of its own template."""
    names = []
    for _ in range(count):
        template = live_template(shop, name=uniq("核销券"))
        redeemed_coupon(shop, template.id, shop.store.id)
        names.append(template.name)
    return names


@pytest.mark.parametrize("role", ["owner", "cashier"])
def test_desk_recent_redemptions_in_constant_queries(client, shop, render, role):
    user = shop.owner if role == "owner" else shop.cashier
    add_redemptions(shop, FEW)
    login(client, user.username)
    few = render(client, "/desk")
    names = add_redemptions(shop, MANY - FEW)
    stores = add_stores(shop, MANY)  # the owner's store picker
    many = render(client, "/desk")
    # the desk shows the latest 10
    assert_flat(few, many, names[-10:] + ([s for s in stores] if role == "owner" else []))


def fill_dashboard(shop: Shop, count: int) -> list[str]:
    """Templates with coupons issued and redeemed on days of their own, channels with
    scans, and stores for the picker."""
    names = []
    now = utcnow()
    for i in range(count):
        template = live_template(shop, name=uniq("看板券"))
        redeemed_coupon(shop, template.id, shop.store.id, when=now - timedelta(days=next(_n) % 28, hours=1))
        names.append(template.name)
    channels = add_channels(shop.store.id, count)
    with tx() as session:  # each code brought a diner who got a coupon: the store's channel table
        for channel_id in session.scalars(select(Channel.id).where(Channel.name.in_(channels))):
            coupon_svc.issue_coupon(session, template.id, uniq("wmScan"), now=now, source=CouponSource.welcome,
                                    store_id=shop.store.id, channel_id=channel_id)
    names += channels
    names += add_stores(shop, count)
    return names


@pytest.mark.parametrize("scope", ["portal", "store"])
def test_dashboard_in_constant_queries(client, shop, render, scope):
    url = "/portal/dashboard" if scope == "portal" else f"/portal/dashboard?store={shop.store.id}"
    fill_dashboard(shop, FEW)
    login(client, shop.owner.username)
    few = render(client, url)
    names = fill_dashboard(shop, MANY - FEW)
    many = render(client, url)
    shown = [n for n in names if not n.startswith("桌贴") or scope == "store"]
    assert_flat(few, many, shown)


# --------------------------------------------------------------------------- review and admin


def add_review_rows(city_id: int, count: int) -> list[str]:
    """Stores of merchants of their own in circles of their own: half pending review, half
    already decided (the "recent" table)."""
    names = []
    with tx() as session:
        city = session.get(Region, city_id)
        for i in range(count * 2):
            n = next(_n)
            merchant = Merchant(name=uniq("商户"), credit_code=f"91320000MA{n:08d}", contact_mobile="13900139000")
            session.add(merchant)
            session.flush()
            pending = i % 2 == 0
            store = Store(
                merchant_id=merchant.id, name=uniq("待审店" if pending else "已审店"), address=uniq("南京路"),
                circle_id=new_circle(session, city).id, cuisines=["cantonese"],
                opening_hours={"mon": [["11:00", "14:00"]]},
                status=ReviewStatus.pending if pending else ReviewStatus.approved,
                reviewed_at=None if pending else utcnow(),
            )
            session.add(store)
            names += [store.name] + ([merchant.name] if pending else [])
    return names


@pytest.mark.parametrize("role", ["manager", "admin"])
def test_review_queue_in_constant_queries(client, app, render, role):
    with tx() as session:
        city = Region(name=uniq("审核市"), level=RegionLevel.city)
        session.add(city)
        session.flush()
        city_id = city.id
    username = uniq(role)
    if role == "manager":
        make_manager(username, [city_id])
    else:
        make_admin(username)
    add_review_rows(city_id, FEW)
    login(client, username)
    few = render(client, "/portal/review")
    names = add_review_rows(city_id, MANY - FEW)
    many = render(client, "/portal/review")
    assert_flat(few, many, names)


def add_region_chains(count: int) -> list[str]:
    names = []
    with tx() as session:
        city = Region(name=uniq("城"), level=RegionLevel.city)
        session.add(city)
        session.flush()
        for _ in range(count):
            names.append(new_circle(session, city).name)
    return names


def test_admin_regions_in_constant_queries(client, app, render):
    make_admin("admin")
    add_region_chains(FEW)
    login(client, "admin")
    few = render(client, "/admin/regions")
    names = add_region_chains(MANY - FEW)
    many = render(client, "/admin/regions")
    assert_flat(few, many, names)


def add_managers(count: int) -> list[str]:
    """Managers, each over a circle and a district of their own."""
    names = []
    with tx() as session:
        for _ in range(count):
            circle = new_circle(session)
            other = new_circle(session)
            district = session.get(Region, other.parent_id)
            user = User(username=uniq("mgr"), display_name=uniq("经理"), password_hash="!", role=Role.manager)
            user.regions = [circle, district]
            session.add(user)
            names += [user.username, circle.name, district.name]
    return names


def test_admin_managers_in_constant_queries(client, app, render):
    make_admin("admin")
    add_managers(FEW)
    login(client, "admin")
    few = render(client, "/admin/managers")
    names = add_managers(MANY - FEW)
    many = render(client, "/admin/managers")
    assert_flat(few, many, names)


# --------------------------------------------------------------------------- staff (WeCom)


@pytest.fixture
def wecom_sim(tmp_path):
    """The WeCom simulator over real HTTP, its own corp directory per test."""
    server = serve_simulator(tmp_path, WECOM_SIM_CALLBACK_URL="")
    yield server
    server.stop()


@pytest.fixture
def live_client(backend, database_urls, redis_url, tmp_path, wecom_sim):
    """A portal client on an app whose WeCom client talks to the simulator (as in
    tests/merchants/test_enrolment.py)."""
    with running_app(tmp_path / "instance", database_urls[backend], redis_url,
                     WECOM_API_BASE=f"{wecom_sim.url}/cgi-bin/", PASSWORD_HASH_METHOD="scrypt:1024:8:1") as app:
        app.test_client_class = FreshContextClient
        yield app.test_client()


def hire_in_wecom(sim_server, count: int) -> list[tuple[str, str]]:
    """New members in the simulated corp's directory, allowed to hold customers (what an
    admin does in WeCom's console; the simulator has no API for it, as WeCom's contact
    secret cannot create members)."""
    from wecom.simulator.models import Member as SimMember

    hired = [(uniq("hire"), uniq("新员工")) for _ in range(count)]
    with sim_server.app.extensions["wecom_sim"].transaction() as session:
        for userid, name in hired:
            session.add(SimMember(userid=userid, name=name, customer_contact=True))
    return hired


def test_staff_page_in_constant_queries(live_client, wecom_sim, render):
    client = live_client
    with tx() as session:
        s = make_shop(session, new_circle(session), name=uniq("接待小馆"))
        store_id, owner = s.store.id, s.owner.username
        for userid in ("zhangwei", "lina"):
            add_staff(session, s.store, userid)
        # the page offers only members granted to the merchant (or serving it): grant 赵磊
        session.add(MemberGrant(merchant_id=s.store.merchant_id, member_id=make_member(session, "zhaolei").id))
    url = f"/portal/stores/{store_id}/staff"
    login(client, owner)
    few = render(client, url)
    assert "张伟" in few.html and "赵磊" in few.html  # the simulator's corp
    hired = hire_in_wecom(wecom_sim, MANY - FEW)
    with tx() as session:
        store = session.get(Store, store_id)
        for userid, name in hired:
            sm = StoreMember(store_id=store.id, member_id=make_member(session, userid, name).id)
            session.add(sm)
    many = render(client, url)
    assert_flat(few, many, [name for _userid, name in hired])
    assert many.html.count("checked") >= MANY


def test_staff_page_without_wecom_in_constant_queries(backend, database_urls, redis_url, tmp_path, render):
    """WeCom unreachable: the page lists the current staff from our own rows instead."""
    from tests.support.servers import make_test_app, truncate_all

    app = make_test_app(
        tmp_path / "instance", database_urls[backend], redis_url, PASSWORD_HASH_METHOD="scrypt:1024:8:1",
        WECOM_API_BASE="http://127.0.0.1:9/cgi-bin/", WECOM_MAX_RETRIES=0, WECOM_HTTP_TIMEOUT=2.0,
    )
    app.test_client_class = FreshContextClient
    with app.app_context():
        try:
            client = app.test_client()
            with tx() as session:
                s = make_shop(session, new_circle(session), name=uniq("断网小馆"))
                store_id, owner = s.store.id, s.owner.username
            add_staff_members(store_id, FEW)
            login(client, owner)
            url = f"/portal/stores/{store_id}/staff"
            few = render(client, url)
            assert "暂时无法从企业微信读取成员" in few.html
            names = add_staff_members(store_id, MANY - FEW)
            many = render(client, url)
            assert_flat(few, many, names)
        finally:
            db.session.remove()
            truncate_all(database_urls[backend])
            app.extensions["redis"].flushdb()
            app.extensions["redis"].close()


# --------------------------------------------------------------------------- transfers


def add_transfer_rows(shop: Shop, count: int, items_each: int = 3) -> list[str]:
    """Members serving the shop's stores, each with customers and a transfer of their own
    to a colleague of their own, with items in every state."""
    names = []
    statuses = list(TransferItemStatus)
    with tx() as session:
        for i in range(count):
            store = session.get(Store, shop.store.id if i % 2 else shop.other_store.id)
            leaving = add_staff(session, store, uniq("leaver")).member
            takeover = add_staff(session, store, uniq("heir")).member
            transfer = MemberTransfer(
                from_member_id=leaving.id, to_member_id=takeover.id, merchant_id=shop.merchant.id,
                kind=TransferKind.resigned if i % 2 else TransferKind.on_job, total=items_each,
                status=TransferStatus.running if i % 3 else TransferStatus.done,
            )
            session.add(transfer)
            session.flush()
            for k in range(items_each):
                resident = make_resident(session)
                session.add(ContactRelationship(resident_id=resident.id, member_id=leaving.id, store_id=store.id,
                                                status=RelationshipStatus.open, added_at=utcnow()))
                session.add(TransferItem(transfer_id=transfer.id, resident_id=resident.id,
                                         external_userid=resident.external_userid, batch=1,
                                         status=statuses[k % len(statuses)]))
            names += [leaving.name, takeover.name, f"#{transfer.id}"]
    return names


@pytest.mark.parametrize("scope", ["all", "store"])
def test_transfers_list_in_constant_queries(client, shop, render, scope):
    url = "/portal/transfers/" if scope == "all" else f"/portal/transfers/?store_id={shop.store.id}"
    add_transfer_rows(shop, FEW)
    login(client, shop.owner.username)
    few = render(client, url)
    names = add_transfer_rows(shop, MANY - FEW)
    many = render(client, url)
    assert_flat(few, many, names)


def test_transfer_detail_in_constant_queries(client, shop, render):
    """One transfer of 250 customers in three batches, refusals and failures named."""
    with tx() as session:
        leaving = add_staff(session, session.get(Store, shop.store.id), "leaver-detail").member
        takeover = add_staff(session, session.get(Store, shop.store.id), "heir-detail").member
        transfer = MemberTransfer(from_member_id=leaving.id, to_member_id=takeover.id, merchant_id=shop.merchant.id,
                                  kind=TransferKind.resigned, total=0)
        session.add(transfer)
        session.flush()
        transfer_id = transfer.id

    def add_items(count: int) -> None:
        statuses = list(TransferItemStatus)
        with tx() as session:
            t = session.get(MemberTransfer, transfer_id)
            for _ in range(count):
                k = t.total
                resident = make_resident(session, name=uniq("顾客"))
                status = statuses[k % len(statuses)]
                session.add(TransferItem(
                    transfer_id=t.id, resident_id=resident.id, external_userid=resident.external_userid,
                    batch=k // 100 + 1, status=status,
                    errcode=40099 if status == TransferItemStatus.refused else (
                        40003 if status == TransferItemStatus.failed else None),
                ))
                t.total += 1

    add_items(FEW)
    login(client, shop.owner.username)
    url = f"/portal/transfers/{transfer_id}"
    few = render(client, url)
    add_items(250 - FEW)
    many = render(client, url)
    assert_flat(few, many, ["第 3 批", 'data-testid="total">250<'])
    assert many.html.count("<tr") > few.html.count("<tr") + 50  # the refused and failed customers


# --------------------------------------------------------------------------- diner pages


def sign_in(client, resident_id: int) -> None:
    """Open a personal link, as from a welcome card."""
    resp = client.get(f"/m/?t={make_token(resident_id)}")
    assert resp.status_code == 302


def give_coupons(resident_id: int, count: int, *, shop: Shop | None = None) -> list[str]:
    """Coupons from merchants of their own (or all from ``shop``): valid ones, some limited
    to one store, one used and one expired in every five."""
    names = []
    for i in range(count):
        with tx() as session:
            s = shop or make_shop(session, new_circle(session), name=uniq("街坊小馆"))
        template = live_template(s, name=uniq("街坊券"), store_ids=[s.store.id] if i % 2 else [])
        if i % 5 == 3:
            redeemed_coupon(s, template.id, s.store.id, resident_id=resident_id)
        else:
            when = utcnow() - timedelta(days=40) if i % 5 == 4 else None
            with tx() as session:
                coupon_svc.issue_coupon(session, template.id, f"r:{resident_id}", resident_id=resident_id, now=when)
        names.append(template.name if i % 5 < 3 else "")
    return [n for n in names if n]


@pytest.mark.parametrize("tab", ["valid", "used"])
def test_my_coupons_in_constant_queries(client, app, render, tab):
    with tx() as session:
        resident_id = make_resident(session).id
    give_coupons(resident_id, FEW + 3)  # one of each shelf
    sign_in(client, resident_id)
    url = f"/m/?tab={tab}"
    few = render(client, url)
    names = give_coupons(resident_id, MANY)
    many = render(client, url)
    assert_flat(few, many, names if tab == "valid" else [])
    assert many.html.count('data-testid="coupon-item"') > few.html.count('data-testid="coupon-item"')


@pytest.mark.parametrize("diner", [True, False])
def test_diner_store_page_in_constant_queries(client, shop, render, diner):
    """A store's offers, and the coupons a signed-in diner holds there."""
    with tx() as session:
        resident_id = make_resident(session).id

    def add_offers(count: int) -> list[str]:
        names = []
        for i in range(count):
            store_ids = [[], [shop.store.id], [shop.store.id, shop.other_store.id]][i % 3]
            template = live_template(shop, name=uniq("本店券"), store_ids=store_ids)
            with tx() as session:
                coupon_svc.issue_coupon(session, template.id, f"r:{resident_id}", resident_id=resident_id)
            names.append(template.name)
        return names

    add_offers(FEW)
    if diner:
        sign_in(client, resident_id)
    url = f"/m/s/{shop.store.id}"
    few = render(client, url)
    names = add_offers(MANY - FEW)
    many = render(client, url)
    assert_flat(few, many, names)
    if diner:
        assert many.html.count('data-testid="coupon-item"') == MANY
