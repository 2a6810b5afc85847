"""403/404/500 pages (issue item 10): in the app's style and language, with a phone viewport
on the diner pages (/m/…) and the portal's look elsewhere; the 500 page renders with the
database down; JSON clients get JSON."""
from __future__ import annotations

import pytest
from flask import abort, url_for
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from core import errors
from core.db import db
from coupons import services as coupon_svc
from marketplace import errors as error_module
from residents.tokens import make_link_token, make_sign_in_token
from tests.support.coupons import login, make_shop, make_template, tx
from tests.support.merchants import FreshContextClient
from tests.support.residents import make_circle, make_resident

PHONE_VIEWPORT = '<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">'
PORTAL_CSS = "/static/linli.css"


@pytest.fixture
def app(app):
    """The shared app, with a few routes that fail on purpose (added before any request)."""

    def boom():
        raise RuntimeError("kaboom")

    def touch_db():
        db.session.execute(text("SELECT 1"))
        return "unreachable"

    def forbidden():
        abort(403)

    def domain_not_found():
        raise errors.NotFound("这家店已经关门了")

    for prefix in ("", "/m"):
        app.add_url_rule(f"{prefix}/_test/boom", f"boom{prefix}", boom)
        app.add_url_rule(f"{prefix}/_test/db", f"db{prefix}", touch_db)
        app.add_url_rule(f"{prefix}/_test/forbidden", f"forbidden{prefix}", forbidden)
        app.add_url_rule(f"{prefix}/_test/gone", f"gone{prefix}", domain_not_found)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer like production, not re-raise
    return app


@pytest.fixture
def client(app):
    app.test_client_class = FreshContextClient
    return app.test_client()


@pytest.fixture
def shop(app):
    with tx() as session:
        return make_shop(session, make_circle(session), name="川味小馆")


def page_of(resp) -> str:
    html = resp.get_data(as_text=True)
    assert resp.mimetype == "text/html"
    assert f'data-testid="error-page" data-status="{resp.status_code}"' in html, html[:800]
    return html


def assert_diner_style(html: str) -> None:
    assert PHONE_VIEWPORT in html and PORTAL_CSS not in html


def assert_portal_style(html: str) -> None:
    assert PORTAL_CSS in html and 'class="topbar"' in html and "viewport-fit=cover" not in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html


def test_another_diners_coupon_link_is_a_phone_sized_page_in_chinese(client, shop):
    """The case in the issue: a diner opens a coupon link that is not theirs."""
    template = make_template(shop, valid_from=None, valid_until=None, valid_days=30, total_stock=None)
    with tx() as session:
        me, other = make_resident(session), make_resident(session)
        theirs = coupon_svc.issue_coupon(session, template.id, f"r:{other.id}", resident_id=other.id)
        me_id, code = me.id, theirs.short_code
    client.get(f"/m/?t={make_sign_in_token(me_id)}")
    resp = client.get(f"/m/c/{code}")
    assert resp.status_code == 404
    html = page_of(resp)
    assert_diner_style(html)
    assert 'lang="zh-CN"' in html and "找不到这张券" in html and "Not Found" not in html
    assert 'data-testid="tabbar"' in html  # still the signed-in diner's pages around it
    assert code not in html.replace(f"/m/c/{code}", "")  # nothing of the coupon shown
    english = client.get(f"/m/c/{code}?lang=en")
    html = page_of(english)
    assert english.status_code == 404 and 'lang="en"' in html and "This coupon cannot be found" in html


def test_a_link_token_for_the_wrong_coupon_gives_no_page_of_it(client, shop):
    template = make_template(shop, valid_from=None, valid_until=None, valid_days=30, total_stock=None)
    with tx() as session:
        me, other = make_resident(session), make_resident(session)
        mine = coupon_svc.issue_coupon(session, template.id, f"r:{me.id}", resident_id=me.id)
        theirs = coupon_svc.issue_coupon(session, template.id, f"r:{other.id}", resident_id=other.id)
        me_id, mine_code, theirs_code = me.id, mine.short_code, theirs.short_code
    client.get(f"/m/?t={make_sign_in_token(me_id)}")
    client.get(f"/m/c/{theirs_code}?t={make_link_token(me_id, mine_code)}")  # a link, but for another coupon
    assert client.get(f"/m/c/{theirs_code}").status_code == 404


def test_diner_pages_404_and_403_in_the_phone_style(client):
    for path in ("/m/no-such-page", "/m/s/999999", "/m/_test/gone"):
        resp = client.get(path)
        assert resp.status_code == 404, path
        html = page_of(resp)
        assert_diner_style(html)
        assert "页面不存在" in html
    assert "这家店已经关门了" in client.get("/m/_test/gone").get_data(as_text=True)  # the domain's own words
    resp = client.get("/m/_test/forbidden")
    assert resp.status_code == 403
    html = page_of(resp)
    assert_diner_style(html)
    assert "没有权限" in html and "Forbidden" not in html


def test_portal_404_and_403_in_the_portal_style(client, shop):
    resp = client.get("/no-such-page")
    assert resp.status_code == 404
    html = page_of(resp)
    assert_portal_style(html)
    assert "页面不存在" in html and "Not Found" not in html and "返回首页" in html
    english = client.get("/no-such-page?lang=en")
    assert english.status_code == 404 and "Page not found" in page_of(english)
    assert client.get("/no-such-page?lang=zh_CN").status_code == 404  # the choice is remembered: back

    login(client, shop.cashier)  # a cashier may not open the owner's portal
    with client.application.test_request_context():
        portal = url_for("merchants.portal_home")
    resp = client.get(portal)
    assert resp.status_code == 403
    html = page_of(resp)
    assert_portal_style(html)
    assert "没有权限" in html and "Forbidden" not in html
    assert shop.cashier.username in html  # the navigation still knows who is signed in


@pytest.mark.parametrize("prefix,style", [("", assert_portal_style), ("/m", assert_diner_style)])
def test_500_page(client, prefix, style):
    resp = client.get(f"{prefix}/_test/boom")
    assert resp.status_code == 500
    html = page_of(resp)
    style(html)
    assert "出错了" in html and "kaboom" not in html and "Internal Server Error" not in html


@pytest.mark.parametrize("prefix,style", [("", assert_portal_style), ("/m", assert_diner_style)])
def test_500_page_renders_with_the_database_down(client, shop, prefix, style):
    """Every statement fails, the signed-in user's cookie included: the page asks the
    database nothing (a query would have fallen back to the bare page)."""
    login(client, shop.owner)
    client.get(f"/m/?t={make_sign_in_token(make_diner())}")
    tried: list[str] = []

    def down(conn, cursor, statement, *args):
        tried.append(statement)
        raise OperationalError(statement, {}, Exception("database is down"))

    event.listen(db.engine, "before_cursor_execute", down)
    try:
        resp = client.get(f"{prefix}/_test/db")
    finally:
        event.remove(db.engine, "before_cursor_execute", down)
    assert resp.status_code == 500
    html = page_of(resp)
    style(html)
    assert "出错了" in html
    assert tried == ["SELECT 1"]  # the view's own query, and nothing after it


def make_diner() -> int:
    with tx() as session:
        return make_resident(session).id


def test_the_500_page_has_a_fallback(client, app, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("template missing")

    monkeypatch.setattr(error_module, "render_template", broken)
    resp = client.get("/_test/boom")
    assert resp.status_code == 500 and resp.mimetype == "text/html"
    assert "出错了" in resp.get_data(as_text=True)


def test_json_clients_get_json(client):
    resp = client.get("/m/c/0000000000/status", headers={"Accept": "application/json"})
    assert resp.status_code == 401  # nobody: the status poll says so itself
    client.get(f"/m/?t={make_sign_in_token(make_diner())}")
    resp = client.get("/m/c/0000000000/status", headers={"Accept": "application/json"})
    assert resp.status_code == 404 and resp.json["status"] == 404
    resp = client.get("/_test/boom", headers={"Accept": "application/json"})
    assert resp.status_code == 500 and resp.json["status"] == 500 and "kaboom" not in resp.get_data(as_text=True)
