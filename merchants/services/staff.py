"""A store's people: the WeCom members who serve it (synced from the corp's address book) and
the cashier accounts at its till."""
from __future__ import annotations

from dataclasses import dataclass

from flask_babel import get_locale, gettext
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from accounts.models import Role, User
from accounts.services import AccountError, create_user
from core.db import utcnow
from core.errors import Conflict, NotFound
from merchants.errors import ServiceError
from merchants.models import Member, MemberGrant, Merchant, Store, StoreMember
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


# --- grants: which corp members belong to which merchant --------------------------------


def granted_member_ids(session: Session, merchant_id: int):
    """``select(MemberGrant.member_id)`` of the members granted to the merchant."""
    return select(MemberGrant.member_id).where(MemberGrant.merchant_id == merchant_id)


def granted_members(session: Session, merchant_id: int, *, active_only: bool = True) -> list[Member]:
    """The corp members granted to the merchant (the only ones its staff page offers)."""
    stmt = select(Member).where(Member.id.in_(granted_member_ids(session, merchant_id)))
    if active_only:
        stmt = stmt.where(Member.active.is_(True))
    return list(session.scalars(stmt.order_by(Member.name, Member.userid)))


def _allowed_member_ids(session: Session, store: Store):
    """Who may serve ``store``: members granted to its merchant, and those serving it already."""
    return granted_member_ids(session, store.merchant_id).union(
        select(StoreMember.member_id).where(StoreMember.store_id == store.id)
    )


def staff_candidates(session: Session, store: Store) -> list[Member]:
    """The members the staff page offers for ``store``: active, granted to its merchant (or
    already serving it). Other merchants' members never appear."""
    stmt = select(Member).where(Member.active.is_(True), Member.id.in_(_allowed_member_ids(session, store)))
    return list(session.scalars(stmt.order_by(Member.name, Member.userid)))


def member_merchant_ids(session: Session, member_id: int) -> set[int]:
    """Every merchant the member works for: granted to it, or serving one of its stores."""
    granted = set(session.scalars(select(MemberGrant.merchant_id).where(MemberGrant.member_id == member_id)))
    serving = set(
        session.scalars(
            select(Store.merchant_id).join(StoreMember, StoreMember.store_id == Store.id).where(StoreMember.member_id == member_id)
        )
    )
    return granted | serving


def grant_member(session: Session, merchant_id: int, member_id: int, granted_by: User | None = None) -> MemberGrant:
    """Grant a corp member to a merchant (idempotent: an existing grant is returned)."""
    if session.get(Merchant, merchant_id) is None:
        raise NotFound(_l("没有这个商户。"), "merchant_id")
    member = session.get(Member, member_id)
    if member is None or not member.active:
        raise NotFound(_l("该成员不在企业微信通讯录中。"), "member_id")
    grant = session.scalar(
        select(MemberGrant).where(MemberGrant.merchant_id == merchant_id, MemberGrant.member_id == member_id)
    )
    if grant is None:
        grant = MemberGrant(
            merchant_id=merchant_id, member_id=member_id, granted_by_id=granted_by.id if granted_by else None
        )
        session.add(grant)
        session.flush()
    return grant


def revoke_grant(session: Session, merchant_id: int, member_id: int) -> None:
    """Take a member back from a merchant; refused while the member still serves one of its
    stores (remove them on the staff page, or hand their customers over, first)."""
    grant = session.scalar(
        select(MemberGrant).where(MemberGrant.merchant_id == merchant_id, MemberGrant.member_id == member_id)
    )
    if grant is None:
        raise NotFound()
    serving = session.scalar(
        select(StoreMember.id)
        .join(Store, Store.id == StoreMember.store_id)
        .where(Store.merchant_id == merchant_id, StoreMember.member_id == member_id)
        .limit(1)
    )
    if serving is not None:
        raise Conflict(_l("该成员仍在本商户的门店接待顾客，请先在门店的“接待成员”中移除。"))
    session.delete(grant)
    session.flush()


def list_grants(session: Session) -> list[MemberGrant]:
    """Every grant, for the operator's page."""
    return list(
        session.scalars(
            select(MemberGrant)
            .join(Merchant, Merchant.id == MemberGrant.merchant_id)
            .join(Member, Member.id == MemberGrant.member_id)
            .options(selectinload(MemberGrant.member), selectinload(MemberGrant.merchant))
            .order_by(Merchant.name, Merchant.id, Member.name, Member.userid)
        )
    )


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
    members = {
        m.userid: m
        for m in session.scalars(
            select(Member).where(
                Member.userid.in_(list(by_userid)), Member.id.in_(_allowed_member_ids(session, store))
            )
        )
    } if by_userid else {}
    # Members granted elsewhere (or to no one) read exactly like unknown ones: nothing here
    # tells the owner whether, or to whom, another merchant's member belongs.
    unknown = [u for u in by_userid if u not in members or not members[u].active]
    if unknown:
        raise ServiceError(
            _l("以下成员不在企业微信通讯录中或未授权给本商户：%(u)s", u=", ".join(unknown)), "members"
        )
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
