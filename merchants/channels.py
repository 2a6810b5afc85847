"""Channel codes (渠道活码): one WeCom "contact me" QR per store and placement.

A channel is a contact way (``type`` 2 over the store's serving members, ``scene`` 2) whose
``state`` names the store and channel, so every add event tells us where the diner scanned.
The QR never changes once printed: staff changes, the daily add cap and opening hours only
ever *update* the contact way under the same ``config_id``.
"""
from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from flask_babel import lazy_gettext as _
from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from core.db import Base, utcnow
from merchants.models import Member, ReviewStatus, Store, StoreMember

# Stores live in mainland China; "today" for the daily cap and opening hours is local.
LOCAL_TZ = ZoneInfo("Asia/Shanghai")

# kind code -> Chinese label (the poster templates and the form use these).
CHANNEL_KINDS = {  # kind -> label (lazy: rendered in the reader's language)
    "door": _("门口海报"),
    "table": _("桌贴"),
    "receipt": _("小票"),
    "flyer": _("传单"),
    "other": _("其他"),
}

STATE_MAX = 30  # WeCom's limit on contact-way ``state``
WELCOME_TEXT_MAX_BYTES = 4000  # WeCom's limit on a welcome message's text content


class Channel(Base):
    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(30))
    kind: Mapped[str] = mapped_column(String(16), default="other")
    # Set once WeCom has created the contact way; NULL only inside the creating transaction.
    config_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    qr_code: Mapped[str] = mapped_column(String(512), default="")
    state: Mapped[str | None] = mapped_column(String(STATE_MAX), unique=True)
    # True: friend requests are auto-accepted only within the store's opening hours.
    auto_accept_hours_only: Mapped[bool] = mapped_column(default=False)
    # What we last told WeCom, so jobs call update_contact_way only on a change.
    users: Mapped[list[str]] = mapped_column(JSON, default=list)
    skip_verify: Mapped[bool] = mapped_column(default=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    store: Mapped[Store] = relationship()

    @property
    def kind_label(self) -> str:
        return str(CHANNEL_KINDS.get(self.kind, self.kind))


class ChannelAdd(Base):
    """A scan that became a contact: one row per channel and diner, from the add event."""

    __tablename__ = "channel_adds"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    external_userid: Mapped[str] = mapped_column(String(64))
    member_userid: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("channel_id", "external_userid"),
        Index("ix_channel_adds_member_day", "member_userid", "added_at"),
    )


class ChannelError(Exception):
    """A rule the merchant can fix; the message is plain Chinese for a flash."""


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


# --- time helpers ----------------------------------------------------------------------

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _hm(text: str) -> time:
    h, m = text.split(":")
    h, m = int(h), int(m)
    return time.max if (h, m) == (24, 0) else time(h, m)


def is_open(opening_hours: dict | None, now: datetime) -> bool:
    """Whether ``now`` falls in the store's hours (empty hours = always open).

    Ranges such as ["17:00", "02:00"] run past midnight: the early-morning part belongs to
    the previous day's entry.
    """
    if not opening_hours:
        return True
    local = now.astimezone(LOCAL_TZ)
    t = local.time()
    today = _DAYS[local.weekday()]
    yesterday = _DAYS[(local.weekday() - 1) % 7]
    for start, end in opening_hours.get(today, []):
        s, e = _hm(start), _hm(end)
        if (s <= t < e) if s < e else (t >= s):
            return True
    for start, end in opening_hours.get(yesterday, []):
        s, e = _hm(start), _hm(end)
        if e < s and t < e:
            return True
    return False


def local_day_bounds(day: date) -> tuple[datetime, datetime]:
    """A local calendar day as UTC bounds (SQLite compares stored UTC text, so bind UTC)."""
    start = datetime.combine(day, time.min, tzinfo=LOCAL_TZ)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=LOCAL_TZ)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def local_today(now: datetime | None = None) -> date:
    return (now or utcnow()).astimezone(LOCAL_TZ).date()


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


def get_channel(session: Session, store_id: int, channel_id: int) -> Channel | None:
    """By id *and* store, so a URL with another store's channel finds nothing."""
    return session.scalar(select(Channel).where(Channel.id == channel_id, Channel.store_id == store_id))


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
    if parsed is None:
        return False
    store_id, channel_id = parsed
    channel = session.get(Channel, channel_id)
    if channel is None or channel.store_id != store_id:
        return False
    values = dict(channel_id=channel_id, external_userid=external_userid, member_userid=member_userid, added_at=at)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - we run on these two
        raise RuntimeError(f"unsupported database {dialect}")
    stmt = (
        insert(ChannelAdd)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["channel_id", "external_userid"])
        .returning(ChannelAdd.id)
    )
    return session.execute(stmt).scalar() is not None


# --- welcome settings ---------------------------------------------------------------------


def merchant_templates(session: Session, merchant_id: int) -> list:
    from coupons.models import CouponTemplate

    stmt = select(CouponTemplate).where(CouponTemplate.merchant_id == merchant_id).order_by(CouponTemplate.id)
    return list(session.scalars(stmt))


def update_welcome(session: Session, store: Store, *, text: str, template_id: int | None) -> None:
    """Welcome text (WeCom caps it at 4000 bytes) and the coupon handed to new contacts."""
    from coupons.models import CouponTemplate

    text = (text or "").strip()
    if len(text.encode("utf-8")) > WELCOME_TEXT_MAX_BYTES:
        raise ChannelError(_("欢迎语太长：企业微信最多 4000 字节（约 1300 个汉字）。"))
    if template_id is not None:
        template = session.get(CouponTemplate, template_id)
        if template is None or template.merchant_id != store.merchant_id:
            raise ChannelError(_("请选择本商户的优惠券模板。"))
    store.welcome_text = text
    store.welcome_template_id = template_id
