"""Accounts fixtures: the portal's client (fresh ``g`` per request, cheap hashing) and a shop
with an approved store, its owner and a cashier."""
from __future__ import annotations

import pytest

from core.db import db
from core.txn import transaction
from merchants.models import Region, RegionLevel
from tests.support.coupons import Shop, make_shop
from tests.support.merchants import client, fast_hashing  # noqa: F401  (fixtures)


@pytest.fixture
def shop(app) -> Shop:
    with transaction(db.session):
        city = Region(name="上海", level=RegionLevel.city)
        db.session.add(city)
        db.session.flush()
        circle = Region(name="徐家汇", level=RegionLevel.circle, parent_id=city.id)
        db.session.add(circle)
        db.session.flush()
        return make_shop(db.session, circle)
