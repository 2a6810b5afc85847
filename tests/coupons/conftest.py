"""Coupon test fixtures: a merchant with two stores, its owner and cashier, a rival merchant."""
from __future__ import annotations

import pytest

from core.db import db
from core.txn import transaction
from merchants.models import Region, RegionLevel
from tests.support.coupons import Shop, make_shop


@pytest.fixture
def circle(app):
    with transaction(db.session):
        city = Region(name="上海", level=RegionLevel.city)
        db.session.add(city)
        db.session.flush()
        district = Region(name="徐汇", level=RegionLevel.district, parent_id=city.id)
        db.session.add(district)
        db.session.flush()
        c = Region(name="徐家汇", level=RegionLevel.circle, parent_id=district.id)
        db.session.add(c)
    return c


@pytest.fixture
def shop(app, circle) -> Shop:
    with transaction(db.session):
        return make_shop(db.session, circle)


@pytest.fixture
def rival(app, circle) -> Shop:
    with transaction(db.session):
        return make_shop(db.session, circle, name="湘里人家")
