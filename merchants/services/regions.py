"""Regions: city → district → business circle, and the managers scoped to them (a manager is
an account *with regions*, so it is made here, above accounts)."""
from __future__ import annotations

from dataclasses import dataclass, field

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from accounts.models import Role, User
from accounts.services import AccountError, create_user
from merchants.errors import ServiceError
from merchants.models import Region, RegionLevel

_PARENT_LEVEL = {RegionLevel.city: None, RegionLevel.district: RegionLevel.city, RegionLevel.circle: RegionLevel.district}


def create_region(session: Session, *, name: str, level: RegionLevel | str, parent_id: int | None = None) -> Region:
    """City (no parent) → district (in a city) → business circle (in a district)."""
    level = RegionLevel(level)
    name = (name or "").strip()
    if not name or len(name) > 64:
        raise ServiceError(_l("请填写名称（最多 64 字）。"), "name")
    parent = session.get(Region, parent_id) if parent_id else None
    if _PARENT_LEVEL[level] is None:
        if parent_id:
            raise ServiceError(_l("城市不能有上级区域。"), "parent_id")
    elif parent is None or parent.level != _PARENT_LEVEL[level]:
        message = _l("区县须属于一个城市。") if level == RegionLevel.district else _l("商圈须属于一个区县。")
        raise ServiceError(message, "parent_id")
    same_name = select(Region.id).where(func.lower(Region.name) == name.lower())
    same_name = same_name.where(Region.parent_id == parent.id) if parent else same_name.where(Region.parent_id.is_(None))
    if session.scalar(same_name) is not None:
        raise ServiceError(_l("同一上级下已有同名区域。"), "name")
    region = Region(name=name, level=level, parent_id=parent.id if parent else None)
    session.add(region)
    session.flush()
    return region


@dataclass
class RegionNode:
    region: Region
    children: list[RegionNode] = field(default_factory=list)


def region_tree(session: Session) -> list[RegionNode]:
    """Every region as a city → district → circle tree, sorted by name."""
    regions = list(session.scalars(select(Region).order_by(Region.name)))
    nodes = {r.id: RegionNode(r) for r in regions}
    roots: list[RegionNode] = []
    for r in regions:
        (nodes[r.parent_id].children if r.parent_id in nodes else roots).append(nodes[r.id])
    return roots


def region_path(region: Region) -> str:
    """"上海 · 徐汇区 · 徐家汇" for a circle. Lists load the ancestors up front
    (``with_region_path``), else each row walks its parents one lazy load at a time."""
    names, node = [], region
    while node is not None:
        names.append(node.name)
        node = node.parent
    return " · ".join(reversed(names))


def with_region_path(relationship):
    """A loader option for ``relationship`` (to a Region) that also loads its district and
    city, so ``region_path`` on every row of a list costs no query (three levels at most)."""
    return selectinload(relationship).selectinload(Region.parent).selectinload(Region.parent)


def circle_choices(session: Session) -> list[tuple[int, str]]:
    circles = session.scalars(
        select(Region).where(Region.level == RegionLevel.circle)
        .options(selectinload(Region.parent).selectinload(Region.parent))
    )
    return sorted(((c.id, region_path(c)) for c in circles), key=lambda pair: pair[1])


def region_choices(session: Session) -> list[tuple[int, str]]:
    return sorted(((r.id, region_path(r)) for r in session.scalars(select(Region))), key=lambda pair: pair[1])


def circle_ids_within(session: Session, region_ids) -> set[int]:
    """The business circles inside (or equal to) the given regions."""
    frontier, found = set(region_ids), set()
    seen: set[int] = set()
    while frontier:
        seen |= frontier
        rows = session.execute(select(Region.id, Region.level, Region.parent_id).where(
            Region.id.in_(frontier) | Region.parent_id.in_(frontier)
        )).all()
        nxt = set()
        for rid, level, parent_id in rows:
            if rid in frontier and level == RegionLevel.circle:
                found.add(rid)
            if parent_id in frontier and rid not in seen:
                nxt.add(rid)
        frontier = nxt
    return found


def create_manager(session: Session, *, username: str, password: str, region_ids: list[int], display_name: str = "") -> User:
    """A regional manager sees and reviews stores whose business circle lies in ``region_ids``."""
    regions = list(session.scalars(select(Region).where(Region.id.in_(region_ids or [])))) if region_ids else []
    if not regions:
        raise AccountError(_l("请至少选择一个区域。"), "regions")
    user = create_user(session, username=username, password=password, role=Role.manager, display_name=display_name)
    user.regions = regions
    return user
