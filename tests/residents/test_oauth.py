"""WeChat web OAuth: the client (wecom/oauth.py) against the simulator's stand-in for
open.weixin.qq.com / api.weixin.qq.com, and the app's sign-in through it over real HTTP
(the live stack: app + simulator on loopback ports)."""
from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from core.db import db
from core.txn import transaction
from coupons.services import issue_coupon
from residents.tokens import coupon_url
from tests.support.coupons import make_shop, make_template
from tests.support.residents import make_circle, make_resident
from wecom.defaults import DEMO_OA_APPID, DEMO_OA_SECRET
from wecom.oauth import CODE_USED, INVALID_APPID, INVALID_CODE, INVALID_SECRET, WeChatOAuth, WeChatOAuthError

pytestmark = pytest.mark.slow

CALLBACK = "http://app.example/m/oauth/callback?keep=1"


def sim_admin(stack, method: str, path: str, json=None) -> dict:
    resp = httpx.request(method, f"{stack.sim_url}/sim/admin/{path}", json=json, timeout=10)
    resp.raise_for_status()
    return resp.json()


def unionid_of(stack, wechat_user: str) -> str:
    users = sim_admin(stack, "GET", "wechat_users")["wechat_users"]
    return next(u["unionid"] for u in users if u["id"] == wechat_user)


@pytest.fixture
def oauth(stack):
    sim_admin(stack, "DELETE", "faults")
    client = WeChatOAuth(
        DEMO_OA_APPID, DEMO_OA_SECRET, api_base=f"{stack.sim_url}/",
        authorize_url=f"{stack.sim_url}/connect/oauth2/authorize", sleep=lambda s: None,
    )
    yield client
    client.close()
    sim_admin(stack, "DELETE", "faults")


def code_for(oauth: WeChatOAuth, wechat_user: str, state: str = "s1") -> str:
    """Play the diner's WeChat browser: authorize as ``wechat_user``, read the code off the redirect."""
    with httpx.Client(cookies={"sim_wechat_user": wechat_user}, timeout=10) as browser:
        resp = browser.get(oauth.authorize_url(CALLBACK, state=state))
    assert resp.status_code == 302, resp.text[:300]
    location = urlsplit(resp.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK.split("?")[0]
    query = parse_qs(location.query)
    assert query["keep"] == ["1"] and query["state"] == [state]
    return query["code"][0]


# ---------------------------------------------------------------- the client and the simulator


def test_code_exchange_gives_the_unionid_wecom_reports(stack, oauth):
    from core.wecom import get_wecom

    wecom = get_wecom()
    way = wecom.contact_way.add(type=1, scene=2, user=["zhangwei"], state="oauth-test")
    external_userid = sim_admin(stack, "POST", "scan", {"wechat_user": "beibei", "config_id": way["config_id"]})[
        "external_userid"]
    reported = wecom.customers.get(external_userid)["external_contact"]["unionid"]

    who = oauth.exchange_code(code_for(oauth, "beibei"))
    assert who.unionid == reported == unionid_of(stack, "beibei")
    assert who.openid.startswith("o") and who.scope == "snsapi_base"
    assert who.access_token and who.refresh_token and who.expires_in == 7200
    again = oauth.exchange_code(code_for(oauth, "beibei"))
    assert again.openid == who.openid  # stable per official account and user
    assert oauth.exchange_code(code_for(oauth, "huahua")).openid != who.openid


def test_codes_work_once_and_must_be_ours(stack, oauth):
    code = code_for(oauth, "beibei")
    oauth.exchange_code(code)
    with pytest.raises(WeChatOAuthError) as used:
        oauth.exchange_code(code)
    assert used.value.errcode == CODE_USED and used.value.bad_code and "rid:" in used.value.errmsg
    with pytest.raises(WeChatOAuthError) as unknown:
        oauth.exchange_code("not-a-code")
    assert unknown.value.errcode == INVALID_CODE

    wrong_secret = WeChatOAuth(DEMO_OA_APPID, "0" * 32, api_base=f"{stack.sim_url}/")
    wrong_appid = WeChatOAuth("wx0000000000000000", DEMO_OA_SECRET, api_base=f"{stack.sim_url}/")
    with wrong_secret, wrong_appid:
        with pytest.raises(WeChatOAuthError) as bad_secret:
            wrong_secret.exchange_code(code_for(oauth, "beibei"))
        assert bad_secret.value.errcode == INVALID_SECRET and not bad_secret.value.bad_code
        with pytest.raises(WeChatOAuthError) as bad_appid:
            wrong_appid.exchange_code(code_for(oauth, "beibei"))
        assert bad_appid.value.errcode == INVALID_APPID

    params = {"appid": DEMO_OA_APPID, "secret": DEMO_OA_SECRET, "code": code_for(oauth, "beibei"),
              "grant_type": "client_credential"}
    assert httpx.get(f"{stack.sim_url}/sns/oauth2/access_token", params=params).json()["errcode"] == 40002
    del params["code"]
    params["grant_type"] = "authorization_code"
    assert httpx.get(f"{stack.sim_url}/sns/oauth2/access_token", params=params).json()["errcode"] == 41008


def test_codes_expire_after_five_minutes(tmp_path):
    """A simulator with a hand-driven clock, reached through httpx's WSGI transport."""
    from wecom.simulator import create_simulator_app

    now = [1_800_000_000.0]
    sim = create_simulator_app({
        "WECOM_SIM_DATABASE_URL": f"sqlite:///{tmp_path / 'sim.db'}", "WECOM_SIM_CALLBACK_URL": "",
        "CLOCK": lambda: now[0],
    })
    transport = httpx.WSGITransport(app=sim)
    oauth = WeChatOAuth(DEMO_OA_APPID, DEMO_OA_SECRET, api_base="http://sim/", transport=transport)
    with oauth, httpx.Client(transport=transport, base_url="http://sim") as browser:
        def code() -> str:
            resp = browser.get(f"/connect/oauth2/authorize?appid={DEMO_OA_APPID}&redirect_uri={quote(CALLBACK)}"
                               "&response_type=code&scope=snsapi_base&state=x&as=xiaomei")
            return parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]

        fresh, stale = code(), code()
        now[0] += 299
        assert oauth.exchange_code(fresh).unionid
        now[0] += 2
        with pytest.raises(WeChatOAuthError) as exc:
            oauth.exchange_code(stale)
        assert exc.value.errcode == INVALID_CODE


def test_system_busy_is_retried_a_little(stack, oauth):
    sim_admin(stack, "POST", "faults", {"errcode": -1, "times": 1, "path": "sns/oauth2/access_token"})
    assert oauth.exchange_code(code_for(oauth, "beibei")).unionid == unionid_of(stack, "beibei")
    sim_admin(stack, "POST", "faults", {"errcode": -1, "times": 3, "path": "sns/oauth2/access_token"})
    with pytest.raises(WeChatOAuthError) as exc:
        oauth.exchange_code(code_for(oauth, "beibei"))
    assert exc.value.errcode == -1


def test_authorize_page_errors_and_asking_who_reads(stack, oauth):
    base = f"{stack.sim_url}/connect/oauth2/authorize"
    good = f"appid={DEMO_OA_APPID}&redirect_uri={quote(CALLBACK)}&response_type=code&scope=snsapi_base&state=z"
    for query, errcode in (
        (good.replace(DEMO_OA_APPID, "wx0000000000000000"), 40013),
        (good.replace(f"redirect_uri={quote(CALLBACK)}", "redirect_uri="), 10011),
        (good.replace("snsapi_base", "snsapi_login"), 10005),
        (good.replace(f"appid={DEMO_OA_APPID}", "appid="), 10012),
    ):
        resp = httpx.get(f"{base}?{query}")
        assert resp.status_code == 400 and f'data-errcode="{errcode}"' in resp.text, query
    # nobody holds the phone yet: WeChat's browser asks, and remembers the answer
    with httpx.Client(timeout=10) as browser:
        pick = browser.get(f"{base}?{good}")
        assert pick.status_code == 200 and 'data-wechat-user="xiaomei"' in pick.text
        chosen = browser.get(f"{base}?{good}&as=xiaomei")
        assert chosen.status_code == 302 and browser.cookies.get("sim_wechat_user") == "xiaomei"
        assert browser.get(f"{base}?{good}").status_code == 302
    # tapping a link card in the phone view hands the phone to that diner
    with httpx.Client(timeout=10) as browser:
        opened = browser.get(f"{stack.sim_url}/phone/huahua/open", params={"url": "http://app.example/m/"})
        assert opened.status_code == 302 and opened.headers["Location"] == "http://app.example/m/"
        assert browser.cookies.get("sim_wechat_user") == "huahua"
        assert browser.get(f"{stack.sim_url}/phone/huahua/open", params={"url": "javascript:alert(1)"}).status_code == 400
        assert browser.get(f"{stack.sim_url}/phone/nobody/open", params={"url": "http://a/"}).status_code == 404


# ---------------------------------------------------------------- the app signs diners in


def open_in_wechat(stack, wechat_user: str, url: str) -> tuple[httpx.Client, httpx.Response]:
    """A phone's browser for ``wechat_user`` (the simulator's link-card route sets who holds
    it) and what it shows after following every redirect."""
    browser = httpx.Client(timeout=10, follow_redirects=True)
    return browser, browser.get(f"{stack.sim_url}/phone/{wechat_user}/open", params={"url": url})


def test_mass_message_links_sign_the_diner_in_through_wechat(stack):
    with transaction(db.session) as session:
        diner = make_resident(session, unionid=unionid_of(stack, "xiaoyu"))
        shop = make_shop(session, make_circle(session), name="粤香茶餐厅")
    template = make_template(shop, valid_from=None, valid_until=None, valid_days=7, total_stock=None)
    from coupons.services import issue_coupon

    with transaction(db.session) as session:
        coupon = issue_coupon(session, template.id, f"r:{diner.id}", resident_id=diner.id)
    page = f"{stack.app_url}/m/c/{coupon.short_code}"

    browser, resp = open_in_wechat(stack, "xiaoyu", page)
    try:
        # (browsers carry the authorize URL's #wechat_redirect along the redirects, so does httpx)
        assert resp.status_code == 200 and str(resp.url).split("#")[0] == page
        assert 'data-testid="coupon-qr"' in resp.text and coupon.short_code[:5] in resp.text
        hops = [str(r.url) for r in resp.history]
        assert any("/connect/oauth2/authorize" in h for h in hops)
        callback = next(h for h in hops if "/m/oauth/callback" in h)
        # signed in: the next page needs no trip to WeChat
        home = browser.get(f"{stack.app_url}/m/")
        assert home.status_code == 200 and not home.history and coupon.short_code in home.text
        # reloading the spent callback URL just lands on the page again
        again = browser.get(callback)
        assert again.status_code == 200 and str(again.url).split("#")[0] == page
    finally:
        browser.close()

    # the same callback URL in someone else's browser signs nobody in
    with httpx.Client(timeout=10) as thief:
        stolen = thief.get(callback)
        assert stolen.status_code == 400 and 'data-testid="oauth-failed"' in stolen.text
        assert thief.get(f"{stack.app_url}/m/").status_code == 302  # still nobody: off to WeChat


def test_unknown_wechat_user_sees_the_scan_first_page(stack):
    browser, resp = open_in_wechat(stack, "lanlan", f"{stack.app_url}/m/taste")
    browser.close()
    assert resp.status_code == 200 and 'data-testid="unknown-diner"' in resp.text
    assert "/m/oauth/callback" in str(resp.url)


def test_a_forwarded_welcome_card_opens_the_coupon_and_nothing_else(stack):
    """Issue item 7: the card's link shows its coupon to whoever taps it; the rest of /m/ is
    theirs only after WeChat says who they are."""
    with transaction(db.session) as session:
        holder = make_resident(session, unionid=unionid_of(stack, "xiaoyu"))
        friend = make_resident(session, unionid=unionid_of(stack, "beibei"))
        shop = make_shop(session, make_circle(session), name="转发小馆")
    template = make_template(shop, valid_from=None, valid_until=None, valid_days=7, total_stock=None,
                             per_diner_limit=3)
    with transaction(db.session) as session:
        gift = issue_coupon(session, template.id, f"r:{holder.id}", resident_id=holder.id)
        kept = issue_coupon(session, template.id, f"r:{holder.id}", resident_id=holder.id)
        own = issue_coupon(session, template.id, f"r:{friend.id}", resident_id=friend.id)
    link = coupon_url(gift.short_code, holder.id)

    browser, resp = open_in_wechat(stack, "beibei", link)  # the friend taps the forwarded card
    try:
        assert resp.status_code == 200 and str(resp.url) == f"{stack.app_url}/m/c/{gift.short_code}"
        assert 'data-testid="coupon-qr"' in resp.text
        assert not any("/connect/oauth2/authorize" in str(r.url) for r in resp.history)  # no sign-in
        home = browser.get(f"{stack.app_url}/m/")  # the list: WeChat says this is beibei
        assert any("/connect/oauth2/authorize" in str(r.url) for r in home.history)
        assert own.short_code in home.text
        assert gift.short_code not in home.text and kept.short_code not in home.text
        assert browser.get(f"{stack.app_url}/m/c/{kept.short_code}").status_code == 404
    finally:
        browser.close()
