"""Regions: city → district → business circle, managed by the admin."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from core.db import db
from core.txn import transaction
from merchants import services
from merchants.models import Region, RegionLevel
from merchants.services import ServiceError
from tests.support.merchants import client, fast_hashing, login, make_admin, make_manager, make_regions, post_form  # noqa: F401  (fixtures)


def test_tree_and_paths(app):
    ids = make_regions()
    tree = services.region_tree(db.session)
    assert [n.region.name for n in tree] == ["上海"]
    districts = {n.region.name: [c.region.name for c in n.children] for n in tree[0].children}
    assert districts == {"徐汇区": ["徐家汇", "田林"], "静安区": ["南京西路"]}
    assert dict(services.circle_choices(db.session))[ids["徐家汇"]] == "上海 · 徐汇区 · 徐家汇"


def test_circles_within_regions(app):
    ids = make_regions()
    within = lambda *names: services.circle_ids_within(db.session, [ids[n] for n in names])  # noqa: E731
    assert within("上海") == {ids["徐家汇"], ids["田林"], ids["南京西路"]}
    assert within("徐汇区") == {ids["徐家汇"], ids["田林"]}
    assert within("南京西路") == {ids["南京西路"]}
    assert within("田林", "静安区") == {ids["田林"], ids["南京西路"]}
    assert within() == set()


@pytest.mark.parametrize(
    "name,level,parent,field",
    [
        ("北京", "city", "上海", "parent_id"),  # a city has no parent
        ("浦东新区", "district", None, "parent_id"),  # a district needs a city
        ("陆家嘴", "circle", "上海", "parent_id"),  # a circle needs a district, not a city
        ("田林", "circle", "徐汇区", "name"),  # duplicate under the same parent
        ("上海", "city", None, "name"),  # duplicate city
        ("", "city", None, "name"),
    ],
)
def test_region_rules(app, name, level, parent, field):
    ids = make_regions()
    with pytest.raises(ServiceError) as err:
        with transaction(db.session):
            services.create_region(db.session, name=name, level=level, parent_id=ids.get(parent))
    assert err.value.field == field


def test_schema_refuses_duplicate_cities(app):
    from sqlalchemy.exc import IntegrityError

    make_regions()
    with pytest.raises(IntegrityError):
        with transaction(db.session):
            db.session.add(Region(name="上海", level=RegionLevel.city))
            db.session.flush()


def test_admin_adds_regions_through_the_page(client):
    make_admin("root")
    login(client, "root")
    resp = post_form(client, "/admin/regions", {"name": "北京", "level": "city", "parent_id": "0"})
    assert resp.status_code == 302
    city = db.session.scalar(select(Region).where(Region.name == "北京"))
    resp = post_form(client, "/admin/regions", {"name": "朝阳区", "level": "district", "parent_id": str(city.id)})
    assert resp.status_code == 302
    district = db.session.scalar(select(Region).where(Region.name == "朝阳区"))
    assert district.parent_id == city.id
    post_form(client, "/admin/regions", {"name": "三里屯", "level": "circle", "parent_id": str(district.id)})
    page = client.get("/admin/regions").get_data(as_text=True)
    assert "北京" in page and "朝阳区" in page and "三里屯" in page


def test_region_form_errors_render(client):
    make_admin("root")
    login(client, "root")
    resp = post_form(client, "/admin/regions", {"name": "无主商圈", "level": "circle", "parent_id": "0"})
    assert resp.status_code == 400
    assert "商圈须属于一个区县" in resp.get_data(as_text=True)
    resp = post_form(client, "/admin/regions", {"name": "x", "level": "planet", "parent_id": "0"})
    assert resp.status_code == 400


def test_only_admins_manage_regions(client):
    ids = make_regions()
    make_manager("mgr", [ids["徐汇区"]])
    login(client, "mgr")
    assert client.get("/admin/regions").status_code == 403
    assert client.get("/admin/managers").status_code == 403


def test_admin_creates_a_manager(client):
    ids = make_regions()
    make_admin("root")
    login(client, "root")
    resp = post_form(
        client, "/admin/managers",
        {"username": "mgr_xh", "password": "manager-pass", "regions": [str(ids["徐汇区"])]},
    )
    assert resp.status_code == 302
    page = client.get("/admin/managers").get_data(as_text=True)
    assert "mgr_xh" in page and "上海 · 徐汇区" in page
    resp = post_form(client, "/admin/managers", {"username": "mgr_none", "password": "manager-pass"})
    assert resp.status_code == 400 and "请至少选择一个区域" in resp.get_data(as_text=True)
