"""What new users tripped over (issue 10): every form error at once, opening hours past
midnight, long store names on posters, the channels page."""
from __future__ import annotations

from datetime import datetime

import pytest
import qrcode
from PIL import Image, ImageChops
from sqlalchemy import select

from core.db import db
from core.localtime import LOCAL_TZ
from merchants import posters, services
from merchants.models import Channel, Merchant, Store
from merchants.services import ServiceError
from tests.support.merchants import (  # noqa: F401  (fixtures)
    PASSWORD,
    client,
    credit_code,
    fast_hashing,
    login,
    make_merchant,
    make_regions,
    post_form,
)
from tests.support.posters import decode_qr


def enrol_form(circle: int, **overrides) -> dict:
    data = {
        "name": "渝见火锅餐饮有限公司",
        "credit_code": credit_code(),
        "contact_mobile": "13800138000",
        "store_name": "渝见老火锅",
        "address": "宜山路 455 号",
        "circle_id": str(circle),
        "cuisines": ["hotpot"],
        "avg_spend": "120",
        "hours_days_1": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "hours_1": "11:00-02:00",
        "hours_days_2": [],
        "hours_2": "",
    }
    data.update(overrides)
    return data


# --------------------------------------------------------------------------- every error at once


def test_enrolment_shows_every_field_error_on_the_first_submit(app, client):
    ids = make_regions()
    post_form(client, "/auth/signup", {"username": "laowang", "password": PASSWORD, "confirm": PASSWORD})
    bad = enrol_form(
        ids["徐家汇"], credit_code="91440300708461136A", contact_mobile="12345", avg_spend="abc",
        cuisines=[], hours_1="14:00-11:00", hours_days_2=["sat"], hours_2="lunch",
    )
    resp = post_form(client, "/portal/enrol", bad)
    page = resp.get_data(as_text=True)
    assert resp.status_code == 400
    for message in ("校验位不正确", "11 位中国大陆手机号", "请输入金额", "请至少选择一个菜系",
                    "开始须早于结束", "营业时间格式应为"):
        assert message in page, message
    assert 'data-testid="form-errors"' in page and "有 6 处需要修改" in page
    assert db.session.scalar(select(Merchant)) is None


# --------------------------------------------------------------------------- hours past midnight


def test_hours_past_midnight_are_accepted():
    assert services.parse_hour_ranges("11:00-02:00") == [["11:00", "02:00"]]
    assert services.parse_hour_ranges("22:00-00:00") == [["22:00", "24:00"]]
    assert services.parse_hour_ranges("17:00-02:00, 10:30-14:00") == [["10:30", "14:00"], ["17:00", "02:00"]]
    hours = services.build_opening_hours([(["fri"], "11:00-02:00")])
    assert services.is_open(hours, datetime(2024, 6, 8, 1, 30, tzinfo=LOCAL_TZ))  # Saturday 01:30
    assert not services.is_open(hours, datetime(2024, 6, 8, 2, 30, tzinfo=LOCAL_TZ))


@pytest.mark.parametrize(
    "groups",
    [
        [(["mon"], "14:00-11:00")],  # a slip, not a 21-hour day: must close by 06:00
        [(["mon"], "11:00-11:00")],
        [(["mon"], "11:00-02:00,23:00-01:00")],
        [(["mon"], "20:00-03:00"), (["tue"], "01:00-05:00")],  # Monday night runs into Tuesday's
    ],
)
def test_hours_past_midnight_still_refuse_nonsense(groups):
    with pytest.raises(ServiceError):
        services.build_opening_hours(groups)


def test_late_night_store_enrols_and_its_prefilled_hours_save_again(app, client):
    ids = make_regions()
    post_form(client, "/auth/signup", {"username": "yujian", "password": PASSWORD, "confirm": PASSWORD})
    resp = post_form(client, "/portal/enrol", enrol_form(ids["徐家汇"]))
    assert resp.status_code == 302, resp.get_data(as_text=True)
    store = db.session.scalar(select(Store))
    assert store.opening_hours["sun"] == [["11:00", "02:00"]]
    edit = client.get(f"/portal/stores/{store.id}/edit").get_data(as_text=True)
    assert 'value="11:00-02:00"' in edit
    resp = post_form(client, f"/portal/stores/{store.id}/edit", enrol_form(ids["徐家汇"]))
    assert resp.status_code == 302, resp.get_data(as_text=True)


# --------------------------------------------------------------------------- posters


def _off_brand(img: Image.Image, box) -> bool:
    """Whether anything in ``box`` is not the title band's brand colour (text drawn there)."""
    region = img.crop(box).convert("RGB")
    return ImageChops.difference(region, Image.new("RGB", region.size, posters.BRAND)).getbbox() is not None


@pytest.mark.parametrize("size", ["a5", "tent"])
def test_long_store_name_wraps_inside_the_margins(size):
    qr = qrcode.make("http://127.0.0.1:5001/phone/scan/cw").get_image().convert("RGB")
    name = "渝见老火锅（徐家汇港汇恒隆广场美罗城太平洋数码二期旗舰店）"
    img = posters.render_poster(posters.PosterContent(name, ["火锅"], "添加店长企业微信"), qr, size)
    W, _H = img.size
    margin = int(W * 0.06)
    band = int(img.size[1] * 0.2)
    # the band's left and right margins stay clear: no glyph ran off the edge
    assert not _off_brand(img, (0, 0, margin // 2, band))
    assert not _off_brand(img, (W - margin // 2, 0, W, band))
    # and the name took more than one line: ink in the band's lower half too
    assert _off_brand(img, (margin, band // 2, W - margin, band - 4))
    assert decode_qr(img) == ["http://127.0.0.1:5001/phone/scan/cw"]


# --------------------------------------------------------------------------- channels and welcome pages


def _approved_store_with_channel(qr: str = "http://127.0.0.1:5001/qr/" + "a" * 32 + ".png") -> int:
    from core.txn import transaction
    from merchants.models import Channel, ReviewStatus

    ids = make_regions()
    _, _, store_id = make_merchant("yujian", ids["徐家汇"], name="渝见火锅")
    with transaction(db.session):
        store = db.session.get(Store, store_id)
        store.status = ReviewStatus.approved
        store.welcome_text = "渝见老火锅欢迎您！"
        db.session.add(Channel(store_id=store_id, name="门口海报", kind="door", config_id="a" * 32,
                               qr_code=qr, state="s1-c1"))
    db.session.remove()
    return store_id


def test_channels_page_is_styled_like_the_portal_with_a_qr_preview(app, client):
    store_id = _approved_store_with_channel()
    login(client, "yujian")
    resp = client.get(f"/portal/stores/{store_id}/channels")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert 'class="table channels"' in page and 'data-label="渠道"' in page  # the portal's table, phone-friendly
    assert f'class="qr-preview" src="/portal/stores/{store_id}/channels/' in page  # same origin (CSP)
    assert 'class="field' in page and 'class="primary"' in page  # the portal's form fields and button
    assert f'href="/portal/stores/{store_id}"' in page  # back to the store


def test_welcome_page_is_styled_like_the_portal_with_a_preview(app, client):
    store_id = _approved_store_with_channel()
    login(client, "yujian")
    page = client.get(f"/portal/stores/{store_id}/welcome").get_data(as_text=True)
    assert 'class="card"' in page and 'class="field' in page and 'class="primary"' in page
    assert 'data-testid="welcome-preview"' in page and "渝见老火锅欢迎您！" in page
    assert f'class="qr-preview" src="/portal/stores/{store_id}/channels/' in page


def test_store_page_marks_hours_that_run_past_midnight(app, client):
    from core.txn import transaction

    ids = make_regions()
    _, _, store_id = make_merchant("yujian", ids["徐家汇"], name="渝见火锅")
    with transaction(db.session):
        db.session.get(Store, store_id).opening_hours = {"fri": [["11:00", "02:00"]]}
    login(client, "yujian")
    page = client.get(f"/portal/stores/{store_id}").get_data(as_text=True)
    assert "11:00–次日02:00" in page


def test_qr_preview_is_served_from_our_origin(app, client):
    import io

    from tests.support.servers import LiveServer

    buf = io.BytesIO()
    qrcode.make("http://127.0.0.1:5001/phone/scan/cw").get_image().convert("RGB").save(buf, "PNG")

    def qr_host(environ, start_response):
        start_response("200 OK", [("Content-Type", "image/png")])
        return [buf.getvalue()]

    server = LiveServer(qr_host)
    try:
        store_id = _approved_store_with_channel(qr=f"{server.url}/qr.png")
        login(client, "yujian")
        channel_id = db.session.scalar(select(Channel.id).where(Channel.store_id == store_id))
        resp = client.get(f"/portal/stores/{store_id}/channels/{channel_id}/qr.png")
        assert resp.status_code == 200 and resp.mimetype == "image/png"
        assert decode_qr(Image.open(io.BytesIO(resp.data))) == ["http://127.0.0.1:5001/phone/scan/cw"]
        assert client.get(f"/portal/stores/{store_id}/channels/{channel_id + 99}/qr.png").status_code == 404
    finally:
        server.stop()
