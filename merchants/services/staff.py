"""A store's people: the WeCom members who serve it (synced from the corp's address book) and
the cashier accounts at its till."""
from __future__ import annotations

from dataclasses import dataclass

from flask_babel import get_locale, gettext
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.models import Role, User
from accounts.services import AccountError, create_user
from core.db import utcnow
from merchants.errors import ServiceError
from merchants.models import Member, Store, StoreMember
from merchants.services.tenancy import get_cashier


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
    lang = "en" if str(get_locale() or "zh") == "en" else "zh"
    hint = exc.hint(lang) if hasattr(exc, "hint") else None
    return gettext(
        "暂时无法从企业微信读取成员：%(hint)s（错误码 %(code)s）",
        hint=hint or gettext("未知错误"),
        code=getattr(exc, "errcode", "?"),
    )


# --- cashiers ---------------------------------------------------------------------------


def add_cashier(session: Session, store: Store, *, username: str, password: str, display_name: str = "") -> User:
    """A portal user for the till: one store, the redemption desk only, no WeCom account."""
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
    user = get_cashier(session, store, user_id)
    user.active = active
    session.flush()
    return user
