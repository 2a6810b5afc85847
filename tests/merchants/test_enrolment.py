"""Enrolment: validation rules, sign up → enrol → review → status, serving staff (over real
HTTP against the WeCom simulator) and cashiers."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from accounts.models import Role, User
from core.db import db
from core.localtime import LOCAL_TZ
from core.txn import transaction
from core.signals import store_staff_changed
from merchants import services
from merchants.forms import CUISINE_LABELS
from merchants.models import CUISINES, Member, Merchant, ReviewStatus, Store
from merchants.services import ServiceError
from tests.support.merchants import (  # noqa: F401  (fixtures)
    PASSWORD,
    FreshContextClient,
    client,
    credit_code,
    csrf_token,
    fast_hashing,
    login,
    make_admin,
    make_manager,
    make_merchant,
    make_regions,
    post_form,
)
from tests.support.servers import running_app, serve_simulator

# Real companies' published codes, and codes computed here with the GB 32100-2015 check.
VALID_CODES = [
    "91440300708461136T",  # 深圳市腾讯计算机系统有限公司
    "91330100716105852F",  # 阿里巴巴（中国）有限公司
    "91110000802100433B",
    "91310104MA1FR0001F",
    "92440106MA5CX1234B",  # 个体工商户
    "52310000MJ4895421K",  # 民办非企业单位
]


# --------------------------------------------------------------------------- rules


@pytest.mark.parametrize("code", VALID_CODES)
def test_valid_credit_codes(code):
    assert services.validate_credit_code(code) == code
    assert services.validate_credit_code(" " + code.lower() + " ") == code


@pytest.mark.parametrize(
    "code",
    [
        "91440300708461136A",  # wrong check character
        "91440300708461137T",  # one digit changed
        "9144030070846113T",  # 17 characters
        "91440300708461136TT",
        "9144030070846I136T",  # I is not in the alphabet
        "914403OO708461136T",  # letters where the region code has digits
        "",
    ],
)
def test_invalid_credit_codes(code):
    with pytest.raises(ServiceError) as err:
        services.validate_credit_code(code)
    assert err.value.field == "credit_code"


def test_check_character_matches_every_position():
    base = "91310104MA1FR0001"
    check = services.credit_code_check_char(base)
    for i, ch in enumerate(base):
        alt = services.CREDIT_CODE_CHARS[(services.CREDIT_CODE_CHARS.index(ch) + 1) % 31]
        changed = base[:i] + alt + base[i + 1 :]
        assert services.credit_code_check_char(changed) != check


@pytest.mark.parametrize("mobile,expected", [("13800138000", "13800138000"), ("199 1234 5678", "19912345678"),
                                             ("+86 15012345678", "15012345678"), ("8617712345678", "17712345678")])
def test_valid_mobiles(mobile, expected):
    assert services.validate_mobile(mobile) == expected


@pytest.mark.parametrize("mobile", ["12800138000", "1380013800", "138001380001", "23800138000", "010-12345678", "abc"])
def test_invalid_mobiles(mobile):
    with pytest.raises(ServiceError):
        services.validate_mobile(mobile)


@pytest.mark.parametrize("text,fen", [("58", 5800), ("58.5", 5850), ("0.01", 1), ("¥120.00", 12000), ("0", 0)])
def test_yuan_to_fen(text, fen):
    assert services.yuan_to_fen(text) == fen
    assert isinstance(services.yuan_to_fen(text), int)


@pytest.mark.parametrize("text", ["-1", "1.234", "abc", "NaN", "Infinity", "", "1e9"])
def test_bad_yuan(text):
    with pytest.raises(ServiceError):
        services.yuan_to_fen(text)


def test_opening_hours():
    hours = services.build_opening_hours(
        [(["mon", "tue"], "17:00-21:30，11:00-14:00"), (["sat"], "10:00-24:00")]
    )
    assert hours == {
        "mon": [["11:00", "14:00"], ["17:00", "21:30"]],
        "tue": [["11:00", "14:00"], ["17:00", "21:30"]],
        "sat": [["10:00", "24:00"]],
    }
    assert services.build_opening_hours([([], ""), ([], "")]) == {}
    cst = LOCAL_TZ
    assert services.is_open_at(hours, datetime(2024, 6, 3, 12, 0, tzinfo=cst))  # a Monday lunch
    assert not services.is_open_at(hours, datetime(2024, 6, 3, 15, 0, tzinfo=cst))
    assert not services.is_open_at(hours, datetime(2024, 6, 5, 12, 0, tzinfo=cst))  # Wednesday
    assert services.is_open_at(hours, datetime(2024, 6, 8, 15, 59, tzinfo=timezone.utc))  # Sat 23:59 CST
    assert services.is_open_at({}, datetime(2024, 6, 5, 3, 0, tzinfo=cst))


@pytest.mark.parametrize(
    "groups",
    [
        [(["mon"], "14:00-11:00")],
        [(["mon"], "11:00-14:00,13:00-15:00")],
        [(["mon"], "25:00-26:00")],
        [(["mon"], "lunch")],
        [([], "11:00-14:00")],
        [(["mon"], "")],
        [(["mon"], "11:00-14:00"), (["mon"], "17:00-20:00")],
    ],
)
def test_bad_opening_hours(groups):
    with pytest.raises(ServiceError):
        services.build_opening_hours(groups)


def test_cuisine_taxonomy():
    assert len(CUISINES) >= 12
    assert {code: str(label) for code, label in CUISINE_LABELS.items()} == CUISINES


# --------------------------------------------------------------------------- the journey


def enrol_form(circle: int, **overrides) -> dict:
    data = {
        "name": "老王餐饮有限公司",
        "credit_code": credit_code(),
        "contact_mobile": "138 0013 8000",
        "store_name": "老王川菜馆",
        "address": "漕溪北路 1 号",
        "circle_id": str(circle),
        "cuisines": ["sichuan", "hotpot"],
        "avg_spend": "68.5",
        "hours_days_1": ["mon", "tue", "wed", "thu", "fri"],
        "hours_1": "11:00-14:00,17:00-21:30",
        "hours_days_2": ["sat", "sun"],
        "hours_2": "10:00-22:00",
    }
    data.update(overrides)
    return data


def test_signup_enrol_approve_status(app, client):
    ids = make_regions()
    make_manager("mgr", [ids["徐汇区"]])

    post_form(client, "/auth/signup", {"username": "laowang", "password": PASSWORD, "confirm": PASSWORD})
    resp = post_form(client, "/portal/enrol", enrol_form(ids["徐家汇"]))
    assert resp.status_code == 302, resp.get_data(as_text=True)
    store = db.session.scalar(select(Store))
    assert store.status == ReviewStatus.pending
    assert store.avg_spend_fen == 6850 and store.cuisines == ["sichuan", "hotpot"]
    assert store.opening_hours["mon"] == [["11:00", "14:00"], ["17:00", "21:30"]]
    assert store.opening_hours["sun"] == [["10:00", "22:00"]]
    assert store.merchant.contact_mobile == "13800138000"
    assert "待审核" in client.get(f"/portal/stores/{store.id}").get_data(as_text=True)
    assert client.get("/portal/enrol").status_code == 302  # only once

    manager = app.test_client()
    login(manager, "mgr")
    queue = manager.get("/portal/review").get_data(as_text=True)
    assert "老王川菜馆" in queue
    token = csrf_token(manager, "/portal/review")
    prefix = f"s{store.id}-"
    resp = manager.post(f"/portal/review/{store.id}", data={"csrf_token": token, prefix + "decision": "approve"})
    assert resp.status_code == 302
    db.session.expire_all()
    store = db.session.get(Store, store.id)
    assert store.status == ReviewStatus.approved and store.reviewed_at is not None
    assert services.store_is_approved(store)
    assert "已通过" in client.get(f"/portal/stores/{store.id}").get_data(as_text=True)
    assert "没有待审核的门店" in manager.get("/portal/review").get_data(as_text=True)


def test_reject_needs_a_reason_and_the_owner_reads_it(app, client):
    ids = make_regions()
    make_admin("root")
    owner_id, _, store_id = make_merchant("laowang", ids["田林"])
    admin = app.test_client()
    login(admin, "root")
    token = csrf_token(admin, "/portal/review")
    resp = admin.post(f"/portal/review/{store_id}", data={"csrf_token": token, f"s{store_id}-decision": "reject"})
    assert resp.status_code == 400
    assert "驳回时请填写原因" in resp.get_data(as_text=True)
    resp = admin.post(
        f"/portal/review/{store_id}",
        data={"csrf_token": token, f"s{store_id}-decision": "reject", f"s{store_id}-reason": "营业执照照片不清晰"},
    )
    assert resp.status_code == 302
    login(client, "laowang")
    page = client.get("/portal/").get_data(as_text=True)
    assert "已驳回" in page and "营业执照照片不清晰" in page

    # editing a rejected store sends it back to the queue
    resp = post_form(client, f"/portal/stores/{store_id}/edit", enrol_form(ids["田林"], store_name="老王川菜馆（新）"))
    assert resp.status_code == 302
    db.session.expire_all()
    store = db.session.get(Store, store_id)
    assert store.status == ReviewStatus.pending and store.name == "老王川菜馆（新）"


def test_managers_review_only_their_regions(app, client):
    ids = make_regions()
    make_manager("mgr_ja", [ids["静安区"]])
    _, _, xh_store = make_merchant("xh_owner", ids["徐家汇"], name="徐汇店家")
    _, _, ja_store = make_merchant("ja_owner", ids["南京西路"], name="静安店家")
    login(client, "mgr_ja")
    page = client.get("/portal/review").get_data(as_text=True)
    assert "静安店家" in page and "徐汇店家" not in page
    token = csrf_token(client, "/portal/review")
    resp = client.post(f"/portal/review/{xh_store}", data={"csrf_token": token, f"s{xh_store}-decision": "approve"})
    assert resp.status_code == 404
    assert client.get(f"/portal/stores/{xh_store}").status_code == 404
    assert client.get(f"/portal/stores/{ja_store}").status_code == 200
    assert db.session.get(Store, xh_store).status == ReviewStatus.pending


def test_enrol_form_errors_render_not_500(app, client):
    ids = make_regions()
    post_form(client, "/auth/signup", {"username": "laowang", "password": PASSWORD, "confirm": PASSWORD})
    cases = [
        ({"credit_code": "91440300708461136A"}, "校验位不正确"),
        ({"contact_mobile": "12345"}, "11 位中国大陆手机号"),
        ({"avg_spend": "abc"}, "请输入金额"),
        ({"avg_spend": "-5"}, "不能为负数"),
        ({"hours_1": "14:00-11:00"}, "开始须早于结束"),
        ({"cuisines": []}, "请至少选择一个菜系"),
        ({"cuisines": ["martian"]}, ""),
        ({"circle_id": "0"}, "请选择门店所在商圈"),
        ({"circle_id": str(ids["徐汇区"])}, ""),  # a district is not a circle
        ({"name": ""}, ""),
    ]
    for overrides, message in cases:
        resp = post_form(client, "/portal/enrol", enrol_form(ids["徐家汇"], **overrides))
        assert resp.status_code == 400, overrides
        assert message in resp.get_data(as_text=True), overrides
    assert db.session.scalar(select(Merchant)) is None


def test_duplicate_credit_code_is_a_form_error(app, client):
    ids = make_regions()
    make_merchant("first", ids["徐家汇"])
    code = db.session.scalar(select(Merchant.credit_code))
    post_form(client, "/auth/signup", {"username": "second", "password": PASSWORD, "confirm": PASSWORD})
    resp = post_form(client, "/portal/enrol", enrol_form(ids["徐家汇"], credit_code=code))
    assert resp.status_code == 400 and "已入驻" in resp.get_data(as_text=True)


def test_owner_adds_more_stores(app, client):
    ids = make_regions()
    _, merchant_id, _ = make_merchant("laowang", ids["徐家汇"])
    login(client, "laowang")
    form = enrol_form(ids["南京西路"], store_name="老王川菜馆静安店")
    resp = post_form(client, "/portal/stores/new", form)
    assert resp.status_code == 302
    names = db.session.scalars(select(Store.name).where(Store.merchant_id == merchant_id)).all()
    assert "老王川菜馆静安店" in names and len(names) == 2
    assert "老王川菜馆静安店" in client.get("/portal/").get_data(as_text=True)


def test_english_portal(app, client):
    make_regions()
    post_form(client, "/auth/signup", {"username": "laowang", "password": PASSWORD, "confirm": PASSWORD})
    page = client.get("/portal/enrol?lang=en").get_data(as_text=True)
    assert "Unified social credit code" in page and "Sichuan" in page


# --------------------------------------------------------------------------- cashiers


def test_owner_adds_a_cashier_who_only_reaches_the_desk(app, client):
    ids = make_regions()
    _, merchant_id, store_id = make_merchant("laowang", ids["徐家汇"])
    login(client, "laowang")
    resp = post_form(client, f"/portal/stores/{store_id}/cashiers",
                     {"username": "till1", "display_name": "小李", "password": "cashier-pass"})
    assert resp.status_code == 302
    cashier = db.session.scalar(select(User).where(User.username == "till1"))
    assert (cashier.role, cashier.merchant_id, cashier.store_id) == (Role.cashier, merchant_id, store_id)

    resp = post_form(client, f"/portal/stores/{store_id}/cashiers", {"username": "till1", "password": "cashier-pass"})
    assert resp.status_code == 400 and "用户名已被占用" in resp.get_data(as_text=True)

    till = app.test_client()
    login(till, "till1", "cashier-pass")
    for url in ("/portal/", f"/portal/stores/{store_id}", f"/portal/stores/{store_id}/staff",
                f"/portal/stores/{store_id}/cashiers", "/portal/review", "/admin/regions"):
        assert till.get(url).status_code == 403, url

    token = csrf_token(client, f"/portal/stores/{store_id}/cashiers")
    resp = client.post(f"/portal/stores/{store_id}/cashiers/{cashier.id}/active", data={"csrf_token": token, "active": "0"})
    assert resp.status_code == 302
    db.session.expire_all()
    assert db.session.get(User, cashier.id).active is False


# --------------------------------------------------------------------------- serving staff


def test_staff_page_explains_an_unreachable_wecom(database_urls, redis_url, tmp_path):
    from tests.support.servers import make_test_app, truncate_all

    app = make_test_app(
        tmp_path / "instance", database_urls["sqlite"], redis_url,
        WECOM_API_BASE="http://127.0.0.1:9/cgi-bin/", WECOM_MAX_RETRIES=0, WECOM_HTTP_TIMEOUT=2.0,
    )
    app.test_client_class = FreshContextClient
    with app.app_context():
        try:
            ids = make_regions()
            _, _, store_id = make_merchant("laowang", ids["徐家汇"])
            client = app.test_client()
            login(client, "laowang")
            resp = client.get(f"/portal/stores/{store_id}/staff")
            assert resp.status_code == 200
            page = resp.get_data(as_text=True)
            assert "暂时无法从企业微信读取成员" in page and "稍后再试" in page
            resp = client.post(f"/portal/stores/{store_id}/staff",
                               data={"csrf_token": csrf_token(client, f"/portal/stores/{store_id}"), "member": "zhangwei"})
            assert resp.status_code == 400 and "暂不能保存" in resp.get_data(as_text=True)
        finally:
            db.session.remove()
            truncate_all(database_urls["sqlite"])


@pytest.fixture(scope="module")
def simulator(tmp_path_factory):
    server = serve_simulator(tmp_path_factory.mktemp("staff-sim"))
    yield server.url
    server.stop()


@pytest.fixture
def live_client(backend, database_urls, redis_url, tmp_path, simulator):
    """A portal client on an app whose WeCom client talks to the simulator over HTTP."""
    with running_app(tmp_path / "instance", database_urls[backend], redis_url,
                     WECOM_API_BASE=f"{simulator}/cgi-bin/") as app:
        app.test_client_class = FreshContextClient
        yield app.test_client()


def test_owner_picks_serving_members_from_wecom(live_client):
    client = live_client
    ids = make_regions()
    _, merchant_id, store_id = make_merchant("laowang", ids["徐家汇"])
    login(client, "laowang")
    url = f"/portal/stores/{store_id}/staff"
    assert "张伟" not in client.get(url).get_data(as_text=True)  # synced, but nobody granted yet
    with transaction(db.session):  # the operator grants laowang's staff (everyone but wangfang)
        for m in db.session.scalars(select(Member).where(Member.userid != "wangfang")):
            services.grant_member(db.session, merchant_id, m.id)
    page = client.get(url).get_data(as_text=True)
    assert "wangfang" not in page  # a member not granted to this merchant is not offered
    assert "张伟" in page and "赵磊" in page and "未开通客户联系" in page
    members = {m.userid: m for m in db.session.scalars(select(Member))}
    assert members["zhangwei"].can_hold_customers and not members["zhaolei"].can_hold_customers

    announced = []
    receiver = lambda sender, store_id: announced.append(store_id)  # noqa: E731
    store_staff_changed.connect(receiver)
    try:
        resp = post_form(client, url, {"member": ["zhangwei", "lina"], "backup-lina": "1", "cap-zhangwei": "30"})
        assert resp.status_code == 302
    finally:
        store_staff_changed.disconnect(receiver)
    assert announced == [store_id]
    store = db.session.get(Store, store_id)
    staff = {sm.member.userid: (sm.backup, sm.daily_add_cap) for sm in store.staff}
    assert staff == {"zhangwei": (False, 30), "lina": (True, None)}

    resp = post_form(client, url, {"member": ["zhaolei"]})  # cannot hold customers
    assert resp.status_code == 400 and "未开通“客户联系”功能" in resp.get_data(as_text=True)
    resp = post_form(client, url, {"member": ["lina"], "backup-lina": "1"})
    assert resp.status_code == 400 and "至少需要一位非备用成员" in resp.get_data(as_text=True)
    resp = post_form(client, url, {"member": ["wangfang"]})  # in the corp, not granted here
    assert resp.status_code == 400 and "未授权给本商户" in resp.get_data(as_text=True)
    resp = post_form(client, url, {"member": ["ghost"]})
    assert resp.status_code == 400 and "不在企业微信通讯录中" in resp.get_data(as_text=True)
    resp = post_form(client, url, {"member": ["zhangwei"], "cap-zhangwei": "lots"})
    assert resp.status_code == 400
    db.session.expire_all()
    assert len(db.session.get(Store, store_id).staff) == 2  # nothing changed by the refusals
