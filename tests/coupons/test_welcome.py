"""A store's welcome settings (text and welcome coupon): the rules and the owner's page."""
from __future__ import annotations

import pytest

from core.db import db
from core.txn import transaction
from coupons import services as svc
from coupons.models import CouponKind, CouponTemplate
from merchants.models import Store
from tests.support.coupons import csrf_token, login


def test_welcome_settings_rules(shop, rival):
    store = shop.store
    with transaction(db.session()):
        mine = CouponTemplate(merchant_id=shop.merchant.id, name="新客满50减10", kind=CouponKind.amount_off,
                              value=1000, min_spend_fen=5000, valid_days=7)
        theirs = CouponTemplate(merchant_id=rival.merchant.id, name="别家的券", kind=CouponKind.voucher,
                                value=500, valid_days=7)
        db.session.add_all([mine, theirs])
    with transaction(db.session()):
        svc.update_welcome(db.session, store, text="欢迎光临！", template_id=mine.id)
    assert (store.welcome_text, store.welcome_template_id) == ("欢迎光临！", mine.id)
    with pytest.raises(svc.WelcomeError, match="4000"), transaction(db.session()):
        svc.update_welcome(db.session, store, text="好" * 1334, template_id=None)  # 4002 bytes
    with pytest.raises(svc.WelcomeError), transaction(db.session()):
        svc.update_welcome(db.session, store, text="hi", template_id=theirs.id)
    with transaction(db.session()):
        svc.update_welcome(db.session, store, text="好" * 1333, template_id=None)  # 3999 bytes
    assert store.welcome_template_id is None


def test_welcome_form(shop, client):
    store = shop.store
    with transaction(db.session()):
        tpl = CouponTemplate(merchant_id=shop.merchant.id, name="新客满50减10", kind=CouponKind.amount_off,
                             value=1000, min_spend_fen=5000, valid_days=7)
        db.session.add(tpl)
    login(client, shop.owner)
    url = f"/portal/stores/{store.id}/welcome"
    page = client.get(url).get_data(as_text=True)
    assert "新客满50减10" in page
    token = csrf_token(client, url)
    too_long = client.post(url, data={"csrf_token": token, "welcome_text": "好" * 1400, "template_id": ""})
    assert too_long.status_code == 400 and "4000" in too_long.get_data(as_text=True)
    bogus = client.post(url, data={"csrf_token": token, "welcome_text": "hi", "template_id": "999999"})
    assert bogus.status_code == 400  # not one of the choices: a form error, not a 500
    ok = client.post(url, data={"csrf_token": token, "welcome_text": "欢迎光临！", "template_id": str(tpl.id)})
    assert ok.status_code == 302
    db.session.expire_all()
    store = db.session.get(Store, store.id)
    assert (store.welcome_text, store.welcome_template_id) == ("欢迎光临！", tpl.id)


def test_welcome_page_is_tenant_scoped(shop, rival, client):
    login(client, shop.owner)
    assert client.get(f"/portal/stores/{shop.store.id}/welcome").status_code == 200
    assert client.get(f"/portal/stores/{rival.store.id}/welcome").status_code == 404
