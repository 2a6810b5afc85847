"""The simulated corp's state, on its own declarative base (not the app's Alembic history).

Times are float unix seconds from the simulator's clock (injectable for tests); WeCom's wire
format is unix seconds too, so nothing needs time zones except the quota calendar.
"""
from __future__ import annotations

from sqlalchemy import JSON, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class SimBase(DeclarativeBase):
    type_annotation_map = {dict: JSON, list: JSON, float: Float}


class Member(SimBase):
    """A corp member (staff). ``customer_contact`` = in get_follow_user_list."""

    __tablename__ = "sim_members"
    userid: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    position: Mapped[str] = mapped_column(String(64), default="")
    gender: Mapped[int] = mapped_column(default=0)
    mobile: Mapped[str] = mapped_column(String(20), default="")
    customer_contact: Mapped[bool] = mapped_column(default=True)
    resigned_at: Mapped[float | None]


class WechatUser(SimBase):
    """A simulated WeChat user (a diner); ``external_userid`` is stable within the corp."""

    __tablename__ = "sim_wechat_users"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    nickname: Mapped[str] = mapped_column(String(64))
    gender: Mapped[int] = mapped_column(default=0)
    unionid: Mapped[str] = mapped_column(String(64), unique=True)
    external_userid: Mapped[str] = mapped_column(String(64), unique=True)


class Token(SimBase):
    __tablename__ = "sim_tokens"
    token: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[float]
    expires_at: Mapped[float]


class ContactWay(SimBase):
    __tablename__ = "sim_contact_ways"
    config_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    type: Mapped[int]
    scene: Mapped[int]
    style: Mapped[int | None]
    remark: Mapped[str] = mapped_column(String(64), default="")
    skip_verify: Mapped[bool] = mapped_column(default=True)
    state: Mapped[str] = mapped_column(String(64), default="")
    users: Mapped[list] = mapped_column(default=list)
    party: Mapped[list] = mapped_column(default=list)
    is_temp: Mapped[bool] = mapped_column(default=False)
    expires_in: Mapped[int | None]
    chat_expires_in: Mapped[int | None]
    unionid: Mapped[str | None] = mapped_column(String(64))
    is_exclusive: Mapped[bool] = mapped_column(default=False)
    conclusions: Mapped[dict | None]
    # Set in the (simulated) admin console, not through the API: when present WeCom sends it
    # itself and the add event carries no WelcomeCode.
    welcome_text: Mapped[str | None] = mapped_column(Text)
    rotation: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[float]


class Follow(SimBase):
    """One member ↔ customer relationship. ``status``: active, customer_deleted
    (the customer deleted the member: one-way, API still answers) or member_deleted."""

    __tablename__ = "sim_follows"
    __table_args__ = (UniqueConstraint("userid", "external_userid"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    userid: Mapped[str] = mapped_column(ForeignKey("sim_members.userid"))
    external_userid: Mapped[str] = mapped_column(ForeignKey("sim_wechat_users.external_userid"), index=True)
    remark: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str] = mapped_column(String(255), default="")
    createtime: Mapped[float]
    state: Mapped[str] = mapped_column(String(64), default="")
    add_way: Mapped[int] = mapped_column(default=1)
    oper_userid: Mapped[str] = mapped_column(String(64), default="")
    tag_ids: Mapped[list] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(20), default="active")


class TagGroup(SimBase):
    __tablename__ = "sim_tag_groups"
    group_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    order: Mapped[int] = mapped_column(default=0)
    create_time: Mapped[float]
    deleted: Mapped[bool] = mapped_column(default=False)


class Tag(SimBase):
    __tablename__ = "sim_tags"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("sim_tag_groups.group_id"))
    name: Mapped[str] = mapped_column(String(64))
    order: Mapped[int] = mapped_column(default=0)
    create_time: Mapped[float]
    deleted: Mapped[bool] = mapped_column(default=False)


class WelcomeCode(SimBase):
    __tablename__ = "sim_welcome_codes"
    code: Mapped[str] = mapped_column(String(128), primary_key=True)
    userid: Mapped[str] = mapped_column(String(64))
    external_userid: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float]
    used_at: Mapped[float | None]


class InboxMessage(SimBase):
    """Something a diner received: a welcome, a mass message, a transfer notice.
    ``chat_id`` is set for messages posted in a customer group."""

    __tablename__ = "sim_inbox"
    id: Mapped[int] = mapped_column(primary_key=True)
    wechat_user: Mapped[str] = mapped_column(ForeignKey("sim_wechat_users.id"), index=True)
    sender: Mapped[str] = mapped_column(String(64))
    chat_id: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(20))
    msgtype: Mapped[str] = mapped_column(String(20))
    content: Mapped[dict]
    msgid: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[float]


class MassMessage(SimBase):
    __tablename__ = "sim_mass_messages"
    msgid: Mapped[str] = mapped_column(String(64), primary_key=True)
    chat_type: Mapped[str] = mapped_column(String(10))
    creator: Mapped[str | None] = mapped_column(String(64))
    create_type: Mapped[int] = mapped_column(default=0)
    text: Mapped[dict | None]
    attachments: Mapped[list] = mapped_column(default=list)
    allow_select: Mapped[bool] = mapped_column(default=False)
    reminders: Mapped[list] = mapped_column(default=list)
    created_at: Mapped[float]


class MassTask(SimBase):
    """A sending member's task. ``status``: 0 not sent, 2 sent (WeCom's doc values)."""

    __tablename__ = "sim_mass_tasks"
    __table_args__ = (Index("ix_sim_mass_tasks_status", "status", "cancelled"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    msgid: Mapped[str] = mapped_column(ForeignKey("sim_mass_messages.msgid"), index=True)
    userid: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(default=0)
    send_time: Mapped[float | None]
    cancelled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[float]


class MassTarget(SimBase):
    """One recipient of a task. ``status``: 0 not sent, 1 sent, 2 not a contact, 3 over quota."""

    __tablename__ = "sim_mass_targets"
    id: Mapped[int] = mapped_column(primary_key=True)
    msgid: Mapped[str] = mapped_column(ForeignKey("sim_mass_messages.msgid"), index=True)
    userid: Mapped[str] = mapped_column(String(64))
    external_userid: Mapped[str | None] = mapped_column(String(64), index=True)
    chat_id: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[int] = mapped_column(default=0)
    send_time: Mapped[float | None]


class GroupChat(SimBase):
    """A customer group. ``status`` as groupchat/list: 0 normal, 1 owner resigned,
    2 inheriting, 3 inherited."""

    __tablename__ = "sim_group_chats"
    chat_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(64))
    notice: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[int] = mapped_column(default=0)
    create_time: Mapped[float]


class GroupMember(SimBase):
    __tablename__ = "sim_group_members"
    __table_args__ = (UniqueConstraint("chat_id", "member_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    chat_id: Mapped[str] = mapped_column(ForeignKey("sim_group_chats.chat_id"), index=True)
    member_id: Mapped[str] = mapped_column(String(64))  # userid or external_userid
    type: Mapped[int]  # 1 member, 2 external
    join_time: Mapped[float]
    join_scene: Mapped[int] = mapped_column(default=1)
    invitor: Mapped[str | None] = mapped_column(String(64))


class Transfer(SimBase):
    """A customer handover. ``kind`` onjob/resigned; ``status`` as transfer_result:
    1 done, 2 waiting, 3 refused."""

    __tablename__ = "sim_transfers"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    handover_userid: Mapped[str] = mapped_column(String(64))
    takeover_userid: Mapped[str] = mapped_column(String(64))
    external_userid: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[int] = mapped_column(default=2)
    created_at: Mapped[float]
    takeover_time: Mapped[float | None]


class Callback(SimBase):
    """A callback to deliver (and its delivery log). ``status``: pending, delivered, failed, skipped."""

    __tablename__ = "sim_callbacks"
    id: Mapped[int] = mapped_column(primary_key=True)
    event: Mapped[str] = mapped_column(String(40))
    change_type: Mapped[str] = mapped_column(String(40))
    plaintext: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float]
    finished_at: Mapped[float | None]
