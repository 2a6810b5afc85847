"""Diner pages through the Flask test client: personal links, the OAuth hand-off, my coupons,
a coupon's page and status, the taste survey, "quiet me" and a store's page."""
from __future__ import annotations

import re
import time
from datetime import date, datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select

from core.db import db
from coupons import services as coupon_svc
from coupons.models import Coupon, CouponKind, TemplateStatus
from coupons.views import desk_url, qr_data_uri
from merchants.models import ReviewStatus, Store
from residents import identity, preferences
from residents.models import Resident, SignalSource, TasteSignal
from residents.taste import record_signal
from residents.tokens import SALT, coupon_url, make_link_token, make_sign_in_token, make_token
from tests.support.coupons import make_shop, make_template, tx
from tests.support.merchants import FreshContextClient
from tests.support.residents import make_circle, make_resident

TOKEN_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@pytest.fixture
def client(app):
    app.test_client_class = FreshContextClient
    return app.test_client()


@pytest.fixture
def shop(app):
    with tx() as session:
        return make_shop(session, make_circle(session), name="川味小馆")


@pytest.fixture
def template(shop):
    return make_template(shop, name="新客满100减20", valid_from=None, valid_until=None, valid_days=30,
                         total_stock=None, per_diner_limit=5)


def new_resident(**fields) -> Resident:
    with tx() as session:
        return make_resident(session, **fields)


def issue(template_id: int, resident: Resident, now: datetime | None = None) -> Coupon:
    with tx() as session:
        return coupon_svc.issue_coupon(session, template_id, f"r:{resident.id}", resident_id=resident.id, now=now)


def sign_in(client, resident: Resident, path: str = "/m/") -> None:
    """Open a single-use sign-in link (a welcome card's coupon link is no session any more)."""
    resp = client.get(f"{path}?t={make_token(resident.id)}")
    assert resp.status_code == 302 and resp.headers["Location"] == path


def resident_in_session(client) -> int | None:
    with client.session_transaction() as sess:
        return sess.get(identity.SESSION_KEY)


def post_form(client, url: str, data: dict):
    page = client.get(url)
    token = TOKEN_RE.search(page.get_data(as_text=True)).group(1)
    return client.post(url, data={**data, "csrf_token": token})


def is_wechat_authorize(location: str, app) -> dict:
    """The redirect goes to WeChat's authorize endpoint; returns its query."""
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == app.config["WECHAT_OA_AUTHORIZE_URL"]
    assert parts.fragment == "wechat_redirect"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["appid"] == app.config["WECHAT_OA_APPID"]
    assert query["scope"] == "snsapi_base" and query["response_type"] == "code"
    assert query["redirect_uri"] == app.config["PUBLIC_BASE_URL"] + "/m/oauth/callback"
    assert re.fullmatch(r"[A-Za-z0-9]{1,128}", query["state"])
    return query


# ---------------------------------------------------------------- identity


def test_personal_link_opens_its_coupon_and_drops_the_token(app, client, template):
    diner = new_resident()
    coupon = issue(template.id, diner)
    url = f"/m/c/{coupon.short_code}"
    resp = client.get(f"{url}?t={make_link_token(diner.id, coupon.short_code)}&lang=zh_CN")
    assert resp.status_code == 302
    assert resp.headers["Location"] == f"{url}?lang=zh_CN"  # other arguments survive, the token doesn't
    # behaviour change (issue item 7): the link opens its coupon, it signs nobody in
    assert resident_in_session(client) is None
    page = client.get(url)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert coupon_svc.format_code(coupon.short_code) in html
    assert qr_data_uri(desk_url(coupon.short_code)) in html  # the QR encodes the desk URL
    assert 'data-status="valid"' in html and "未使用" in html
    assert "川味小馆" in html and "幸福路 1 号" in html  # store name and address
    assert "满100减20" in html
    assert client.get(f"{url}/status").json["status"] == "valid"  # the page's poll works too


def test_a_coupon_link_opens_that_coupon_only(app, client, template):
    """Issue item 7: a forwarded welcome card shows the coupon, not the diner's other pages."""
    diner = new_resident()
    coupon, other = issue(template.id, diner), issue(template.id, diner)
    with app.test_request_context():
        link = coupon_url(coupon.short_code, diner.id)
    parts = urlsplit(link)
    resp = client.get(f"{parts.path}?{parts.query}")  # the forwardee taps the card
    assert resp.status_code == 302 and resp.headers["Location"] == parts.path
    assert client.get(parts.path).status_code == 200
    assert resident_in_session(client) is None
    for path in ("/m/", "/m/taste", "/m/quiet", "/m/?tab=used", f"/m/c/{other.short_code}"):
        page = client.get(path)  # everything else needs WeChat OAuth
        assert page.status_code == 302, path
        is_wechat_authorize(page.headers["Location"], app)
    assert client.get(f"/m/c/{other.short_code}/status").status_code == 401
    coupon_page = client.get(parts.path).get_data(as_text=True)
    assert 'data-testid="tabbar"' not in coupon_page and 'data-testid="all-my-coupons"' in coupon_page
    # the link opened anywhere but its coupon's page does nothing
    token = parse_qs(parts.query)["t"][0]
    assert client.get(f"/m/?t={token}").headers["Location"] == "/m/"
    assert client.get(f"/m/c/{other.short_code}?t={token}").status_code == 302
    assert client.get(f"/m/c/{other.short_code}").status_code == 302  # still off to WeChat
    assert resident_in_session(client) is None


def test_a_link_made_before_links_named_their_coupon_still_opens_it(app, client, template):
    diner, someone = new_resident(), new_resident()
    mine, theirs = issue(template.id, diner), issue(template.id, someone)
    legacy = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=SALT).dumps({"r": diner.id})
    client.get(f"/m/c/{mine.short_code}?t={legacy}")
    assert client.get(f"/m/c/{mine.short_code}").status_code == 200
    assert resident_in_session(client) is None and client.get("/m/").status_code == 302
    client.get(f"/m/c/{theirs.short_code}?t={legacy}")  # not the diner's coupon: nothing
    assert client.get(f"/m/c/{theirs.short_code}").status_code == 302


def test_sign_in_tokens_work_once(app, client, template):
    """The single-use exchange: the only way into /m/ besides WeChat OAuth."""
    diner = new_resident()
    token = make_sign_in_token(diner.id)
    assert client.get(f"/m/?t={token}").status_code == 302
    assert resident_in_session(client) == diner.id
    assert client.get("/m/").status_code == 200

    thief = app.test_client()
    assert thief.get(f"/m/?t={token}").headers["Location"] == "/m/"  # spent
    assert thief.get("/m/").status_code == 302
    with thief.session_transaction() as sess:
        assert identity.SESSION_KEY not in sess

    class TenMinutesOld(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 11 * 60

    stale = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=SALT, signer=TenMinutesOld).dumps(
        {"r": diner.id, "n": "feedc0de"})
    fresh = app.test_client()
    fresh.get(f"/m/?t={stale}")
    with fresh.session_transaction() as sess:
        assert identity.SESSION_KEY not in sess
    assert make_token is make_sign_in_token


def test_forwarded_link_does_not_override_the_signed_in_diner(app, client, template):
    me, friend = new_resident(), new_resident()
    gift = issue(template.id, friend)
    mine = issue(template.id, me)
    sign_in(client, me)
    client.get(f"/m/c/{gift.short_code}?t={make_link_token(friend.id, gift.short_code)}")
    assert client.get(f"/m/c/{gift.short_code}").status_code == 200  # the friend's coupon, by its link
    assert resident_in_session(client) == me.id
    listing = client.get("/m/").get_data(as_text=True)
    assert mine.short_code in listing and gift.short_code not in listing


def test_forged_and_expired_tokens_are_rejected(app, client, template):
    diner = new_resident()
    coupon = issue(template.id, diner)
    url = f"/m/c/{coupon.short_code}"
    forged = URLSafeTimedSerializer("not-our-secret", salt=SALT).dumps({"r": diner.id})
    tampered = make_token(diner.id)[:-2] + "xx"

    class MonthOld(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 31 * 86400

    expired = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=SALT, signer=MonthOld).dumps({"r": diner.id})
    for bad in (forged, tampered, expired, "garbage"):
        resp = client.get(f"{url}?t={bad}")
        assert resp.status_code == 302 and resp.headers["Location"] == url
        assert resident_in_session(client) is None
        page = client.get(url)  # no diner: off to WeChat, nothing of the coupon shown
        assert page.status_code == 302
        is_wechat_authorize(page.headers["Location"], app)


def test_a_valid_token_for_an_erased_resident_does_not_sign_in(app, client):
    diner = new_resident()
    with tx() as session:
        session.get(Resident, diner.id).erased_at = datetime.now(timezone.utc)
    client.get(f"/m/?t={make_token(diner.id)}")
    assert resident_in_session(client) is None


def test_pages_without_a_diner_go_to_wechat_with_a_signed_return_path(app, client):
    for path in ("/m/", "/m/taste", "/m/quiet", "/m/c/ABCDE12345", "/m/?tab=used"):
        resp = client.get(path)
        assert resp.status_code == 302, path
        query = is_wechat_authorize(resp.headers["Location"], app)
        with client.session_transaction() as sess:
            nonce = sess[identity.NONCE_KEY]
        with app.test_request_context():
            assert identity.read_state(query["state"], nonce) == path
    assert client.get("/m/c/ABCDE12345/status").status_code == 401


def test_oauth_state_cannot_be_forged_replayed_elsewhere_or_aimed_off_site(app):
    with app.test_request_context():
        state = identity.make_state("/m/c/ABC", "nonce1")
        assert identity.read_state(state, "nonce1") == "/m/c/ABC"
        assert identity.read_state(state, "nonce2") is None  # another browser
        assert identity.read_state(state, None) is None
        assert identity.read_state(state[:-1] + ("A" if state[-1] != "A" else "B"), "nonce1") is None
        old = identity.make_state("/m/", "nonce1", now=time.time() - identity.STATE_MAX_AGE - 5)
        assert identity.read_state(old, "nonce1") is None
        for evil in ("https://evil.example/m/", "//evil.example/m/", "/auth/login", "/m/\\evil", ""):
            assert identity.read_state(identity.make_state(evil, "n"), "n") == "/m/"
        long_path = "/m/?tab=used&" + "x=1&" * 60
        assert identity.read_state(identity.make_state(long_path, "n"), "n") == "/m/"
        assert len(identity.make_state("/m/c/" + "A" * 70, "n")) <= 128


def test_callback_with_a_foreign_state_signs_nobody_in(app, client):
    resp = client.get("/m/oauth/callback?code=whatever&state=abc123")
    assert resp.status_code == 400 and 'data-testid="oauth-failed"' in resp.get_data(as_text=True)
    assert resident_in_session(client) is None


def test_without_official_account_settings_unknown_diners_get_the_friendly_page(app, client):
    app.config["WECHAT_OA_APPID"] = ""
    resp = client.get("/m/")
    assert resp.status_code == 200
    assert 'data-testid="unknown-diner"' in resp.get_data(as_text=True)
    assert "扫一扫" in resp.get_data(as_text=True)


# ---------------------------------------------------------------- coupons


def test_another_residents_coupon_is_404(app, client, template):
    me, other = new_resident(), new_resident()
    mine, theirs = issue(template.id, me), issue(template.id, other)
    sign_in(client, me)
    assert client.get(f"/m/c/{theirs.short_code}").status_code == 404
    assert client.get(f"/m/c/{theirs.short_code}/status").status_code == 404
    assert client.get("/m/c/0000000000").status_code == 404
    assert client.get(f"/m/c/{mine.short_code}").status_code == 200
    # typed loosely (lower case, dash): one canonical URL
    loose = f"{mine.short_code[:5]}-{mine.short_code[5:]}".lower()
    resp = client.get(f"/m/c/{loose}")
    assert resp.status_code == 302 and resp.headers["Location"] == f"/m/c/{mine.short_code}"
    listing = client.get("/m/").get_data(as_text=True)
    assert mine.short_code in listing and theirs.short_code not in listing


def test_my_coupons_tabs(app, client, shop, template):
    diner = new_resident()
    valid = issue(template.id, diner)
    used = issue(template.id, diner)
    # issued 40 days ago with 30 days of validity: expired, though its status still says issued
    stale = issue(template.id, diner, now=datetime.now(timezone.utc) - timedelta(days=40))
    with tx() as session:
        coupon_svc.redeem(session, used.short_code, shop.store.id, shop.cashier.id, 15000, "k-tabs",
                          merchant_id=shop.merchant.id, now=_usable_now(template))
    sign_in(client, diner)

    def codes(tab):
        html = client.get(f"/m/?tab={tab}").get_data(as_text=True)
        return set(re.findall(r'data-code="([0-9A-Z]+)"', html)), html

    on_valid, html = codes("valid")
    assert on_valid == {valid.short_code}
    assert 'data-testid="tab-valid"' in html and "未使用 1" in html and "已使用 1" in html and "已过期 1" in html
    assert codes("used")[0] == {used.short_code}
    assert codes("expired")[0] == {stale.short_code}
    assert codes("nonsense")[0] == {valid.short_code}
    stale_page = client.get(f"/m/c/{stale.short_code}").get_data(as_text=True)
    assert "已过期" in stale_page and 'data-testid="coupon-qr"' not in stale_page


def _usable_now(template) -> datetime:
    """Now, unless the template's hours rule it out (they don't: all day, every day)."""
    assert template.hours_start is None and template.weekdays_mask == 127
    return datetime.now(timezone.utc)


def test_coupon_page_shows_used_after_redemption(app, client, shop, template):
    diner = new_resident()
    coupon = issue(template.id, diner)
    sign_in(client, diner)
    status_url = f"/m/c/{coupon.short_code}/status"
    before = client.get(status_url)
    assert before.json["status"] == "valid" and before.headers["Cache-Control"] == "no-store"
    page = client.get(f"/m/c/{coupon.short_code}").get_data(as_text=True)
    assert status_url in page  # the page polls its status
    with tx() as session:
        coupon_svc.redeem(session, coupon.short_code, shop.store.id, shop.cashier.id, 12000, "k-used",
                          merchant_id=shop.merchant.id)
    after = client.get(status_url).json
    assert after["status"] == "used" and after["label"] == "已使用" and after["redeemed_at"]
    page = client.get(f"/m/c/{coupon.short_code}").get_data(as_text=True)
    assert 'data-testid="coupon-used"' in page and "已使用" in page
    assert 'data-testid="coupon-qr"' not in page and status_url not in page  # nothing left to poll
    assert "本单优惠 20 元" in page and shop.store.name in page


def test_coupon_list_does_not_load_per_coupon(app, client, shop, template):
    """Many coupons, a fixed number of queries (no lazy loads per row)."""
    from sqlalchemy import event

    diner = new_resident()
    other = make_template(shop, name="8折", kind=CouponKind.percent_off, value=80, cap_fen=3000,
                          min_spend_fen=0, valid_from=None, valid_until=None, valid_days=10, total_stock=None,
                          per_diner_limit=5)
    for _ in range(4):
        issue(template.id, diner)
        issue(other.id, diner)
    sign_in(client, diner)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        html = client.get("/m/").get_data(as_text=True)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert html.count('data-testid="coupon-item"') == 8
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= 6, selects


# ---------------------------------------------------------------- survey


def test_survey_replaces_answers_and_moves_the_profile(app, client, signal_log):
    diner = new_resident()
    with tx() as session:
        record_signal(session, diner.id, "sichuan", SignalSource.scan, ref="store:1")
    sign_in(client, diner)
    resp = post_form(client, "/m/taste", {"cuisines": ["hotpot", "cantonese"], "spice_level": "3", "budget": "80"})
    assert resp.status_code == 302
    assert signal_log.of("taste_changed", resident_id=diner.id)
    db.session.expire_all()
    survey = set(db.session.scalars(select(TasteSignal.cuisine).where(
        TasteSignal.resident_id == diner.id, TasteSignal.source == SignalSource.survey)))
    assert survey == {"hotpot", "cantonese"}
    resident = db.session.get(Resident, diner.id)
    assert (resident.spice_level, resident.budget_fen) == (3, 8000)
    page = client.get("/m/taste").get_data(as_text=True)
    profile_html = page.split('data-testid="taste-profile"')[1].split("</section>")[0]
    for label in ("火锅", "粤菜", "川菜"):
        assert label in profile_html
    assert "特辣" in profile_html and "80 元" in profile_html
    assert re.search(r'<input checked[^>]*value="hotpot"', page) and re.search(r'<input checked[^>]*value="3"', page)
    assert not re.search(r'<input checked[^>]*value="sichuan"', page)  # scanned, not answered

    # answered again: the old answers go, the scan evidence stays
    signal_log.events.clear()
    post_form(client, "/m/taste", {"cuisines": ["japanese"], "spice_level": "0"})
    db.session.expire_all()
    rows = db.session.execute(select(TasteSignal.cuisine, TasteSignal.source).where(
        TasteSignal.resident_id == diner.id)).all()
    assert set(rows) == {("japanese", SignalSource.survey), ("sichuan", SignalSource.scan)}
    resident = db.session.get(Resident, diner.id)
    assert (resident.spice_level, resident.budget_fen) == (0, None)
    assert len(signal_log.of("taste_changed", resident_id=diner.id)) == 1

    # the same answers again: nothing moved, no signal
    signal_log.events.clear()
    post_form(client, "/m/taste", {"cuisines": ["japanese"], "spice_level": "0"})
    assert signal_log.of("taste_changed") == []


def test_survey_rejects_unknown_cuisines_and_missing_csrf(app, client):
    diner = new_resident()
    sign_in(client, diner)
    bad = post_form(client, "/m/taste", {"cuisines": ["sichuan", "martian"]})
    assert bad.status_code == 400
    no_csrf = client.post("/m/taste", data={"cuisines": ["sichuan"]})
    assert no_csrf.status_code == 400
    db.session.expire_all()
    assert db.session.scalars(select(TasteSignal).where(TasteSignal.resident_id == diner.id)).all() == []


# ---------------------------------------------------------------- quiet me


def test_quiet_me(app, client):
    diner, other = new_resident(), new_resident()
    sign_in(client, diner)
    assert preferences.may_push(db.session, diner.id)

    assert post_form(client, "/m/quiet", {"mode": "off"}).status_code == 302
    db.session.expire_all()
    assert db.session.get(Resident, diner.id).opted_out is True
    assert not preferences.may_push(db.session, diner.id)
    pushable = set(db.session.scalars(select(Resident.id).where(preferences.pushable_clause())))
    assert diner.id not in pushable and other.id in pushable

    assert post_form(client, "/m/quiet", {"mode": "capped", "cap": "4"}).status_code == 302
    db.session.expire_all()
    resident = db.session.get(Resident, diner.id)
    assert (resident.opted_out, resident.monthly_cap) == (False, 4)
    assert preferences.may_push(db.session, diner.id, sent_this_month=3)
    assert not preferences.may_push(db.session, diner.id, sent_this_month=4)
    assert re.search(r'<input checked[^>]*value="capped"', client.get("/m/quiet").get_data(as_text=True))

    assert post_form(client, "/m/quiet", {"mode": "capped"}).status_code == 400  # how many?
    assert post_form(client, "/m/quiet", {"mode": "capped", "cap": "99"}).status_code == 400
    assert post_form(client, "/m/quiet", {"mode": "all"}).status_code == 302
    db.session.expire_all()
    resident = db.session.get(Resident, diner.id)
    assert (resident.opted_out, resident.monthly_cap) == (False, None)
    assert preferences.may_push(db.session, diner.id, sent_this_month=100)
    assert not preferences.may_push(db.session, 10**9)  # nobody


# ---------------------------------------------------------------- store page


def test_store_page(app, client, shop, template):
    make_template(shop, name="草稿券", status=TemplateStatus.draft)
    make_template(shop, name="过期活动", valid_from=date(2020, 1, 1), valid_until=date(2020, 1, 31))
    with tx() as session:
        store = session.get(Store, shop.store.id)
        store.cuisines = ["sichuan", "hotpot"]
        store.opening_hours = {d: [["11:00", "14:00"], ["17:00", "21:30"]] for d in ("mon", "tue", "wed", "thu", "fri")}
        store.avg_spend_fen = 6800
    resp = client.get(f"/m/s/{shop.store.id}")  # anyone may look
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert shop.store.name in html and "幸福路 1 号" in html
    assert "川菜" in html and "火锅" in html and "人均 68 元" in html
    assert "周一至周五" in html and "11:00-14:00 17:00-21:30" in html and "休息" in html
    assert "新客满100减20" in html and "草稿券" not in html and "过期活动" not in html

    diner = new_resident()
    coupon = issue(template.id, diner)
    sign_in(client, diner, f"/m/s/{shop.store.id}")
    assert coupon.short_code in client.get(f"/m/s/{shop.store.id}").get_data(as_text=True)

    with tx() as session:
        session.get(Store, shop.other_store.id).status = ReviewStatus.pending
    assert client.get(f"/m/s/{shop.other_store.id}").status_code == 404
    assert client.get("/m/s/999999").status_code == 404


def test_pages_switch_to_english(app, client, template):
    diner = new_resident()
    sign_in(client, diner)
    html = client.get("/m/?lang=en").get_data(as_text=True)
    assert 'lang="en"' in html
