"""Messages to diners: welcome messages, mass messages (企业群发) with member confirmation
and the platform's per-customer receive quota, and the diner's inbox.
"""
from __future__ import annotations

import calendar
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from wecom.simulator import ids
from wecom.simulator.checks import member_or_error, page_limit, page_offset
from wecom.simulator.errors import ApiError
from wecom.simulator.models import (
    Follow,
    GroupChat,
    GroupMember,
    InboxMessage,
    MassMessage,
    MassTarget,
    MassTask,
    WechatUser,
    WelcomeCode,
)

CHINA = timezone(timedelta(hours=8))  # WeCom's calendar; China has no DST
ATTACHMENT_TYPES = ("image", "link", "miniprogram", "video", "file")
MAX_TEMPLATE_USERS = 10_000
MAX_TEMPLATE_CHATS = 2_000


# ---------------------------------------------------------------- content and inbox

def validate_content(text: Any, attachments: Any) -> tuple[dict | None, list[dict]]:
    if text is not None and not isinstance(text, dict):
        raise ApiError(40058, "text must be an object")
    content = (text or {}).get("content")
    if content is not None and len(str(content).encode()) > 4000:
        raise ApiError(40058, "text.content exceeds 4000 bytes")
    attachments = attachments or []
    if not isinstance(attachments, list):
        raise ApiError(40058, "attachments must be a list")
    if len(attachments) > 9:
        raise ApiError(41064)
    for item in attachments:
        kind = item.get("msgtype") if isinstance(item, dict) else None
        if kind not in ATTACHMENT_TYPES or not isinstance(item.get(kind), dict):
            raise ApiError(41065)
        if kind == "link" and not item["link"].get("url"):
            raise ApiError(40058, "link.url is required")
    if not content and not attachments:
        raise ApiError(40058, "text and attachments are both empty")
    return ({"content": content} if content else None), attachments


def deliver(session: Session, sim, wechat_user: str, sender: str, message: dict[str, Any], *, source: str,
            msgid: str | None = None, chat_id: str | None = None) -> None:
    """Put a text and its attachments into the diner's chat with ``sender`` (or group)."""
    now = sim.now()
    text = message.get("text")
    if text and text.get("content"):
        session.add(InboxMessage(wechat_user=wechat_user, sender=sender, chat_id=chat_id, source=source,
                                 msgtype="text", content={"content": text["content"]}, msgid=msgid,
                                 created_at=now))
    for item in message.get("attachments") or []:
        kind = item["msgtype"]
        session.add(InboxMessage(wechat_user=wechat_user, sender=sender, chat_id=chat_id, source=source,
                                 msgtype=kind, content=dict(item[kind]), msgid=msgid, created_at=now))


def inbox(session: Session, wechat_user: str) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(InboxMessage).where(InboxMessage.wechat_user == wechat_user).order_by(InboxMessage.id)
    )
    return [
        {"id": m.id, "from": m.sender, "chat_id": m.chat_id, "source": m.source, "msgtype": m.msgtype,
         m.msgtype: m.content, "msgid": m.msgid, "time": int(m.created_at)}
        for m in rows
    ]


# ---------------------------------------------------------------- welcome

def send_welcome(session: Session, sim, data: dict[str, Any]) -> None:
    code_value = data.get("welcome_code")
    if not code_value:
        raise ApiError(41049)
    text, attachments = validate_content(data.get("text"), data.get("attachments"))
    code = session.get(WelcomeCode, str(code_value))
    if code is None or sim.now() - code.created_at > sim.settings.welcome_code_ttl:
        raise ApiError(41050)
    if code.used_at is not None:
        raise ApiError(41051)
    code.used_at = sim.now()
    user = session.scalar(select(WechatUser).where(WechatUser.external_userid == code.external_userid))
    deliver(session, sim, user.id, code.userid, {"text": text, "attachments": attachments}, source="welcome")


# ---------------------------------------------------------------- quota

def quota_window(rule: str, at: float) -> tuple[float, float, int]:
    """(start, end, limit) of the quota period containing ``at``, in China's calendar."""
    moment = datetime.fromtimestamp(at, CHINA)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if rule == "1/day":
        return day.timestamp(), (day + timedelta(days=1)).timestamp(), 1
    if rule == "7/week":
        start = day - timedelta(days=day.weekday())
        return start.timestamp(), (start + timedelta(days=7)).timestamp(), 7
    start = day.replace(day=1)
    days = calendar.monthrange(start.year, start.month)[1]
    end = start + timedelta(days=days)
    limit = days if rule == "days/month" else 4
    return start.timestamp(), end.timestamp(), limit


def received_count(session: Session, *, at: float, rule: str, external_userid: str | None = None,
                   chat_id: str | None = None) -> tuple[int, int]:
    """(mass messages received in the period, the period's limit) for a customer or a group."""
    start, end, limit = quota_window(rule, at)
    query = select(func.count()).select_from(MassTarget).where(
        MassTarget.status == 1, MassTarget.send_time >= start, MassTarget.send_time < end
    )
    if chat_id is not None:
        query = query.where(MassTarget.chat_id == chat_id)
    else:
        query = query.where(MassTarget.external_userid == external_userid)
    return session.scalar(query), limit


# ---------------------------------------------------------------- mass messages

def _customers_matching(session: Session, sender: str | None, tag_filter: Any) -> list[str]:
    query = select(Follow).where(Follow.status == "active")
    if sender:
        query = query.where(Follow.userid == sender)
    follows = session.scalars(query).all()
    groups = (tag_filter or {}).get("group_list") or [] if isinstance(tag_filter, dict) else []
    result = []
    for follow in follows:
        tags = set(follow.tag_ids)
        if all(set(g.get("tag_list") or []) & tags for g in groups if g.get("tag_list")):
            if follow.external_userid not in result:
                result.append(follow.external_userid)
    return result


def _assignee(session: Session, external_userid: str, sender: str | None) -> str | None:
    """The member whose task this customer lands in (the sender, else the latest follower)."""
    query = select(Follow).where(Follow.external_userid == external_userid, Follow.status == "active")
    if sender:
        query = query.where(Follow.userid == sender)
    follow = session.scalars(query.order_by(Follow.createtime.desc())).first()
    return follow.userid if follow else None


def add_msg_template(session: Session, sim, data: dict[str, Any]) -> dict[str, Any]:
    chat_type = data.get("chat_type") or "single"
    if chat_type not in ("single", "group"):
        raise ApiError(40058, "chat_type must be single or group")
    text, attachments = validate_content(data.get("text"), data.get("attachments"))
    sender = data.get("sender") or None
    if sender:
        member_or_error(session, sender, customers=True)
    now = sim.now()
    targets: dict[str, list[tuple[str | None, str | None]]] = {}
    fail_list: list[str] = []
    if chat_type == "single":
        ext_ids = data.get("external_userid") or []
        if not isinstance(ext_ids, list):
            raise ApiError(40058, "external_userid must be a list")
        if len(ext_ids) > MAX_TEMPLATE_USERS:
            raise ApiError(40058, f"external_userid exceeds {MAX_TEMPLATE_USERS}")
        if not ext_ids:
            if not sender and not data.get("tag_filter"):
                raise ApiError(40058, "external_userid and sender are both empty")
            ext_ids = _customers_matching(session, sender, data.get("tag_filter"))
        for ext in dict.fromkeys(ext_ids):
            userid = _assignee(session, ext, sender)
            if userid is None:
                fail_list.append(ext)
            else:
                targets.setdefault(userid, []).append((ext, None))
    else:
        if not sender:
            raise ApiError(40058, "sender is required for chat_type group")
        chat_ids = data.get("chat_id_list") or []
        if len(chat_ids) > MAX_TEMPLATE_CHATS:
            raise ApiError(40058, f"chat_id_list exceeds {MAX_TEMPLATE_CHATS}")
        if not chat_ids:
            chat_ids = list(session.scalars(select(GroupChat.chat_id).where(GroupChat.owner == sender)))
        for chat_id in dict.fromkeys(chat_ids):
            group = session.get(GroupChat, chat_id)
            if group is None or group.owner != sender:
                fail_list.append(chat_id)
            else:
                targets.setdefault(sender, []).append((None, chat_id))
    if not targets:
        raise ApiError(41048)
    message = MassMessage(msgid=ids.msgid(), chat_type=chat_type, creator=None, create_type=0, text=text,
                          attachments=attachments, allow_select=bool(data.get("allow_select")), created_at=now)
    session.add(message)
    session.flush()
    for userid, items in targets.items():
        session.add(MassTask(msgid=message.msgid, userid=userid, created_at=now))
        session.flush()
        for ext, chat_id in items:
            session.add(MassTarget(msgid=message.msgid, userid=userid, external_userid=ext, chat_id=chat_id))
    return {"fail_list": fail_list, "msgid": message.msgid}


def message_or_error(session: Session, msgid: Any) -> MassMessage:
    if not msgid:
        raise ApiError(41046)
    message = session.get(MassMessage, str(msgid))
    if message is None:
        raise ApiError(41047)
    return message


def confirm(session: Session, sim, msgid: str, userid: str | None = None) -> int:
    """Members confirm their pending tasks: each recipient is delivered, not a contact (2)
    or over the quota (3). Returns how many tasks were sent."""
    message = session.get(MassMessage, msgid)
    if message is None:
        raise LookupError(msgid)
    query = select(MassTask).where(MassTask.msgid == msgid, MassTask.status == 0, MassTask.cancelled.is_(False))
    if userid:
        query = query.where(MassTask.userid == userid)
    tasks = session.scalars(query).all()
    now, rule = sim.now(), sim.settings.quota_rule
    content = {"text": message.text, "attachments": message.attachments}
    for task in tasks:
        task.status, task.send_time = 2, now
        for target in session.scalars(
            select(MassTarget).where(MassTarget.msgid == msgid, MassTarget.userid == task.userid)
        ):
            target.status = _send_one(session, sim, message, target, content, now, rule)
            target.send_time = now
            session.flush()
    return len(tasks)


def _send_one(session: Session, sim, message: MassMessage, target: MassTarget, content: dict, now: float,
              rule: str) -> int:
    if target.chat_id:
        group = session.get(GroupChat, target.chat_id)
        if group is None:
            return 2
        count, limit = received_count(session, at=now, rule=rule, chat_id=target.chat_id)
        if count >= limit:
            return 3
        externals = session.scalars(
            select(GroupMember.member_id).where(GroupMember.chat_id == target.chat_id, GroupMember.type == 2)
        ).all()
        for user in session.scalars(select(WechatUser).where(WechatUser.external_userid.in_(externals))):
            deliver(session, sim, user.id, target.userid, content, source="mass", msgid=message.msgid,
                    chat_id=target.chat_id)
        return 1
    follow = session.scalar(
        select(Follow).where(Follow.userid == target.userid, Follow.external_userid == target.external_userid)
    )
    if follow is None or follow.status != "active":
        return 2
    count, limit = received_count(session, at=now, rule=rule, external_userid=target.external_userid)
    if count >= limit:
        return 3
    user = session.scalar(select(WechatUser).where(WechatUser.external_userid == target.external_userid))
    deliver(session, sim, user.id, target.userid, content, source="mass", msgid=message.msgid)
    return 1


def settle_due(session: Session, sim) -> int:
    """Lazy auto-confirm: tasks older than WECOM_SIM_AUTO_CONFIRM_SECONDS are confirmed now."""
    delay = sim.settings.auto_confirm_seconds
    if delay <= 0:
        return 0
    due = session.execute(
        select(MassTask.msgid, MassTask.userid).where(
            MassTask.status == 0, MassTask.cancelled.is_(False), MassTask.created_at <= sim.now() - delay
        )
    ).all()
    for msgid, userid in due:
        confirm(session, sim, msgid, userid)
    return len(due)


def list_v2(session: Session, data: dict[str, Any]) -> dict[str, Any]:
    chat_type = data.get("chat_type") or "single"
    start, end = data.get("start_time"), data.get("end_time")
    if start in (None, "") or end in (None, ""):
        raise ApiError(40058, "start_time and end_time are required")
    if float(end) - float(start) > 31 * 86400:
        raise ApiError(40058, "time span exceeds one month")
    filter_type = int(data.get("filter_type", 2))
    limit = page_limit(data.get("limit"), 50, 100)
    offset = page_offset(data.get("cursor"))
    query = select(MassMessage).where(
        MassMessage.chat_type == chat_type, MassMessage.created_at >= float(start),
        MassMessage.created_at <= float(end),
    )
    if filter_type == 0:
        query = query.where(MassMessage.create_type == 0)
    elif filter_type == 1:
        query = query.where(MassMessage.create_type == 1)
    if data.get("creator"):
        query = query.where(MassMessage.creator == data["creator"])
    rows = session.scalars(query.order_by(MassMessage.created_at, MassMessage.msgid).offset(offset).limit(limit + 1)).all()
    items = []
    for m in rows[:limit]:
        item: dict[str, Any] = {"msgid": m.msgid, "create_time": str(int(m.created_at)), "create_type": m.create_type}
        if m.creator:
            item["creator"] = m.creator
        if m.text:
            item["text"] = m.text
        item["attachments"] = m.attachments
        items.append(item)
    return {"next_cursor": str(offset + limit) if len(rows) > limit else "", "group_msg_list": items}


def task_list(session: Session, data: dict[str, Any]) -> dict[str, Any]:
    message = message_or_error(session, data.get("msgid"))
    limit = page_limit(data.get("limit"), 500, 1000)
    offset = page_offset(data.get("cursor"))
    rows = session.scalars(
        select(MassTask).where(MassTask.msgid == message.msgid).order_by(MassTask.id).offset(offset).limit(limit + 1)
    ).all()
    items = []
    for t in rows[:limit]:
        item: dict[str, Any] = {"userid": t.userid, "status": t.status}
        if t.send_time:
            item["send_time"] = int(t.send_time)
        items.append(item)
    return {"next_cursor": str(offset + limit) if len(rows) > limit else "", "task_list": items}


def send_result(session: Session, data: dict[str, Any]) -> dict[str, Any]:
    message = message_or_error(session, data.get("msgid"))
    member_or_error(session, data.get("userid"))
    limit = page_limit(data.get("limit"), 500, 1000)
    offset = page_offset(data.get("cursor"))
    rows = session.scalars(
        select(MassTarget)
        .where(MassTarget.msgid == message.msgid, MassTarget.userid == data["userid"])
        .order_by(MassTarget.id).offset(offset).limit(limit + 1)
    ).all()
    items = []
    for t in rows[:limit]:
        item: dict[str, Any] = {"userid": t.userid, "status": t.status}
        if t.chat_id:
            item["chat_id"] = t.chat_id
        else:
            item["external_userid"] = t.external_userid
        if t.send_time and t.status == 1:
            item["send_time"] = int(t.send_time)
        items.append(item)
    return {"next_cursor": str(offset + limit) if len(rows) > limit else "", "send_list": items}


def remind(session: Session, sim, data: dict[str, Any]) -> None:
    message = message_or_error(session, data.get("msgid"))
    pending = session.scalar(
        select(func.count()).where(MassTask.msgid == message.msgid, MassTask.status == 0, MassTask.cancelled.is_(False))
    )
    if not pending:
        raise ApiError(41093 if _all_cancelled(session, message.msgid) else 40058, "nothing left to remind")
    now = sim.now()
    recent = [t for t in message.reminders if t > now - 86400]
    if len(recent) >= 3:
        raise ApiError(41094)
    message.reminders = recent + [now]


def _all_cancelled(session: Session, msgid: str) -> bool:
    tasks = session.scalars(select(MassTask).where(MassTask.msgid == msgid)).all()
    return bool(tasks) and all(t.cancelled for t in tasks)


def cancel(session: Session, data: dict[str, Any]) -> None:
    message = message_or_error(session, data.get("msgid"))
    query = select(MassTask).where(MassTask.msgid == message.msgid, MassTask.status == 0)
    if data.get("userid_list"):
        query = query.where(MassTask.userid.in_(data["userid_list"]))
    tasks = [t for t in session.scalars(query) if not t.cancelled]
    if not tasks:
        if _all_cancelled(session, message.msgid):
            raise ApiError(41093)
        raise ApiError(40058, "no unsent task to cancel")
    for task in tasks:
        task.cancelled = True


def pending_tasks(session: Session, userid: str) -> list[tuple[MassTask, MassMessage, int]]:
    """A member's unconfirmed tasks with their recipient counts (console page)."""
    rows = session.execute(
        select(MassTask, MassMessage)
        .join(MassMessage, MassMessage.msgid == MassTask.msgid)
        .where(MassTask.userid == userid, MassTask.status == 0, MassTask.cancelled.is_(False))
        .order_by(MassTask.created_at.desc())
    ).all()
    result = []
    for task, message in rows:
        count = session.scalar(
            select(func.count()).where(MassTarget.msgid == task.msgid, MassTarget.userid == userid)
        )
        result.append((task, message, count))
    return result

