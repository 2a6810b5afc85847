"""The demo neighbourhood behind ``linli seed-demo`` and ``make run``.

One business circle (上海 · 徐汇区 · 徐家汇商圈) with eight approved restaurants of different
cuisines, their owners, a platform admin, the district's regional manager and a cashier;
each merchant has a 满减, a 折扣 and a 代金券 template, the 代金券 being the store's welcome
coupon. Staff and channel codes need WeCom (in development: the simulator's demo corp,
``wecom/simulator/seed.py``): ``make run`` seeds once before the simulator is up and
``linli run`` seeds again once it answers, which syncs the members, puts them on the stores
and creates every missing contact way.

Idempotent by construction: every row is looked up by its natural key before it is created,
and rows that exist are left as they are (an owner's later edits survive a re-seed), so
seeding twice (or after a partial run) changes nothing. Other packages extend ``seed_demo``
with their own demo rows the same way.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from accounts.models import Role, User
from accounts.services import find_user, hash_password
from coupons.models import CouponKind, CouponTemplate, TemplateStatus
from coupons.services import TemplateSpec, create_template
from merchants import services
from merchants.models import Channel, Member, Merchant, Region, RegionLevel, ReviewStatus, Store
from merchants.services import ChannelError, StoreInput, add_contact_way, create_channel, credit_code_check_char
from wecom.client import WeComError

log = logging.getLogger(__name__)

# city -> district -> business circles (商圈)
DEMO_REGIONS: dict[str, dict[str, list[str]]] = {
    "上海": {
        "徐汇区": ["徐家汇商圈", "衡山路商圈"],
        "静安区": ["静安寺商圈", "南京西路商圈"],
        "黄浦区": ["新天地商圈"],
    },
}

# Where the demo restaurants are, and the district the demo manager looks after.
DEMO_CITY, DEMO_DISTRICT, DEMO_CIRCLE = "上海", "徐汇区", "徐家汇商圈"

# Every demo account shares this password (dev only: never run seed-demo in production).
DEMO_PASSWORD = "linli-demo"
DEMO_ADMIN = "demo-admin"
DEMO_MANAGER = "demo-manager"
DEMO_CASHIER = "demo-cashier"


@dataclass(frozen=True)
class DemoStore:
    """One demo restaurant: its merchant, owner, store, serving staff, channels and coupons."""
    key: str  # owner username is ``demo-<key>``
    merchant: str
    store: str
    cuisines: tuple[str, ...]
    avg_spend_yuan: int
    address: str
    hours: dict
    # (simulator member userid, backup, daily add cap) — members who may hold customers
    staff: tuple[tuple[str, bool, int | None], ...]
    channels: tuple[tuple[str, str], ...]  # (name, kind)
    voucher_yuan: int  # the welcome coupon
    amount_off: tuple[int, int]  # 满 min_spend 减 value, yuan
    percent_off: tuple[int, int]  # (payable percent, cap yuan): 88 = 八八折
    welcome: str

    @property
    def owner(self) -> str:
        return f"demo-{self.key}"


def _days(days: str, *ranges: tuple[str, str]) -> dict:
    names = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    pick = names if days == "all" else names[:5] if days == "weekdays" else names[5:]
    return {d: [list(r) for r in ranges] for d in pick}


LUNCH_DINNER = _days("all", ("11:00", "14:00"), ("17:00", "21:30"))

DEMO_STORES: tuple[DemoStore, ...] = (
    DemoStore(
        "sichuan", "蜀味餐饮管理有限公司", "蜀味小馆（徐家汇店）", ("sichuan",), 78, "漕溪北路 88 号 2 楼",
        LUNCH_DINNER, (("zhangwei", False, None), ("wangfang", True, 30)),
        (("门口海报", "door"), ("桌贴", "table"), ("收银台小票", "receipt")),
        10, (100, 20), (88, 30),
        "欢迎来到蜀味小馆！送您一张新客 10 元代金券，到店出示券码即可抵用。麻辣鲜香，等您来尝。",
    ),
    DemoStore(
        "hunan", "湘里人家餐饮有限公司", "湘里人家（港汇店）", ("hunan",), 68, "虹桥路 1 号港汇广场 5 楼",
        LUNCH_DINNER, (("lina", False, None),),
        (("门口海报", "door"), ("桌贴", "table")),
        10, (100, 15), (90, 25),
        "湘里人家欢迎您！新客 10 元代金券已放进您的券包，剁椒鱼头配米饭，下饭神器。",
    ),
    DemoStore(
        "cantonese", "粤来粤好餐饮有限公司", "粤来粤好茶餐厅", ("cantonese",), 85, "天钥桥路 133 号",
        _days("all", ("08:00", "22:00")), (("wangfang", False, None),),
        (("门口海报", "door"), ("桌贴", "table"), ("外卖传单", "flyer")),
        15, (150, 30), (85, 40),
        "欢迎光临粤来粤好！早茶点心、烧腊饭都有，新客 15 元代金券请收好。",
    ),
    DemoStore(
        "hotpot", "渝见火锅餐饮有限公司", "渝见老火锅", ("hotpot",), 120, "宜山路 455 号",
        _days("all", ("11:00", "02:00")), (("liuyang", False, 50), ("zhangwei", True, None)),
        (("门口海报", "door"), ("桌贴", "table")),
        20, (200, 40), (88, 50),
        "渝见老火锅欢迎您！牛油锅底现炒，新客 20 元代金券到店可用，深夜也营业。",
    ),
    DemoStore(
        "japanese", "樱之味餐饮管理有限公司", "樱之味日料", ("japanese",), 150, "衡山路 10 号 1 楼",
        LUNCH_DINNER, (("chenjing", False, None),),
        (("门口海报", "door"), ("桌贴", "table")),
        30, (300, 50), (90, 60),
        "欢迎光临樱之味，新客 30 元代金券已送上，今日刺身新鲜到店。",
    ),
    DemoStore(
        "noodles", "老街面馆餐饮有限公司", "老街面馆", ("noodles",), 32, "南丹东路 66 号",
        _days("all", ("07:00", "20:00")), (("yangmin", False, None),),
        (("门口海报", "door"), ("收银台小票", "receipt")),
        5, (40, 6), (90, 10),
        "老街面馆欢迎您！一碗好面，新客 5 元代金券请收好，下次来报券码就行。",
    ),
    DemoStore(
        "dessert", "甜心糖水铺餐饮有限公司", "甜心糖水铺", ("dessert",), 40, "肇嘉浜路 1065 号",
        _days("all", ("12:00", "23:00")), (("lina", False, None), ("chenjing", True, 20)),
        (("门口海报", "door"), ("桌贴", "table")),
        8, (60, 10), (85, 15),
        "甜心糖水铺欢迎您！杨枝甘露、双皮奶都有，新客 8 元代金券送给您。",
    ),
    DemoStore(
        "bbq", "夜猫子餐饮有限公司", "夜猫子烧烤", ("bbq",), 90, "华山路 1500 号",
        _days("all", ("17:00", "03:00")), (("zhangwei", False, None), ("liuyang", True, None)),
        (("门口海报", "door"), ("桌贴", "table"), ("外卖传单", "flyer")),
        15, (150, 25), (88, 40),
        "夜猫子烧烤欢迎您！炭火现烤，新客 15 元代金券请收好，啤酒管够。",
    ),
)


def demo_logins() -> list[tuple[str, str]]:
    """(username, what it is) for every demo account, for the README and ``linli run``."""
    rows = [(DEMO_ADMIN, "平台管理员 admin"), (DEMO_MANAGER, f"{DEMO_DISTRICT}区域经理 manager")]
    rows += [(s.owner, f"{s.store} 老板 owner") for s in DEMO_STORES]
    rows.append((DEMO_CASHIER, f"{DEMO_STORES[0].store} 收银员 cashier"))
    return rows


def banner_lines() -> list[str]:
    """Short lines for ``linli run``'s banner."""
    owners = " ".join(s.owner for s in DEMO_STORES)
    return [
        f"demo logins (password {DEMO_PASSWORD}):",
        f"  {DEMO_ADMIN} (admin)  {DEMO_MANAGER} ({DEMO_DISTRICT})  {DEMO_CASHIER} (desk)",
        f"  owners: {owners}",
    ]


# --------------------------------------------------------------------------- entry point


def seed_demo(session: Session, *, wecom=None, wecom_base: str | None = None) -> list[str]:
    """Seed regions, accounts, the demo restaurants and their coupons; then, when the WeCom
    API (usually the simulator) answers, sync members, put them on the stores and create the
    channel codes. Returns human-readable lines describing what was done. Never commits."""
    lines = [f"regions: {seed_regions(session)} new"]
    lines += seed_restaurants(session)
    if wecom is None:
        wecom, wecom_base = _app_wecom()
    if wecom is not None and _reachable(wecom_base):
        try:
            added, total = sync_members(session, wecom)
            lines.append(f"members: {added} new, {total} synced from WeCom")
            lines += seed_channels(session, wecom)
        except Exception as exc:  # a demo seed must not fail because WeCom is unhappy
            log.warning("WeCom part of the demo skipped: %s", exc)
            lines.append(f"members/channels: skipped ({exc})")
    else:
        lines.append("members: WeCom API not reachable, sync skipped (staff and channel codes come later)")
    return lines


# --------------------------------------------------------------------------- regions


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


def demo_region(session: Session, *names: str) -> Region:
    """A demo region by its path, e.g. ``demo_region(s, "上海", "徐汇区")``."""
    levels = (RegionLevel.city, RegionLevel.district, RegionLevel.circle)
    region = None
    for name, level in zip(names, levels):
        region, _ = get_or_create_region(session, name, level, region)
    assert region is not None
    return region


# --------------------------------------------------------------------------- accounts and stores


class _Accounts:
    """Creates demo users; the (deliberately slow) password hash is computed once per seed,
    and only if some account is actually missing."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._hash: str | None = None
        self.created = 0

    def get(self, username: str) -> User | None:
        return find_user(self.session, username)

    def ensure(self, username: str, role: Role, display_name: str, **fields) -> User:
        user = self.get(username)
        if user is not None:
            return user
        if self._hash is None:

            self._hash = hash_password(DEMO_PASSWORD)
        user = User(username=username, password_hash=self._hash, role=role, display_name=display_name, **fields)
        self.session.add(user)
        self.session.flush()
        self.created += 1
        return user


def demo_credit_code(n: int) -> str:
    """A checksum-valid unified social credit code, the same one for demo merchant ``n``."""
    first17 = f"91310104LL{n:07d}"
    return first17 + credit_code_check_char(first17)


def seed_restaurants(session: Session) -> list[str]:
    """Accounts, merchants, approved stores, welcome text and coupon templates (no WeCom)."""
    circle = demo_region(session, DEMO_CITY, DEMO_DISTRICT, DEMO_CIRCLE)
    district = demo_region(session, DEMO_CITY, DEMO_DISTRICT)
    accounts = _Accounts(session)
    admin = accounts.ensure(DEMO_ADMIN, Role.admin, "演示管理员")
    manager = accounts.get(DEMO_MANAGER)
    if manager is None:
        manager = accounts.ensure(DEMO_MANAGER, Role.manager, f"{DEMO_DISTRICT}经理")
        manager.regions = [district]

    new_stores = new_templates = 0
    first_store: Store | None = None
    for n, spec in enumerate(DEMO_STORES, start=1):
        owner = accounts.ensure(spec.owner, Role.owner, f"{spec.store}老板")
        merchant = session.scalar(select(Merchant).where(Merchant.credit_code == demo_credit_code(n)))
        fresh = False
        if merchant is None:
            if owner.role != Role.owner or owner.merchant_id is not None:
                continue  # the name was taken by hand: leave that account alone
            merchant = services.enrol_merchant(
                session, owner, name=spec.merchant, credit_code=demo_credit_code(n),
                contact_mobile=f"1391230{n:04d}", store=_store_input(spec, circle.id),
            )
            fresh = True
        store = session.scalar(select(Store).where(Store.merchant_id == merchant.id, Store.name == spec.store))
        if store is None:
            continue  # the owner renamed the demo store: their edit stands
        if fresh:
            # Enrolled by this very seed: approve it and write its welcome text.
            services.review_store(session, admin, store.id, approve=True)
            store.welcome_text = spec.welcome
            new_stores += 1
        new_templates += _seed_templates(session, merchant, store, spec)
        first_store = first_store or store

    if first_store is not None:
        accounts.ensure(
            DEMO_CASHIER, Role.cashier, "收银员小周", merchant_id=first_store.merchant_id, store_id=first_store.id
        )
    return [
        f"demo accounts: {accounts.created} new (password {DEMO_PASSWORD})",
        f"demo stores: {new_stores} new of {len(DEMO_STORES)} in {DEMO_CIRCLE}",
        f"coupon templates: {new_templates} new",
    ]


def _store_input(spec: DemoStore, circle_id: int):
    return StoreInput(
        name=spec.store, address=spec.address, circle_id=circle_id, cuisines=list(spec.cuisines),
        avg_spend_fen=spec.avg_spend_yuan * 100, opening_hours=spec.hours,
    )


def _seed_templates(session: Session, merchant: Merchant, store: Store, spec: DemoStore) -> int:
    """One template of each kind; the voucher becomes the store's welcome coupon when it is
    created (an owner's later choice is not overwritten)."""

    minimum, off = spec.amount_off
    percent, cap = spec.percent_off
    fold = f"{percent // 10}" if percent % 10 == 0 else f"{percent / 10:g}"
    wanted = [
        TemplateSpec(
            name=f"新客{spec.voucher_yuan}元代金券", kind=CouponKind.voucher, value=spec.voucher_yuan * 100,
            valid_days=30, status=TemplateStatus.active, description="添加店长企业微信即送，每人限领 1 张。",
        ),
        TemplateSpec(
            name=f"满{minimum}减{off}", kind=CouponKind.amount_off, value=off * 100, min_spend_fen=minimum * 100,
            valid_days=30, total_stock=500, status=TemplateStatus.active, description="堂食可用，不与其他优惠同享。",
        ),
        TemplateSpec(
            name=f"工作日午市{fold}折", kind=CouponKind.percent_off, value=percent, cap_fen=cap * 100,
            valid_days=14, weekdays_mask=0b0011111, hours_start=11 * 60, hours_end=14 * 60,
            status=TemplateStatus.active, description=f"周一至周五 11:00-14:00，最高减 {cap} 元。",
        ),
    ]
    existing = {t.name for t in session.scalars(select(CouponTemplate).where(CouponTemplate.merchant_id == merchant.id))}
    created = 0
    for template_spec in wanted:
        if template_spec.name in existing:
            continue
        template = create_template(session, merchant.id, template_spec)
        created += 1
        if template.kind == CouponKind.voucher and store.welcome_template_id is None:
            store.welcome_template_id = template.id
    return created


# --------------------------------------------------------------------------- WeCom: members, staff, channels


def sync_members(session: Session, wecom) -> tuple[int, int]:
    """The staff page's member sync (``merchants.services``); returns (new, active) counts."""
    known = set(session.scalars(select(Member.userid)))
    members = services.upsert_members(session, *services.fetch_corp_members(wecom))
    return len({m.userid for m in members} - known), len(members)


def _demo_stores(session: Session) -> list[tuple[DemoStore, Store]]:
    by_name = {s.store: s for s in DEMO_STORES}
    circle = demo_region(session, DEMO_CITY, DEMO_DISTRICT, DEMO_CIRCLE)
    stmt = (
        select(Store)
        .where(Store.circle_id == circle.id, Store.name.in_(list(by_name)))
        .options(selectinload(Store.staff))
        .order_by(Store.id)
    )
    return [(by_name[s.name], s) for s in session.scalars(stmt)]


def seed_channels(session: Session, wecom) -> list[str]:
    """Serving staff for demo stores that have none, every missing demo channel code, and a
    new contact way for any demo code WeCom no longer knows (a reset simulator)."""

    staffed = created = repaired = 0
    problems: list[str] = []
    for spec, store in _demo_stores(session):
        if store.status != ReviewStatus.approved:
            continue
        _grant_demo_staff(session, store, spec)
        if not store.staff:
            choices = [services.StaffChoice(u, backup, cap) for u, backup, cap in spec.staff]
            try:
                with session.begin_nested():
                    services.set_store_staff(session, store, choices)
            except services.ServiceError as exc:
                problems.append(f"{store.name}: {exc.message}")
                continue
            staffed += 1
        existing = {
            c.name: c for c in session.scalars(select(Channel).where(Channel.store_id == store.id))
        }
        for name, kind in spec.channels:
            channel = existing.get(name)
            try:
                with session.begin_nested():
                    if channel is None:
                        create_channel(session, wecom, store, name=name, kind=kind)
                        created += 1
                    elif channel.active and channel.config_id and _contact_way_missing(wecom, channel.config_id):
                        add_contact_way(wecom, store, channel)  # same state, new config_id and QR
                        repaired += 1
            except ChannelError as exc:
                problems.append(f"{store.name}·{name}: {exc}")
    lines = [f"channels: {staffed} stores staffed, {created} codes created, {repaired} contact ways re-created"]
    lines += [f"  skipped {p}" for p in problems]
    return lines


def _grant_demo_staff(session: Session, store: Store, spec: DemoStore) -> None:
    """Each demo member belongs to the merchants whose stores they serve (idempotent; members
    not in the synced corp are left to ``set_store_staff``'s complaint)."""
    userids = [u for u, _backup, _cap in spec.staff]
    found = list(session.scalars(select(Member).where(Member.userid.in_(userids), Member.active.is_(True))))
    for member in found:
        services.grant_member(session, store.merchant_id, member.id)


def _contact_way_missing(wecom, config_id: str) -> bool:
    try:
        wecom.contact_way.get(config_id)
    except WeComError as exc:
        if exc.errcode == 41044:  # invalid config_id: WeCom (the simulator) forgot it
            return True
        raise
    return False


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
