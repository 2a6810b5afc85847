"""The diner's journey over real HTTP: scan a 川菜 store's channel code in the simulated
WeChat, become a resident with a relationship, get the welcome card, open it to a coupon with
a QR, have the cashier redeem it at the desk, and see the coupon page say it was used. Then
a page opened without a personal link (as from a mass message) finds the same diner through
WeChat OAuth."""
from __future__ import annotations

import html as htmllib
import re
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from core.db import db
from core.wecom import get_wecom
from coupons.models import Coupon, CouponStatus
from coupons.views import desk_url, qr_data_uri
from residents.models import ContactRelationship, RelationshipStatus, Resident
from tests.support.coupons import PASSWORD
from tests.support.residents import welcome_store

pytestmark = pytest.mark.slow

DINER = "xiaomei"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
KEY_RE = re.compile(r'name="idempotency_key"[^>]*value="([^"]+)"')
CARD_RE = re.compile(r'<a class="card" href="([^"]+)"')


def sim_admin(stack, method: str, path: str, json=None) -> dict:
    resp = stack.http.request(method, f"{stack.sim_url}/sim/admin/{path}", json=json)
    resp.raise_for_status()
    return resp.json()


def csrf(page: httpx.Response) -> str:
    match = CSRF_RE.search(page.text)
    assert match, f"no csrf token on {page.url} ({page.status_code})"
    return match.group(1)


def wait_for(stack, predicate, timeout: float = 20.0):
    """``stack.wait_for`` with this thread's session ended before each round of jobs (the
    burst worker runs them in this thread, on the same scoped session)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.remove()
        stack.drain()
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout}s")


def resident_with_relationship(external_userid: str, store_id: int):
    return db.session.execute(
        select(Resident, ContactRelationship)
        .join(ContactRelationship, ContactRelationship.resident_id == Resident.id)
        .where(Resident.external_userid == external_userid, ContactRelationship.store_id == store_id,
               ContactRelationship.status == RelationshipStatus.open)
    ).first()


def welcome_card(stack) -> dict | None:
    messages = sim_admin(stack, "GET", f"inbox/{DINER}")["messages"]
    return next((m for m in messages if m["msgtype"] == "link" and "/m/c/" in m["link"]["url"]), None)


def test_scan_welcome_coupon_redeem_used(stack):
    shop_store = welcome_store(get_wecom(), ["zhangwei"], cuisines=("sichuan",), welcome_text="欢迎光临川味小馆！")

    # 1. the diner scans the store's channel code in WeChat
    scan = sim_admin(stack, "POST", "scan", {"wechat_user": DINER, "config_id": shop_store.config_id})
    assert scan["added"] and scan["state"] == shop_store.state

    # 2. the add event becomes a resident with a relationship to that store
    resident, relationship = wait_for(stack, lambda: resident_with_relationship(scan["external_userid"],
                                                                                 shop_store.store_id))
    unionid = next(u["unionid"] for u in sim_admin(stack, "GET", "wechat_users")["wechat_users"] if u["id"] == DINER)
    assert resident.unionid == unionid and relationship.member_id

    # 3. the welcome message with the coupon's link card reaches the phone
    card = wait_for(stack, lambda: welcome_card(stack))
    coupon = db.session.scalar(select(Coupon).where(Coupon.resident_id == resident.id))
    assert coupon is not None and coupon.template_id == shop_store.template_id
    assert card["link"]["url"].startswith(f"{stack.app_url}/m/c/{coupon.short_code}?t=")
    phone = stack.http.get(f"{stack.sim_url}/phone/{DINER}")
    hrefs = [htmllib.unescape(h) for h in CARD_RE.findall(phone.text)]
    tap = next(h for h in hrefs if coupon.short_code in h)

    # 4. tapping the card opens the coupon with its QR (the link's token signs the diner in)
    with httpx.Client(timeout=10, follow_redirects=True) as diner:
        page = diner.get(f"{stack.sim_url}{tap}")
        coupon_url = f"{stack.app_url}/m/c/{coupon.short_code}"
        assert page.status_code == 200 and str(page.url) == coupon_url  # the token left the address bar
        assert 'data-status="valid"' in page.text and "未使用" in page.text
        assert qr_data_uri(desk_url(coupon.short_code)) in page.text  # the QR a cashier's phone scans
        assert f"{coupon.short_code[:5]}-{coupon.short_code[5:]}" in page.text
        assert diner.get(f"{coupon_url}/status").json()["status"] == "valid"

        # 5. the cashier opens the QR's URL at the desk and redeems it
        with httpx.Client(base_url=stack.app_url, timeout=10) as till:
            login = till.post("/auth/login", data={
                "username": shop_store.shop.cashier.username, "password": PASSWORD,
                "csrf_token": csrf(till.get("/auth/login"))})
            assert login.status_code == 302
            desk = till.get(urlsplit(desk_url(coupon.short_code)).path)
            assert desk.status_code == 200, desk.text[:500]
            confirm = till.post(desk.url.path, data={
                "csrf_token": csrf(desk), "idempotency_key": KEY_RE.search(desk.text).group(1),
                "store_id": str(shop_store.store_id), "bill": "128"})
            assert confirm.status_code == 302 and "/desk/r/" in confirm.headers["Location"]
        db.session.remove()
        assert db.session.scalar(select(Coupon.status).where(Coupon.id == coupon.id)) == CouponStatus.redeemed

        # 6. the diner's page now says used (what its poll asks, and what it shows on reload)
        status = diner.get(f"{coupon_url}/status").json()
        assert status["status"] == "used" and status["label"] == "已使用"
        used = diner.get(coupon_url)
        assert 'data-testid="coupon-used"' in used.text and "已使用" in used.text
        assert 'data-testid="coupon-qr"' not in used.text
        assert coupon.short_code in diner.get(f"{stack.app_url}/m/?tab=used").text

        # the survey, over HTTP with its CSRF token
        survey = diner.get(f"{stack.app_url}/m/taste")
        saved = diner.post(f"{stack.app_url}/m/taste", data={
            "csrf_token": csrf(survey), "cuisines": ["sichuan", "hotpot"], "spice_level": "3", "budget": "70"})
        assert saved.status_code == 200 and "已保存" in saved.text
        profile = saved.text.split('data-testid="taste-profile"')[1].split("</section>")[0]
        assert "川菜" in profile and "火锅" in profile and "特辣" in profile

    # 7. a page opened without the personal link (a mass message) finds the diner via WeChat OAuth
    with httpx.Client(timeout=10, follow_redirects=True) as phone_browser:
        home = phone_browser.get(f"{stack.sim_url}/phone/{DINER}/open", params={"url": f"{stack.app_url}/m/"})
        hops = [str(r.url) for r in home.history]
        assert any("/connect/oauth2/authorize" in h for h in hops) and any("/m/oauth/callback" in h for h in hops)
        assert home.status_code == 200 and coupon.short_code in phone_browser.get(f"{stack.app_url}/m/?tab=used").text
        callback = next(h for h in hops if "/m/oauth/callback" in h)
        assert parse_qs(urlsplit(callback).query)["code"]
