"""Merchant rules: regions, enrolment and review, tenant-scoped lookups, serving staff and
cashiers. Services take a session and never commit; views own the transaction.

Tenant isolation lives here: every lookup of merchant data goes through ``get_store_for`` /
``stores_visible_to`` so no view can forget the "and it is yours" part.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload
from werkzeug.exceptions import NotFound

from accounts.models import Role, User
from core.db import utcnow
from merchants.models import (
    CUISINES,
    Member,
    Merchant,
    Region,
    RegionLevel,
    ReviewStatus,
    Store,
    StoreMember,
)

LOCAL_TZ = ZoneInfo("Asia/Shanghai")



class ServiceError(ValueError):
    """A rule the user broke; ``field`` names the form input to show ``message`` on."""

    def __init__(self, message, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


# --------------------------------------------------------------------------- validation

# GB 32100-2015: 18 characters from 31 symbols (no I, O, Z, S, V); weights 3^i mod 31.
CREDIT_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
CREDIT_CODE_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
_CREDIT_CODE_RE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")
MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")


def credit_code_check_char(first17: str) -> str:
    """The 18th character of a unified social credit code for its first 17."""
    total = sum(CREDIT_CODE_CHARS.index(c) * w for c, w in zip(first17, CREDIT_CODE_WEIGHTS))
    return CREDIT_CODE_CHARS[(31 - total % 31) % 31]


def validate_credit_code(code: str) -> str:
    """The normalised code (upper case, no spaces), or ServiceError if its form or check
    character is wrong."""
    normalised = re.sub(r"\s+", "", code or "").upper()
    if not _CREDIT_CODE_RE.match(normalised):
        raise ServiceError(_l("统一社会信用代码应为 18 位数字或大写字母（不含 I、O、Z、S、V）。"), "credit_code")
    if credit_code_check_char(normalised[:17]) != normalised[17]:
        raise ServiceError(_l("统一社会信用代码校验位不正确，请核对。"), "credit_code")
    return normalised


def validate_mobile(mobile: str) -> str:
    """A mainland mobile number (11 digits, 13x–19x); spaces, dashes and +86 are dropped."""
    digits = re.sub(r"[\s-]", "", mobile or "")
    if digits.startswith("+86"):
        digits = digits[3:]
    elif len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    if not MOBILE_RE.match(digits):
        raise ServiceError(_l("请输入 11 位中国大陆手机号。"), "contact_mobile")
    return digits


def yuan_to_fen(text: str | int | Decimal, field_name: str = "avg_spend") -> int:
    """Parse a yuan amount ("58", "58.5") into integer fen without ever touching floats."""
    try:
        value = Decimal(str(text).strip().replace("¥", "").replace("￥", ""))
    except InvalidOperation:
        raise ServiceError(_l("请输入金额，例如 58 或 58.50。"), field_name) from None
    if not value.is_finite() or value < 0:
        raise ServiceError(_l("金额不能为负数。"), field_name)
    if value != value.quantize(Decimal("0.01")):
        raise ServiceError(_l("金额最多两位小数。"), field_name)
    if value > 1_000_000:
        raise ServiceError(_l("金额过大。"), field_name)
    return int(value * 100)


def fen_to_yuan(fen: int | None) -> str:
    fen = int(fen or 0)
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE_RE = re.compile(r"^(\d{1,2}):(\d{2})\s*[-–~至]\s*(\d{1,2}):(\d{2})$")


def _minutes(hour: str, minute: str) -> int:
    h, m = int(hour), int(minute)
    if m > 59 or h > 24 or (h == 24 and m):
        raise ValueError
    return h * 60 + m


def parse_hour_ranges(text: str) -> list[list[str]]:
    """"11:00-14:00,17:00-21:30" → [["11:00","14:00"],["17:00","21:30"]] (sorted, no
    overlaps, each start before its end; "24:00" closes at midnight)."""
    spans: list[tuple[int, int]] = []
    for part in re.split(r"[,，;；\s]+", (text or "").strip()):
        if not part:
            continue
        match = _RANGE_RE.match(part)
        try:
            if not match:
                raise ValueError
            start, end = _minutes(*match.group(1, 2)), _minutes(*match.group(3, 4))
        except ValueError:
            raise ServiceError(_l("营业时间格式应为 11:00-14:00,17:00-21:30。"), "hours") from None
        if start >= end:
            raise ServiceError(_l("营业时间的开始须早于结束（跨午夜请拆成两段）。"), "hours")
        spans.append((start, end))
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:]):
        if start < end:
            raise ServiceError(_l("营业时间段不能重叠。"), "hours")
    fmt = lambda m: f"{m // 60:02d}:{m % 60:02d}"  # noqa: E731
    return [[fmt(s), fmt(e)] for s, e in spans]


def build_opening_hours(groups: list[tuple[list[str], str]]) -> dict[str, list[list[str]]]:
    """Weekday groups with one range text each → ``{"mon": [["11:00","14:00"], ...], ...}``.
    A day named twice is refused; no groups at all means "always open" (``{}``)."""
    hours: dict[str, list[list[str]]] = {}
    for days, ranges_text in groups:
        days = [d for d in days if d]
        if not days and not (ranges_text or "").strip():
            continue
        if not days:
            raise ServiceError(_l("请选择这段营业时间适用的星期。"), "hours")
        ranges = parse_hour_ranges(ranges_text)
        if not ranges:
            raise ServiceError(_l("请填写营业时间。"), "hours")
        for day in days:
            if day not in WEEKDAYS:
                raise ServiceError(_l("星期不正确。"), "hours")
            if day in hours:
                raise ServiceError(_l("同一天只能出现在一组营业时间里。"), "hours")
            hours[day] = ranges
    return {d: hours[d] for d in WEEKDAYS if d in hours}


def is_open_at(opening_hours: dict, when: datetime) -> bool:
    """Whether ``when`` (aware) falls in the store's opening hours (local time, Asia/Shanghai).
    Empty hours mean always open. One rule for the whole app: the channel codes' (which also
    knows ranges that run past midnight)."""
    from merchants.channels import is_open

    return is_open(opening_hours, when)


# --------------------------------------------------------------------------- regions

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


# --------------------------------------------------------------------------- tenant scoping


def _manager_circles(session: Session, user: User) -> set[int]:
    return circle_ids_within(session, [r.id for r in user.regions])


def stores_visible_to(session: Session, user: User):
    """A ``select(Store)`` limited to what ``user`` may see: admin all, manager the stores in
    their regions, owner their merchant's, cashier their one store."""
    stmt = select(Store)
    if user.role == Role.admin:
        return stmt
    if user.role == Role.manager:
        return stmt.where(Store.circle_id.in_(_manager_circles(session, user) or {-1}))
    if user.role == Role.owner:
        return stmt.where(Store.merchant_id == (user.merchant_id or -1))
    if user.role == Role.cashier:
        return stmt.where(Store.id == (user.store_id or -1), Store.merchant_id == (user.merchant_id or -1))
    return stmt.where(False)


def get_store_for(session: Session, user: User, store_id: int, *options) -> Store:
    """The store if ``user`` may see it, else 404 (never 403: other tenants' ids stay secret).
    ``options``: loader options for what the caller will show (see ``get_store_with_staff``)."""
    store = session.scalar(stores_visible_to(session, user).where(Store.id == store_id).options(*options))
    if store is None:
        raise NotFound()
    return store


def get_store_with_staff(session: Session, user: User, store_id: int) -> Store:
    """``get_store_for`` with the serving staff and their members loaded alongside: the store
    and staff pages list them, one query instead of one per member."""
    return get_store_for(session, user, store_id, selectinload(Store.staff).joinedload(StoreMember.member))


def get_merchant_for(session: Session, user: User) -> Merchant | None:
    """The signed-in owner's (or cashier's) merchant, None before enrolment."""
    if user.merchant_id is None or user.role not in (Role.owner, Role.cashier):
        return None
    return session.get(Merchant, user.merchant_id)


def store_is_approved(store: Store) -> bool:
    """Only approved stores get channel codes and coupons."""
    return store.status == ReviewStatus.approved


# --------------------------------------------------------------------------- enrolment


@dataclass
class StoreInput:
    name: str
    address: str
    circle_id: int
    cuisines: list[str]
    avg_spend_fen: int
    opening_hours: dict = field(default_factory=dict)


def _check_store_input(session: Session, data: StoreInput) -> None:
    if not (data.name or "").strip() or len(data.name.strip()) > 100:
        raise ServiceError(_l("请填写门店名称（最多 100 字）。"), "store_name")
    if not (data.address or "").strip() or len(data.address.strip()) > 255:
        raise ServiceError(_l("请填写门店地址。"), "address")
    circle = session.get(Region, data.circle_id) if data.circle_id else None
    if circle is None or circle.level != RegionLevel.circle:
        raise ServiceError(_l("请选择门店所在商圈。"), "circle_id")
    if not data.cuisines:
        raise ServiceError(_l("请至少选择一个菜系。"), "cuisines")
    unknown = [c for c in data.cuisines if c not in CUISINES]
    if unknown:
        raise ServiceError(_l("未知菜系：%(c)s", c=", ".join(unknown)), "cuisines")
    if data.avg_spend_fen < 0:
        raise ServiceError(_l("金额不能为负数。"), "avg_spend")
    for day, ranges in (data.opening_hours or {}).items():
        if day not in WEEKDAYS or not isinstance(ranges, list):
            raise ServiceError(_l("营业时间格式不正确。"), "hours")


def add_store(session: Session, merchant: Merchant, data: StoreInput) -> Store:
    """A new store waits for review (pending)."""
    _check_store_input(session, data)
    store = Store(
        merchant_id=merchant.id,
        name=data.name.strip(),
        address=data.address.strip(),
        circle_id=data.circle_id,
        cuisines=[c for c in CUISINES if c in set(data.cuisines)],
        avg_spend_fen=data.avg_spend_fen,
        opening_hours=data.opening_hours or {},
        status=ReviewStatus.pending,
    )
    session.add(store)
    session.flush()
    return store


def update_store(session: Session, store: Store, data: StoreInput) -> Store:
    """Edit a store; a rejected store goes back to the review queue. Approved stores keep their
    approval unless the business circle changes (a different manager must look at it)."""
    _check_store_input(session, data)
    moved = data.circle_id != store.circle_id
    store.name = data.name.strip()
    store.address = data.address.strip()
    store.circle_id = data.circle_id
    store.cuisines = [c for c in CUISINES if c in set(data.cuisines)]
    store.avg_spend_fen = data.avg_spend_fen
    store.opening_hours = data.opening_hours or {}
    if store.status == ReviewStatus.rejected or (moved and store.status == ReviewStatus.approved):
        store.status = ReviewStatus.pending
        store.review_reason = None
        store.reviewed_at = None
    session.flush()
    return store


def enrol_merchant(
    session: Session, owner: User, *, name: str, credit_code: str, contact_mobile: str, store: StoreInput
) -> Merchant:
    """An owner submits their merchant and its first store; both wait for review."""
    if owner.role != Role.owner:
        raise ServiceError(_l("只有商户老板可以提交入驻。"))
    if owner.merchant_id is not None:
        raise ServiceError(_l("您已提交过商户资料。"))
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ServiceError(_l("请填写商户名称（最多 100 字）。"), "name")
    code = validate_credit_code(credit_code)
    mobile = validate_mobile(contact_mobile)
    if session.scalar(select(Merchant.id).where(Merchant.credit_code == code)) is not None:
        raise ServiceError(_l("该统一社会信用代码已入驻。"), "credit_code")
    _check_store_input(session, store)
    merchant = Merchant(name=name, credit_code=code, contact_mobile=mobile)
    session.add(merchant)
    session.flush()
    owner.merchant_id = merchant.id
    add_store(session, merchant, store)
    return merchant


def review_queue(session: Session, reviewer: User) -> list[Store]:
    """Pending stores the reviewer may decide on, oldest first."""
    if reviewer.role not in (Role.admin, Role.manager):
        return []
    stmt = (
        stores_visible_to(session, reviewer)
        .where(Store.status == ReviewStatus.pending)
        .options(selectinload(Store.merchant), with_region_path(Store.circle))
        .order_by(Store.created_at, Store.id)
    )
    return list(session.scalars(stmt))


def recent_reviews(session: Session, reviewer: User, limit: int = 20) -> list[Store]:
    if reviewer.role not in (Role.admin, Role.manager):
        return []
    stmt = (
        stores_visible_to(session, reviewer)
        .where(Store.status != ReviewStatus.pending)
        .order_by(Store.reviewed_at.desc(), Store.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def review_store(session: Session, reviewer: User, store_id: int, *, approve: bool, reason: str = "") -> Store:
    """Approve or reject a pending store; a rejection must say why (the owner reads it)."""
    if reviewer.role not in (Role.admin, Role.manager):
        raise NotFound()
    store = get_store_for(session, reviewer, store_id)
    if store.status != ReviewStatus.pending:
        raise ServiceError(_l("该门店已审核过。"))
    reason = (reason or "").strip()
    if not approve and not reason:
        raise ServiceError(_l("驳回时请填写原因。"), "reason")
    if len(reason) > 500:
        raise ServiceError(_l("原因最多 500 字。"), "reason")
    store.status = ReviewStatus.approved if approve else ReviewStatus.rejected
    store.review_reason = reason or None
    store.reviewed_at = utcnow()
    session.flush()
    return store


# --------------------------------------------------------------------------- serving staff


def fetch_corp_members(client) -> tuple[list[dict], set[str]]:
    """The corp's members and who may hold customers, straight from WeCom (raises WeComError)."""
    users = client.users.simplelist()
    holders = set(client.customers.follow_user_list())
    return users, holders


def upsert_members(session: Session, users: list[dict], holders: set[str]) -> list[Member]:
    """Mirror WeCom's member list into ``members``; members gone from WeCom become inactive."""
    existing = {m.userid: m for m in session.scalars(select(Member))}
    now = utcnow()
    seen = set()
    for entry in users:
        userid = str(entry.get("userid") or "")
        if not userid or userid in seen:
            continue
        seen.add(userid)
        member = existing.get(userid)
        if member is None:
            member = Member(userid=userid)
            session.add(member)
        member.name = str(entry.get("name") or userid)[:64]
        member.can_hold_customers = userid in holders
        member.active = True
        member.synced_at = now
    for userid, member in existing.items():
        if userid not in seen and member.active:
            member.active = False
            member.can_hold_customers = False
            member.synced_at = now
    session.flush()
    return sorted((m for m in session.scalars(select(Member).where(Member.active.is_(True)))), key=lambda m: (m.name, m.userid))


@dataclass
class StaffChoice:
    userid: str
    backup: bool = False
    daily_add_cap: int | None = None


def set_store_staff(session: Session, store: Store, choices: list[StaffChoice]) -> bool:
    """Replace the members serving ``store``; True when anything changed (channel codes then
    need ``update_contact_way``). Every member must be active and allowed to hold customers,
    and someone must serve first-hand (not only backups)."""
    by_userid = {c.userid: c for c in choices}
    members = {m.userid: m for m in session.scalars(select(Member).where(Member.userid.in_(list(by_userid))))} if by_userid else {}
    unknown = [u for u in by_userid if u not in members or not members[u].active]
    if unknown:
        raise ServiceError(_l("以下成员不在企业微信通讯录中：%(u)s", u=", ".join(unknown)), "members")
    cannot = [members[u].name or u for u in by_userid if not members[u].can_hold_customers]
    if cannot:
        raise ServiceError(
            _l("%(names)s 未开通“客户联系”功能，不能接待顾客。请在企业微信管理后台“客户联系 → 权限配置”中添加后再选择。",
               names="、".join(cannot)),
            "members",
        )
    if by_userid and all(c.backup for c in by_userid.values()):
        raise ServiceError(_l("至少需要一位非备用成员。"), "members")
    for c in by_userid.values():
        if c.daily_add_cap is not None and not (1 <= c.daily_add_cap <= 10000):
            raise ServiceError(_l("每日添加上限应在 1–10000 之间（留空表示不限）。"), "members")

    changed = False
    current = {sm.member.userid: sm for sm in store.staff}
    for userid, sm in current.items():
        if userid not in by_userid:
            store.staff.remove(sm)
            changed = True
    for userid, choice in by_userid.items():
        sm = current.get(userid)
        if sm is None:
            store.staff.append(StoreMember(member=members[userid], backup=choice.backup, daily_add_cap=choice.daily_add_cap))
            changed = True
        elif (sm.backup, sm.daily_add_cap) != (choice.backup, choice.daily_add_cap):
            sm.backup, sm.daily_add_cap = choice.backup, choice.daily_add_cap
            changed = True
    session.flush()
    return changed


def describe_wecom_error(exc) -> str:
    """Plain words for a failed WeCom call, for the owner reading the staff page."""
    from flask_babel import get_locale, gettext

    lang = "en" if str(get_locale() or "zh") == "en" else "zh"
    hint = exc.hint(lang) if hasattr(exc, "hint") else None
    return gettext(
        "暂时无法从企业微信读取成员：%(hint)s（错误码 %(code)s）",
        hint=hint or gettext("未知错误"),
        code=getattr(exc, "errcode", "?"),
    )


# --------------------------------------------------------------------------- cashiers


def add_cashier(session: Session, store: Store, *, username: str, password: str, display_name: str = "") -> User:
    """A portal user for the till: one store, the redemption desk only, no WeCom account."""
    from accounts.services import AccountError, create_user

    try:
        return create_user(
            session,
            username=username,
            password=password,
            role=Role.cashier,
            display_name=display_name,
            merchant_id=store.merchant_id,
            store_id=store.id,
        )
    except AccountError as exc:
        raise ServiceError(exc.message, exc.field) from None


def cashiers_of(session: Session, store: Store) -> list[User]:
    stmt = select(User).where(User.role == Role.cashier, User.store_id == store.id).order_by(User.username)
    return list(session.scalars(stmt))


def set_cashier_active(session: Session, store: Store, user_id: int, active: bool) -> User:
    user = session.scalar(
        select(User).where(User.id == user_id, User.role == Role.cashier, User.store_id == store.id)
    )
    if user is None:
        raise NotFound()
    user.active = active
    session.flush()
    return user
