"""Channel codes (渠道活码): one WeCom "contact me" QR per store and placement.

A channel is a contact way (``type`` 2 over the store's serving members, ``scene`` 2) whose
``state`` names the store and channel, so every add event tells us where the diner scanned.
The QR never changes once printed: staff changes, the daily add cap and opening hours only
ever *update* the contact way under the same ``config_id``.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from flask_babel import get_locale, gettext
from flask_babel import lazy_gettext as _
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.bounds import is_id
from core.db import utcnow
from core.localtime import local, local_midnight
from merchants.errors import ChannelError
from merchants.models import CHANNEL_KINDS, STATE_MAX, Channel, ChannelAdd, Member, ReviewStatus, Store, StoreMember
from merchants.services.hours import is_open
from wecom.client import WeComError

# The add event's idempotent insert ("count once") is dialect-specific.
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def wecom_error_message(exc: WeComError) -> str:
    """A failed WeCom call in plain words for the channel pages' flash (code plus hint)."""
    lang = "en" if str(get_locale()).startswith("en") else "zh"
    hint = exc.hint(lang)
    base = gettext("企业微信返回错误（%(code)s）", code=exc.errcode)
    return f"{base}：{hint}" if hint else f"{base}：{exc.errmsg}"


# --- state -----------------------------------------------------------------------------

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
# "s<store>-c<channel>" in canonical base36 (no leading zeros), e.g. "s2n-c1b".
_STATE_RE = re.compile(r"^s([1-9a-z][0-9a-z]*)-c([1-9a-z][0-9a-z]*)$")


def _b36(n: int) -> str:
    if n <= 0:
        raise ValueError("ids are positive")
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = _B36[r] + out
    return out


def make_state(store_id: int, channel_id: int) -> str:
    """Compact and unambiguous (base36 uses 'c', hence the '-'); ≤ 30 chars for any real id."""
    state = f"s{_b36(store_id)}-c{_b36(channel_id)}"
    if len(state) > STATE_MAX:
        raise ValueError("ids too large for a contact-way state")
    return state


def parse_state(state: str | None) -> tuple[int, int] | None:
    """(store_id, channel_id) for our states; None for anything else (other codes, junk)."""
    if not state or len(state) > STATE_MAX:
        return None
    m = _STATE_RE.match(state)
    if not m:
        return None
    return int(m.group(1), 36), int(m.group(2), 36)


# --- local days --------------------------------------------------------------------------


def local_day_bounds(day: date) -> tuple[datetime, datetime]:
    """A local calendar day as UTC bounds (SQLite compares stored UTC text, so bind UTC)."""
    return local_midnight(day), local_midnight(day + timedelta(days=1))


def local_today(now: datetime | None = None) -> date:
    return local(now or utcnow()).date()


# --- members ----------------------------------------------------------------------------


def _staff(session: Session, store_id: int) -> list[StoreMember]:
    stmt = (
        select(StoreMember)
        .join(Member, StoreMember.member_id == Member.id)
        .where(StoreMember.store_id == store_id, StoreMember.leaving.is_(False), Member.active.is_(True))
        .order_by(StoreMember.backup, StoreMember.id)
    )
    return list(session.scalars(stmt))


def adds_today(session: Session, store_id: int, day: date) -> dict[str, int]:
    """Contacts each member gained today through this store's channels (for the daily cap)."""
    start, end = local_day_bounds(day)
    stmt = (
        select(ChannelAdd.member_userid, func.count())
        .join(Channel, ChannelAdd.channel_id == Channel.id)
        .where(Channel.store_id == store_id, ChannelAdd.added_at >= start, ChannelAdd.added_at < end)
        .group_by(ChannelAdd.member_userid)
    )
    return {userid: n for userid, n in session.execute(stmt)}


def serving_userids(session: Session, store_id: int, day: date, allowed: set[str] | None = None) -> list[str]:
    """Who the store's codes rotate over today.

    Serving (non-backup) members under their daily cap; when any of them is capped (or none
    exist), backups under their cap take the overflow. A code must always reach someone, so
    if everybody is capped the serving members stay on it.
    """
    staff = [sm for sm in _staff(session, store_id) if allowed is None or sm.member.userid in allowed]
    counts = adds_today(session, store_id, day)

    def under_cap(sm: StoreMember) -> bool:
        return sm.daily_add_cap is None or counts.get(sm.member.userid, 0) < sm.daily_add_cap

    primaries = [sm for sm in staff if not sm.backup]
    backups = [sm for sm in staff if sm.backup]
    chosen = [sm for sm in primaries if under_cap(sm)]
    if len(chosen) < len(primaries) or not primaries:
        chosen += [sm for sm in backups if under_cap(sm)]
    if not chosen:
        chosen = primaries or backups
    return [sm.member.userid for sm in chosen]


def check_members_can_hold_customers(session: Session, client, store_id: int) -> list[str]:
    """Ask WeCom who may hold customers; raise in plain words naming anyone who may not.

    Also refreshes ``Member.can_hold_customers`` for the store's staff. Returns the allowed
    userids.
    """
    allowed = set(client.customers.follow_user_list())
    staff = _staff(session, store_id)
    if not staff:
        raise ChannelError(_("这家门店还没有接待顾客的企业微信成员：请先在「店员」里添加至少一位成员，再生成渠道码。"))
    blocked = []
    for sm in staff:
        sm.member.can_hold_customers = sm.member.userid in allowed
        if not sm.member.can_hold_customers:
            blocked.append(sm.member)
    if blocked:
        who = "、".join(f"{m.name}（{m.userid}）" if m.name and m.name != m.userid else m.userid for m in blocked)
        raise ChannelError(
            _(
                "成员 %(who)s 还不能添加客户，渠道码没有生成。请企业微信管理员在管理后台「客户与上下游 → "
                "客户联系 → 权限配置」里把他们加入可使用客户联系的成员范围，或在「店员」里移除他们，然后再试。",
                who=who,
            )
        )
    return sorted(allowed)


# --- channels ----------------------------------------------------------------------------


def create_channel(
    session: Session,
    client,
    store: Store,
    *,
    name: str,
    kind: str = "other",
    auto_accept_hours_only: bool = False,
    now: datetime | None = None,
) -> Channel:
    """Create the row and its WeCom contact way. WeComError propagates (the caller rolls back)."""
    now = now or utcnow()
    name = (name or "").strip()
    if store.status != ReviewStatus.approved:
        raise ChannelError(_("门店通过审核后才能生成渠道码。"))
    if not name or len(name) > 30:
        raise ChannelError(_("渠道名称需要 1 到 30 个字。"))
    if kind not in CHANNEL_KINDS:
        raise ChannelError(_("未知的渠道类型。"))
    allowed = set(check_members_can_hold_customers(session, client, store.id))
    users = serving_userids(session, store.id, local_today(now), allowed)

    channel = Channel(
        store_id=store.id, name=name, kind=kind, auto_accept_hours_only=auto_accept_hours_only
    )
    session.add(channel)
    session.flush()
    channel.state = make_state(store.id, channel.id)
    channel.skip_verify = is_open(store.opening_hours, now) if auto_accept_hours_only else True
    channel.users = users
    add_contact_way(client, store, channel)
    session.flush()
    return channel


def add_contact_way(client, store: Store, channel: Channel) -> None:
    """Create the channel's contact way from what the row says (members, state, auto-accept)
    and keep its ``config_id`` and QR; also re-creates one WeCom has lost (same state, so
    scans still count for this channel)."""
    result = client.contact_way.add(
        type=2,
        scene=2,
        user=list(channel.users or []),
        state=channel.state,
        remark=f"{store.name}·{channel.name}"[:30],
        skip_verify=channel.skip_verify,
    )
    channel.config_id = result["config_id"]
    channel.qr_code = result["qr_code"]


def store_channels(session: Session, store_id: int, *, active_only: bool = True) -> list[Channel]:
    stmt = select(Channel).where(Channel.store_id == store_id).order_by(Channel.id)
    if active_only:
        stmt = stmt.where(Channel.active.is_(True))
    return list(session.scalars(stmt))


def channel_counts(session: Session, store_id: int) -> dict[int, int]:
    """Scans that became contacts, per channel of the store."""
    stmt = (
        select(ChannelAdd.channel_id, func.count())
        .join(Channel, ChannelAdd.channel_id == Channel.id)
        .where(Channel.store_id == store_id)
        .group_by(ChannelAdd.channel_id)
    )
    return {cid: n for cid, n in session.execute(stmt)}


def deactivate_channel(session: Session, client, channel: Channel) -> None:
    """Retire a code: WeCom deletes the contact way, we keep the row and its counts."""
    if channel.config_id:
        client.contact_way.delete(channel.config_id)
    channel.active = False


def rebalance_channels(session: Session, client, store_id: int, today: date, *, allowed: set[str] | None = None) -> int:
    """Point the store's codes at today's members (cap overflow, staff changes).

    Calls update_contact_way only for codes whose member set changes; returns how many.
    Members WeCom does not let hold customers are left out (pass ``allowed``; None = ask).
    """
    if allowed is None:
        allowed = set(client.customers.follow_user_list())
    users = serving_userids(session, store_id, today, allowed)
    if not users:
        return 0  # nobody can take customers: leave the codes as they are
    changed = 0
    for channel in store_channels(session, store_id):
        if channel.config_id and set(channel.users or []) != set(users):
            client.contact_way.update(channel.config_id, user=users)
            channel.users = users
            changed += 1
    return changed


def staff_changed(session: Session, client, store_id: int, today: date | None = None) -> int:
    """After the store's staff list changes: check the members, then update every code.

    Raises ChannelError (plain words) if a member cannot hold customers; the QR codes stay
    the same ``config_id`` so printed posters keep working.
    """
    allowed = set(check_members_can_hold_customers(session, client, store_id))
    return rebalance_channels(session, client, store_id, today or local_today(), allowed=allowed)


def apply_opening_hours(session: Session, client, now: datetime) -> int:
    """Auto-accept (``skip_verify``) only while the store is open, for codes that ask for it."""
    stmt = (
        select(Channel)
        .join(Store, Channel.store_id == Store.id)
        .where(
            Channel.active.is_(True),
            Channel.auto_accept_hours_only.is_(True),
            Channel.config_id.is_not(None),
        )
        .order_by(Channel.id)
    )
    changed = 0
    for channel in session.scalars(stmt):
        want = is_open(channel.store.opening_hours, now)
        if channel.skip_verify != want:
            client.contact_way.update(channel.config_id, skip_verify=want)
            channel.skip_verify = want
            changed += 1
    return changed


def record_add(session: Session, state: str | None, external_userid: str, member_userid: str, at: datetime) -> bool:
    """Count a scan that became a contact (called from the add_external_contact handler).

    Idempotent per channel and diner (the unique constraint decides, so concurrent event
    deliveries count once). Returns True when a new row was written.
    """
    parsed = parse_state(state)
    if parsed is None or not all(map(is_id, parsed)):  # a crafted state naming no row we can hold
        return False
    store_id, channel_id = parsed
    channel = session.get(Channel, channel_id)
    if channel is None or channel.store_id != store_id:
        return False
    values = dict(channel_id=channel_id, external_userid=external_userid, member_userid=member_userid, added_at=at)
    dialect = session.get_bind().dialect.name
    insert = _INSERTS.get(dialect)
    if insert is None:  # pragma: no cover - we run on these two
        raise RuntimeError(f"unsupported database {dialect}")
    stmt = (
        insert(ChannelAdd)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["channel_id", "external_userid"])
        .returning(ChannelAdd.id)
    )
    return session.execute(stmt).scalar() is not None
