"""The demo neighbourhood (``linli seed-demo``): what ``make run`` shows a newcomer, seeded
the way ``make run`` does it — once before the simulator is up, once after — and idempotent."""
from __future__ import annotations

import socket
from collections import Counter

import pytest
from sqlalchemy import select

from accounts.models import Role, User
from accounts.services import authenticate
from core.db import db
from coupons.models import CouponKind, CouponTemplate, TemplateStatus
from marketplace.all_models import metadata
from marketplace.demo import (
    DEMO_ADMIN,
    DEMO_CASHIER,
    DEMO_CIRCLE,
    DEMO_MANAGER,
    DEMO_PASSWORD,
    DEMO_STORES,
    demo_logins,
    seed_demo,
)
from merchants.models import Channel, Member, Region, ReviewStatus, Store
from merchants.services import region_path, stores_visible_to
from tests.support.servers import LiveServer
from wecom.client import WeComClient, WeComError
from wecom.simulator import create_simulator_app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sim:
    """A live simulator and a client for it."""

    def __init__(self, app, path) -> None:
        self.server = LiveServer()
        self.server.app = create_simulator_app(
            {"WECOM_SIM_DATABASE_URL": f"sqlite:///{path}", "WECOM_SIM_PUBLIC_URL": self.server.url}
        )
        self.url = self.server.url
        self.base = f"{self.url}/cgi-bin/"
        self.client = WeComClient(app.config["WECOM_CORP_ID"], app.config["WECOM_CONTACT_SECRET"], base_url=self.base)

    def close(self) -> None:
        self.client.close()
        self.server.stop()


@pytest.fixture
def sim(app, tmp_path):
    s = Sim(app, tmp_path / "sim.db")
    yield s
    s.close()


@pytest.fixture
def offline(app):
    """A client whose WeCom API is down (nothing listens on the port), as before ``linli run``."""
    base = f"http://127.0.0.1:{_free_port()}/cgi-bin/"
    client = WeComClient(app.config["WECOM_CORP_ID"], app.config["WECOM_CONTACT_SECRET"], base_url=base)
    yield client, base
    client.close()


def seed(wecom, base) -> list[str]:
    db.session.remove()  # as its own command: a fresh session and transaction
    with db.session.begin():
        lines = seed_demo(db.session, wecom=wecom, wecom_base=base)
    db.session.remove()
    return lines


# Bookkeeping a member sync refreshes on every run by design; everything else must stay put.
VOLATILE = {("members", "synced_at")}


def snapshot() -> dict[str, list[tuple]]:
    """Every row of every table, so "a second seed changes nothing" is checked literally."""
    rows = {}
    with db.engine.connect() as conn:
        for table in metadata.sorted_tables:
            cols = [c for c in table.columns if (table.name, c.name) not in VOLATILE]
            order = list(table.primary_key.columns) or cols
            rows[table.name] = [tuple(r) for r in conn.execute(select(*cols).order_by(*order))]
    return rows


def demo_stores() -> list[Store]:
    names = [s.store for s in DEMO_STORES]
    return list(db.session.scalars(select(Store).where(Store.name.in_(names)).order_by(Store.id)))


def test_offline_seed_builds_the_neighbourhood(app, offline):
    lines = seed(*offline)
    assert any("not reachable" in line for line in lines), lines

    stores = demo_stores()
    assert len(stores) == len(DEMO_STORES) == 8
    assert {s.status for s in stores} == {ReviewStatus.approved}
    assert {region_path(s.circle) for s in stores} == {f"上海 · 徐汇区 · {DEMO_CIRCLE}"}
    first_cuisines = {s.cuisines[0] for s in stores}
    assert first_cuisines == {"sichuan", "hunan", "cantonese", "hotpot", "japanese", "noodles", "dessert", "bbq"}

    for spec, store in zip(DEMO_STORES, stores):
        owner = authenticate(db.session, spec.owner, DEMO_PASSWORD)
        assert owner is not None and owner.role == Role.owner and owner.merchant_id == store.merchant_id
        assert store.welcome_text == spec.welcome
        templates = list(db.session.scalars(select(CouponTemplate).where(CouponTemplate.merchant_id == store.merchant_id)))
        assert Counter(t.kind for t in templates) == {CouponKind.amount_off: 1, CouponKind.percent_off: 1, CouponKind.voucher: 1}
        welcome = db.session.get(CouponTemplate, store.welcome_template_id)
        assert welcome.kind == CouponKind.voucher and welcome.status == TemplateStatus.active
        assert welcome.merchant_id == store.merchant_id
        # No WeCom yet: no staff, and no channel row without a real contact way.
        assert store.staff == []
    assert db.session.scalars(select(Channel)).all() == []

    admin = authenticate(db.session, DEMO_ADMIN, DEMO_PASSWORD)
    assert admin.role == Role.admin
    manager = authenticate(db.session, DEMO_MANAGER, DEMO_PASSWORD)
    assert manager.role == Role.manager and [r.name for r in manager.regions] == ["徐汇区"]
    visible = set(db.session.scalars(stores_visible_to(db.session, manager)))
    assert {s.id for s in stores} <= {s.id for s in visible}
    cashier = authenticate(db.session, DEMO_CASHIER, DEMO_PASSWORD)
    assert cashier.role == Role.cashier and cashier.store_id == stores[0].id
    assert cashier.merchant_id == stores[0].merchant_id
    assert {u for u, _what in demo_logins()} == set(db.session.scalars(select(User.username)))

    before = snapshot()
    again = seed(*offline)
    assert snapshot() == before
    assert "regions: 0 new" in again and any("demo accounts: 0 new" in line for line in again), again


def test_second_seed_with_the_simulator_adds_staff_and_channels(app, offline, sim):
    """``make run``: seed before the simulator is up, then ``linli run`` seeds again."""
    seed(*offline)
    lines = seed(sim.client, sim.base)
    assert any(line.startswith("channels: 8 stores staffed") for line in lines), lines

    holders = set(sim.client.customers.follow_user_list())
    for spec, store in zip(DEMO_STORES, demo_stores()):
        staff = {sm.member.userid: sm for sm in store.staff}
        assert set(staff) == {u for u, _b, _c in spec.staff}
        assert set(staff) <= holders
        assert any(not sm.backup for sm in staff.values())
        channels = list(db.session.scalars(select(Channel).where(Channel.store_id == store.id).order_by(Channel.id)))
        assert 2 <= len(channels) <= 3
        assert [(c.name, c.kind) for c in channels] == list(spec.channels)
        for channel in channels:
            way = sim.client.contact_way.get(channel.config_id)  # a real contact way in the simulator
            assert way["state"] == channel.state
            assert set(way["user"]) == set(channel.users) <= set(staff)
            assert channel.qr_code.startswith(sim.url)
    assert db.session.scalar(select(Member).where(Member.userid == "zhaolei")).can_hold_customers is False

    before = snapshot()
    again = seed(sim.client, sim.base)
    assert snapshot() == before
    assert any("0 stores staffed, 0 codes created, 0 contact ways re-created" in line for line in again), again


def test_a_reset_simulator_gets_the_demo_contact_ways_back(app, sim, tmp_path):
    seed(sim.client, sim.base)
    old = {c.id: (c.config_id, c.state) for c in db.session.scalars(select(Channel))}
    assert len(old) >= 16
    fresh = Sim(app, tmp_path / "fresh-sim.db")  # instance/wecom-sim.db deleted, app database kept
    try:
        lines = seed(fresh.client, fresh.base)
        assert any(f"{len(old)} contact ways re-created" in line for line in lines), lines
        for channel in db.session.scalars(select(Channel)):
            assert channel.state == old[channel.id][1]  # scans still count for the same channel
            assert fresh.client.contact_way.get(channel.config_id)["state"] == channel.state
            assert channel.qr_code.startswith(fresh.url)
        before = snapshot()
        seed(fresh.client, fresh.base)
        assert snapshot() == before
    finally:
        fresh.close()
    with pytest.raises(WeComError):  # the contact ways in the old simulator were not reused
        sim.client.contact_way.get(db.session.scalars(select(Channel)).first().config_id)


def test_owner_changes_survive_a_reseed(app, sim):
    from merchants.services import deactivate_channel

    seed(sim.client, sim.base)
    store_id = demo_stores()[0].id
    db.session.remove()
    with db.session.begin():
        store = db.session.get(Store, store_id)
        store.welcome_text = "我们自己写的欢迎语"
        store.welcome_template_id = None
        channel = db.session.scalars(select(Channel).where(Channel.store_id == store.id)).first()
        deactivate_channel(db.session, sim.client, channel)
        template = db.session.scalars(select(CouponTemplate).where(CouponTemplate.merchant_id == store.merchant_id)).first()
        template.status = TemplateStatus.paused
    db.session.remove()

    before = snapshot()
    seed(sim.client, sim.base)
    assert snapshot() == before


def test_seed_keeps_its_hands_off_a_taken_username(app, offline):
    """A real account that happens to use a demo owner's name is not enrolled or changed."""
    from accounts.services import create_user

    with db.session.begin():
        create_user(db.session, username=DEMO_STORES[0].owner, password="their-own-pass", role=Role.manager)
    seed(*offline)
    user = db.session.scalar(select(User).where(User.username == DEMO_STORES[0].owner))
    assert user.role == Role.manager and user.merchant_id is None
    assert authenticate(db.session, DEMO_STORES[0].owner, "their-own-pass") is not None
    assert len(demo_stores()) == len(DEMO_STORES) - 1
    assert db.session.scalar(select(Region).where(Region.name == DEMO_CIRCLE)) is not None


def test_readme_lists_the_demo_logins():
    from core.config import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"`{DEMO_PASSWORD}`" in readme
    for username, _what in demo_logins():
        assert f"`{username}`" in readme, username
