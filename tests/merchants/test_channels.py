"""Channel codes: state encoding, counts, the daily cap, opening hours, and contact ways
created and updated over real HTTP against the WeCom simulator."""
from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone

import pytest
from flask_babel import refresh
from sqlalchemy import select

from accounts.models import Role, User
from accounts.services import create_user
from core.db import db
from core.extensions import QUEUE_DEFAULT, enqueue
from core.localtime import LOCAL_TZ
from core.txn import transaction
from core.wecom import get_wecom
from marketplace.worker import drain
from merchants import jobs, posters
from merchants.models import Channel, Member, Merchant, Region, RegionLevel, ReviewStatus, Store, StoreMember
from merchants.services import ChannelError, channels, make_state, parse_state
from residents.services import resolve_state
from tests.support.posters import decode_qr
from tests.support.servers import running_app, serve_simulator

CST = LOCAL_TZ
_seq = itertools.count(1)
SIM_NAMES = {"zhangwei": "张伟", "lina": "李娜", "wangfang": "王芳", "zhaolei": "赵磊", "huangli": "黄丽"}


# --- factories ---------------------------------------------------------------------------


def make_store(session, *, status=ReviewStatus.approved, opening_hours=None, name="老王川菜馆") -> Store:
    n = next(_seq)
    circle = Region(name=f"商圈{n}", level=RegionLevel.circle)
    merchant = Merchant(name=f"商户{n}", credit_code=f"91110000{n:010d}", contact_mobile="13800138000")
    store = Store(
        merchant=merchant,
        name=name,
        address="和平里东街 1 号",
        circle=circle,
        cuisines=["sichuan", "hotpot"],
        opening_hours=opening_hours or {},
        status=status,
    )
    session.add(store)
    session.flush()
    return store


def add_staff(session, store, userid, *, backup=False, cap=None, leaving=False, name=None) -> StoreMember:
    member = session.scalar(select(Member).where(Member.userid == userid))
    if member is None:
        member = Member(userid=userid, name=name or SIM_NAMES.get(userid, userid))
        session.add(member)
    sm = StoreMember(store=store, member=member, backup=backup, daily_add_cap=cap, leaving=leaving)
    session.add(sm)
    session.flush()
    return sm


def bare_channel(session, store, name="门口海报") -> Channel:
    """A channel row without WeCom (for counting tests)."""
    ch = Channel(store_id=store.id, name=name, kind="door")
    session.add(ch)
    session.flush()
    ch.state = make_state(store.id, ch.id)
    ch.config_id = f"cfg-{ch.id}-{next(_seq)}"
    session.flush()
    return ch


# --- state -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "store_id,channel_id",
    [(1, 1), (12, 1), (48, 2), (1, 434), (35, 36), (10**6, 10**7), (2**31 - 1, 2**31 - 1), (2**63 - 1, 2**63 - 1)],
)
def test_state_round_trip_and_length(store_id, channel_id):
    state = make_state(store_id, channel_id)
    assert len(state) <= 30
    assert parse_state(state) == (store_id, channel_id)


def test_state_is_unambiguous_where_base36_digits_look_like_separators():
    # store 48 is "1c" and channel 434 is "c2": without a separator "s1cc2" would be ambiguous
    assert make_state(48, 2) != make_state(1, 434)
    assert parse_state(make_state(48, 2)) == (48, 2)


@pytest.mark.parametrize("junk", [None, "", "s0-c1", "s01-c1", "s1-c", "S1-C1", "s1c1", "x" * 31, "g:abc", "s1-c1 "])
def test_parse_state_rejects_foreign_states(junk):
    assert parse_state(junk) is None


# --- opening hours -----------------------------------------------------------------------


def cst(y, mo, d, h, mi=0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=CST).astimezone(timezone.utc)


HOURS = {"mon": [["11:00", "14:00"], ["17:00", "02:00"]], "tue": [["11:00", "14:00"]]}


@pytest.mark.parametrize(
    "when,open_",
    [
        (cst(2025, 6, 2, 12), True),  # Monday lunch
        (cst(2025, 6, 2, 15), False),  # Monday afternoon break
        (cst(2025, 6, 2, 23), True),  # Monday late night
        (cst(2025, 6, 3, 1, 30), True),  # Tuesday 01:30 belongs to Monday's late shift
        (cst(2025, 6, 3, 2, 0), False),
        (cst(2025, 6, 3, 11, 0), True),
        (cst(2025, 6, 4, 12), False),  # Wednesday: closed
    ],
)
def test_is_open(when, open_):
    assert channels.is_open(HOURS, when) is open_


def test_empty_hours_means_always_open():
    assert channels.is_open({}, cst(2025, 6, 4, 4))


# --- counts and the cap (database only) ---------------------------------------------------


def test_a_crafted_state_past_postgresqls_integer_names_nothing(app):
    """parse_state reads any base-36 id, but the lookups treat ids no row can hold as not
    ours instead of failing the add event on PostgreSQL (NumericValueOutOfRange)."""
    state = make_state(2**40, 2**40)
    with transaction(db.session) as session:
        assert channels.record_add(session, state, "wm-crafted", "zhangwei", datetime.now(timezone.utc)) is False
        assert resolve_state(session, state) == (None, None)


def test_record_add_counts_once_per_diner(app):
    with transaction(db.session()):
        store = make_store(db.session)
        a, b = bare_channel(db.session, store, "门口海报"), bare_channel(db.session, store, "桌贴")
    at = datetime.now(timezone.utc)
    with transaction(db.session()):
        assert channels.record_add(db.session, a.state, "wm_1", "wang", at)
        assert not channels.record_add(db.session, a.state, "wm_1", "wang", at)  # redelivered event
        assert channels.record_add(db.session, a.state, "wm_2", "li", at)
        assert channels.record_add(db.session, b.state, "wm_1", "wang", at)
        assert not channels.record_add(db.session, "some-other-code", "wm_3", "wang", at)
        assert not channels.record_add(db.session, make_state(store.id + 1, a.id), "wm_3", "wang", at)
    assert channels.channel_counts(db.session, store.id) == {a.id: 2, b.id: 1}


def test_cap_overflow_chooses_backups_and_leaving_members_are_skipped(app):
    today = date(2025, 6, 2)
    at = cst(2025, 6, 2, 12)
    with transaction(db.session()):
        store = make_store(db.session)
        add_staff(db.session, store, "wang", cap=2)
        add_staff(db.session, store, "li")
        add_staff(db.session, store, "zhao", backup=True)
        add_staff(db.session, store, "qian", leaving=True)
        ch = bare_channel(db.session, store)
    assert channels.serving_userids(db.session, store.id, today) == ["wang", "li"]
    with transaction(db.session()):
        channels.record_add(db.session, ch.state, "wm_1", "wang", at)
        channels.record_add(db.session, ch.state, "wm_2", "wang", cst(2025, 6, 2, 0, 30))  # 16:30 UTC on the 1st
        # yesterday's adds (local time) do not count today
        channels.record_add(db.session, ch.state, "wm_0", "li", cst(2025, 6, 1, 23, 59))
    assert channels.adds_today(db.session, store.id, today) == {"wang": 2}
    assert channels.serving_userids(db.session, store.id, today) == ["li", "zhao"]
    assert channels.serving_userids(db.session, store.id, today + timedelta(days=1)) == ["wang", "li"]


def test_everyone_capped_still_reaches_someone(app):
    today = date(2025, 6, 2)
    with transaction(db.session()):
        store = make_store(db.session)
        add_staff(db.session, store, "wang", cap=1)
        add_staff(db.session, store, "zhao", backup=True, cap=1)
        ch = bare_channel(db.session, store)
        channels.record_add(db.session, ch.state, "wm_1", "wang", cst(2025, 6, 2, 9))
        channels.record_add(db.session, ch.state, "wm_2", "zhao", cst(2025, 6, 2, 9))
    assert channels.serving_userids(db.session, store.id, today) == ["wang"]


# --- portal pages (no WeCom needed) ------------------------------------------------------


def make_owner(session, store) -> "User":
    return create_user(session, username=f"owner{next(_seq)}", password="s3cret-pass", role=Role.owner,
                       merchant_id=store.merchant_id)


def sign_in(client, user) -> None:
    with client.session_transaction() as sess:
        sess["_user_id"] = user.get_id()  # Flask-Login's id: "id:session_version"
        sess["_fresh"] = True


def csrf_token(client, url) -> str:
    import re

    html = client.get(url).get_data(as_text=True)
    m = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


def test_channel_pages_are_tenant_scoped(app, client):
    with transaction(db.session()):
        mine, theirs = make_store(db.session), make_store(db.session, name="别人家")
        owner = make_owner(db.session, mine)
        other_channel = bare_channel(db.session, theirs)
    sign_in(client, owner)
    page = client.get(f"/portal/stores/{mine.id}/channels")
    assert page.status_code == 200 and "老王川菜馆" in page.get_data(as_text=True)
    for url in (
        f"/portal/stores/{theirs.id}/channels",
        f"/portal/stores/{theirs.id}/welcome",
        f"/portal/stores/{theirs.id}/channels/{other_channel.id}/poster.png",
        f"/portal/stores/{mine.id}/channels/{other_channel.id}/poster.png",  # their channel, my store
    ):
        assert client.get(url).status_code == 404, url


def test_anonymous_users_are_sent_to_login(app, client):
    with transaction(db.session()):
        store = make_store(db.session)
    resp = client.get(f"/portal/stores/{store.id}/channels")
    assert resp.status_code == 302 and "/auth/login" in resp.headers["Location"]


def test_unapproved_store_gets_no_code(app, client):
    with transaction(db.session()):
        store = make_store(db.session, status=ReviewStatus.pending)
        owner = make_owner(db.session, store)
    sign_in(client, owner)
    token = csrf_token(client, f"/portal/stores/{store.id}/channels")
    resp = client.post(f"/portal/stores/{store.id}/channels", data={"csrf_token": token, "name": "门口海报", "kind": "door"})
    assert resp.status_code == 400
    assert "通过审核后" in resp.get_data(as_text=True)
    assert db.session.scalar(select(Channel)) is None


def test_create_without_csrf_is_rejected(app, client):
    with transaction(db.session()):
        store = make_store(db.session)
        owner = make_owner(db.session, store)
    sign_in(client, owner)
    resp = client.post(f"/portal/stores/{store.id}/channels", data={"name": "门口海报", "kind": "door"})
    assert resp.status_code == 400
    assert db.session.scalar(select(Channel)) is None


# --- contact ways over real HTTP against the simulator ------------------------------------
# The simulator's demo corp: zhangwei, lina, wangfang … may hold customers; zhaolei (赵磊)
# and huangli may not.


class Sim:
    def __init__(self, url: str) -> None:
        self.url = url

    def admin(self, method: str, path: str, json=None):
        import httpx

        resp = httpx.request(method, f"{self.url}/sim/admin/{path}", json=json, timeout=10)
        resp.raise_for_status()
        return resp.json()


@pytest.fixture(scope="module")
def simulator(tmp_path_factory):
    server = serve_simulator(tmp_path_factory.mktemp("channels-sim"))
    yield Sim(server.url)
    server.stop()


@pytest.fixture
def sim(simulator):
    simulator.admin("DELETE", "faults")
    yield simulator
    simulator.admin("DELETE", "faults")


@pytest.fixture
def live_app(backend, database_urls, redis_url, tmp_path, sim):
    """The app with its WeCom client pointed at the simulator."""
    with running_app(tmp_path / "instance", database_urls[backend], redis_url,
                     WECOM_API_BASE=f"{sim.url}/cgi-bin/") as application:
        yield application


def wecom():
    return get_wecom()


def store_with_staff(staff, **kw) -> Store:
    """``staff``: (userid, backup, cap) triples."""
    with transaction(db.session()):
        store = make_store(db.session, **kw)
        for userid, backup, cap in staff:
            add_staff(db.session, store, userid, backup=backup, cap=cap)
    return store


def new_channel(store, name="门口海报", **kw) -> Channel:
    with transaction(db.session()):
        return channels.create_channel(db.session, wecom(), db.session.get(Store, store.id), name=name, kind="door", **kw)


def test_create_channel_makes_a_rotating_contact_way(live_app, sim):
    store = store_with_staff([("zhangwei", False, None), ("lina", False, None), ("wangfang", True, None)])
    ch = new_channel(store)
    assert ch.config_id and ch.qr_code == f"{sim.url}/qr/{ch.config_id}.png"
    way = wecom().contact_way.get(ch.config_id)
    assert (way["type"], way["scene"], way["skip_verify"]) == (2, 2, True)
    assert way["state"] == ch.state and parse_state(way["state"]) == (store.id, ch.id)
    assert way["user"] == ["zhangwei", "lina"]  # the backup waits for overflow
    assert way["remark"] and len(way["remark"]) <= 30


def test_member_who_cannot_hold_customers_blocks_creation_in_plain_words(live_app, sim):
    store = store_with_staff([("zhangwei", False, None), ("zhaolei", False, None)])
    before = len(wecom().contact_way.list().get("contact_way", []))
    with pytest.raises(ChannelError) as err:
        new_channel(store)
    message = str(err.value)
    assert "赵磊" in message and "zhaolei" in message and "客户联系" in message
    assert "张伟" not in message
    assert db.session.scalar(select(func_count(Channel))) == 0
    assert len(wecom().contact_way.list().get("contact_way", [])) == before


def func_count(model):
    from sqlalchemy import func

    return func.count(model.id)


def test_staff_change_updates_the_same_contact_way(live_app, sim):
    store = store_with_staff([("zhangwei", False, None)])
    ch = new_channel(store)
    config_id = ch.config_id
    with transaction(db.session()):
        for sm in list(db.session.scalars(select(StoreMember).where(StoreMember.store_id == store.id))):
            db.session.delete(sm)
        add_staff(db.session, db.session.get(Store, store.id), "lina")
    with transaction(db.session()):
        assert channels.staff_changed(db.session, wecom(), store.id) == 1
    way = wecom().contact_way.get(config_id)
    assert way["user"] == ["lina"] and way["state"] == ch.state
    assert db.session.get(Channel, ch.id).config_id == config_id
    # nothing changed: no call
    with transaction(db.session()):
        assert channels.staff_changed(db.session, wecom(), store.id) == 0


def test_staff_change_to_a_member_without_permission_is_refused(live_app, sim):
    store = store_with_staff([("zhangwei", False, None)])
    ch = new_channel(store)
    with transaction(db.session()):
        add_staff(db.session, db.session.get(Store, store.id), "huangli", name="黄丽")
    with pytest.raises(ChannelError, match="黄丽"), transaction(db.session()):
        channels.staff_changed(db.session, wecom(), store.id)
    assert wecom().contact_way.get(ch.config_id)["user"] == ["zhangwei"]


def test_cap_overflow_moves_the_code_to_backups_and_back(live_app, sim):
    store = store_with_staff([("zhangwei", False, 1), ("lina", True, None)])
    ch = new_channel(store)
    now = datetime.now(timezone.utc)
    today = channels.local_today(now)
    with transaction(db.session()):
        channels.record_add(db.session, ch.state, "wm_diner_1", "zhangwei", now)
    with transaction(db.session()):
        assert channels.rebalance_channels(db.session, wecom(), store.id, today) == 1
    assert wecom().contact_way.get(ch.config_id)["user"] == ["lina"]
    with transaction(db.session()):
        assert channels.rebalance_channels(db.session, wecom(), store.id, today) == 0  # no change, no call
    with transaction(db.session()):
        assert channels.rebalance_channels(db.session, wecom(), store.id, today + timedelta(days=1)) == 1
    way = wecom().contact_way.get(ch.config_id)
    assert way["user"] == ["zhangwei"] and way["config_id"] == ch.config_id


def test_rebalance_job_runs_on_a_real_worker(live_app, sim):
    store = store_with_staff([("zhangwei", False, 1), ("wangfang", True, None)])
    ch = new_channel(store)
    with transaction(db.session()):
        channels.record_add(db.session, ch.state, "wm_diner_2", "zhangwei", datetime.now(timezone.utc))
    job = enqueue(QUEUE_DEFAULT, jobs.rebalance_all_stores)
    drain(live_app)
    assert job.get_status(refresh=True) == "finished" and job.return_value() == 1
    assert wecom().contact_way.get(ch.config_id)["user"] == ["wangfang"]


def test_auto_accept_only_within_opening_hours(live_app, sim):
    hours = {d: [["11:00", "14:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    store = store_with_staff([("zhangwei", False, None)], opening_hours=hours)
    closed, open_ = cst(2025, 6, 2, 9), cst(2025, 6, 2, 12)
    ch = new_channel(store, auto_accept_hours_only=True, now=closed)
    always = new_channel(store, name="桌贴", now=closed)
    assert wecom().contact_way.get(ch.config_id)["skip_verify"] is False
    with transaction(db.session()):
        assert channels.apply_opening_hours(db.session, wecom(), open_) == 1
    assert wecom().contact_way.get(ch.config_id)["skip_verify"] is True
    assert wecom().contact_way.get(always.config_id)["skip_verify"] is True
    with transaction(db.session()):
        assert channels.apply_opening_hours(db.session, wecom(), open_) == 0
    with transaction(db.session()):
        assert channels.apply_opening_hours(db.session, wecom(), cst(2025, 6, 2, 15)) == 1
    assert wecom().contact_way.get(ch.config_id)["skip_verify"] is False


# --- the portal, end to end over the simulator --------------------------------------------


def test_create_in_portal_then_download_posters(live_app, sim):
    import io

    from PIL import Image


    client = live_app.test_client()
    store = store_with_staff([("zhangwei", False, None)])
    with transaction(db.session()):
        owner = make_owner(db.session, store)
    sign_in(client, owner)
    url = f"/portal/stores/{store.id}/channels"
    resp = client.post(url, data={"csrf_token": csrf_token(client, url), "name": "门口海报", "kind": "door"})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    ch = db.session.scalar(select(Channel).where(Channel.store_id == store.id))
    page = client.get(url).get_data(as_text=True)
    assert "门口海报" in page and f"/channels/{ch.id}/poster.png" in page

    png = client.get(f"{url}/{ch.id}/poster.png?size=a5")
    assert png.status_code == 200 and png.mimetype == "image/png"
    img = Image.open(io.BytesIO(png.data))
    assert img.size == (1748, 2480)
    assert decode_qr(img) == [f"{sim.url}/phone/scan/{ch.config_id}"]

    tent = Image.open(io.BytesIO(client.get(f"{url}/{ch.id}/poster.png?size=tent").data))
    assert tent.size == posters.size_px("tent")
    assert decode_qr(tent) == [f"{sim.url}/phone/scan/{ch.config_id}"]

    pdf = client.get(f"{url}/{ch.id}/poster.pdf?size=a5")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")
    assert client.get(f"{url}/{ch.id}/poster.png?size=a0").status_code == 404
    assert client.get(f"{url}/{ch.id}/poster.gif").status_code == 404


def test_portal_shows_wecom_errors_as_messages_not_500(live_app, sim):
    client = live_app.test_client()
    store = store_with_staff([("zhangwei", False, None)])
    with transaction(db.session()):
        owner = make_owner(db.session, store)
    sign_in(client, owner)
    url = f"/portal/stores/{store.id}/channels"
    token = csrf_token(client, url)
    sim.admin("POST", "faults", {"errcode": 60020, "path": "externalcontact/add_contact_way", "times": 1})
    resp = client.post(url, data={"csrf_token": token, "name": "门口海报", "kind": "door"})
    assert resp.status_code == 502
    body = resp.get_data(as_text=True)
    assert "60020" in body and "可信" in body
    assert db.session.scalar(select(func_count(Channel))) == 0


def test_portal_names_the_member_who_cannot_hold_customers(live_app, sim):
    client = live_app.test_client()
    store = store_with_staff([("zhaolei", False, None)])
    with transaction(db.session()):
        owner = make_owner(db.session, store)
    sign_in(client, owner)
    url = f"/portal/stores/{store.id}/channels"
    resp = client.post(url, data={"csrf_token": csrf_token(client, url), "name": "桌贴", "kind": "table"})
    assert resp.status_code == 400
    assert "赵磊" in resp.get_data(as_text=True)
    assert db.session.scalar(select(func_count(Channel))) == 0


def test_channel_kind_labels_follow_the_reader_language(app):
    door = channels.Channel(kind="door")
    with app.test_request_context("/"):
        assert door.kind_label == "门口海报"
    with app.test_request_context("/?lang=en"):
        refresh()  # Flask-Babel caches the locale on the (shared) app context
        assert door.kind_label == "Door poster"
