"""The demo neighbourhood behind ``linli seed-demo`` and ``make run``.

Idempotent by construction: every row is looked up by its natural key before it is created,
so seeding twice (or after a partial run) changes nothing. Other packages extend
``seed_demo`` with their own demo rows the same way.
"""
from __future__ import annotations

import logging

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from marketplace.db import utcnow
from merchants.models import Member, Region, RegionLevel

log = logging.getLogger(__name__)

# city -> district -> business circles (商圈)
DEMO_REGIONS: dict[str, dict[str, list[str]]] = {
    "上海": {
        "徐汇区": ["徐家汇商圈", "衡山路商圈"],
        "静安区": ["静安寺商圈", "南京西路商圈"],
        "黄浦区": ["新天地商圈"],
    },
}


def seed_demo(session: Session, *, wecom=None, wecom_base: str | None = None) -> list[str]:
    """Seed regions and sync WeCom members (when the WeCom API — usually the simulator —
    answers). Returns human-readable lines describing what was done. Never commits."""
    lines = [f"regions: {seed_regions(session)} new"]
    if wecom is None:
        wecom, wecom_base = _app_wecom()
    if wecom is not None and _reachable(wecom_base):
        try:
            added, total = sync_members(session, wecom)
            lines.append(f"members: {added} new, {total} synced from WeCom")
        except Exception as exc:  # a demo seed must not fail because WeCom is unhappy
            log.warning("member sync skipped: %s", exc)
            lines.append(f"members: sync skipped ({exc})")
    else:
        lines.append("members: WeCom API not reachable, sync skipped")
    return lines


def get_or_create_region(session: Session, name: str, level: RegionLevel, parent: Region | None) -> tuple[Region, bool]:
    parent_id = parent.id if parent is not None else None
    stmt = select(Region).where(Region.name == name, Region.level == level)
    stmt = stmt.where(Region.parent_id.is_(None) if parent_id is None else Region.parent_id == parent_id)
    region = session.scalars(stmt).first()
    if region is not None:
        return region, False
    region = Region(name=name, level=level, parent_id=parent_id)
    session.add(region)
    session.flush()
    return region, True


def seed_regions(session: Session) -> int:
    created = 0
    for city_name, districts in DEMO_REGIONS.items():
        city, new = get_or_create_region(session, city_name, RegionLevel.city, None)
        created += new
        for district_name, circles in districts.items():
            district, new = get_or_create_region(session, district_name, RegionLevel.district, city)
            created += new
            for circle_name in circles:
                _, new = get_or_create_region(session, circle_name, RegionLevel.circle, district)
                created += new
    return created


def sync_members(session: Session, wecom) -> tuple[int, int]:
    """Upsert every corp member; only those in ``get_follow_user_list`` may hold customers."""
    users = wecom.users.simplelist(department_id=1, fetch_child=True)
    holders = set(wecom.customers.follow_user_list())
    existing = {m.userid: m for m in session.scalars(select(Member))}
    added = 0
    for user in users:
        member = existing.get(user["userid"])
        if member is None:
            member = Member(userid=user["userid"])
            session.add(member)
            added += 1
        member.name = user.get("name", "") or member.name
        member.can_hold_customers = user["userid"] in holders
        member.active = True
        member.synced_at = utcnow()
    session.flush()
    return added, len(users)


def _app_wecom():
    from flask import current_app, has_app_context

    if not has_app_context() or "wecom" not in current_app.extensions:
        return None, None
    return current_app.extensions["wecom"], current_app.config["WECOM_API_BASE"]


def _reachable(base: str | None) -> bool:
    """A quick probe: the client's retries with backoff would make an offline seed crawl."""
    if not base:
        return True
    try:
        httpx.get(base.rstrip("/") + "/gettoken", timeout=2.0)
        return True
    except httpx.HTTPError:
        return False
