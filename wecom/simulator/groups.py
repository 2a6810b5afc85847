"""Customer groups (客户群) and customer handovers (在职/离职继承).

Transfers wait ``WECOM_SIM_TRANSFER_SECONDS`` before the takeover member gets the customer
(WeCom: 24 h); ``settle_transfers`` completes due ones lazily whenever state is read. The
customer may refuse while waiting (phone page or admin), which fires ``transfer_fail``.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from wecom.simulator.callbacks import emit
from wecom.simulator.checks import member_or_error, page_limit, page_offset
from wecom.simulator.errors import ApiError
from wecom.simulator.models import Follow, GroupChat, GroupMember, Member, Transfer, WechatUser
from wecom.simulator.services import (
    ActionError,
    wechat_user_by_external,
    wechat_user_or_action_error,
)

MAX_GROUP_SIZE = 200


# ---------------------------------------------------------------- groups (API)

def group_list(session: Session, data: dict[str, Any]) -> dict[str, Any]:
    status_filter = int(data.get("status_filter") or 0)
    limit = page_limit(data.get("limit"), 100, 1000)
    offset = page_offset(data.get("cursor"))
    query = select(GroupChat)
    owners = ((data.get("owner_filter") or {}).get("userid_list")) or []
    if len(owners) > 100:
        raise ApiError(40058, "owner_filter.userid_list exceeds 100")
    if owners:
        query = query.where(GroupChat.owner.in_(owners))
    if status_filter:
        query = query.where(GroupChat.status == status_filter)
    rows = session.scalars(query.order_by(GroupChat.create_time, GroupChat.chat_id).offset(offset).limit(limit + 1)).all()
    return {
        "group_chat_list": [{"chat_id": g.chat_id, "status": g.status} for g in rows[:limit]],
        "next_cursor": str(offset + limit) if len(rows) > limit else "",
    }


def group_or_error(session: Session, chat_id: Any) -> GroupChat:
    group = session.get(GroupChat, str(chat_id or ""))
    if group is None:
        raise ApiError(40050)
    return group


def group_dict(session: Session, group: GroupChat, need_name: bool = False) -> dict[str, Any]:
    members = []
    for m in session.scalars(select(GroupMember).where(GroupMember.chat_id == group.chat_id).order_by(GroupMember.id)):
        item: dict[str, Any] = {"userid": m.member_id, "type": m.type, "join_time": int(m.join_time),
                                "join_scene": m.join_scene}
        if m.invitor:
            item["invitor"] = {"userid": m.invitor}
        if m.type == 2:
            user = session.scalar(select(WechatUser).where(WechatUser.external_userid == m.member_id))
            if user is not None:
                item["unionid"] = user.unionid
                if need_name:
                    item["name"] = user.nickname
        elif need_name:
            member = session.get(Member, m.member_id)
            item["name"] = member.name if member else ""
        item["group_nickname"] = ""
        members.append(item)
    return {
        "chat_id": group.chat_id,
        "name": group.name,
        "owner": group.owner,
        "create_time": int(group.create_time),
        "notice": group.notice,
        "member_list": members,
        "admin_list": [],
    }


def _transfer_groups(session: Session, data: dict[str, Any], *, resigned: bool) -> dict[str, Any]:
    chat_ids = data.get("chat_id_list") or []
    if not chat_ids or len(chat_ids) > 100:
        raise ApiError(40058, "chat_id_list must hold 1..100 ids")
    new_owner = member_or_error(session, data.get("new_owner"), customers=True)
    failed = []
    for chat_id in chat_ids:
        group = session.get(GroupChat, chat_id)
        if group is None:
            failed.append({"chat_id": chat_id, "errcode": 40050, "errmsg": "chatid not found"})
            continue
        owner = session.get(Member, group.owner)
        owner_left = owner is None or owner.resigned_at is not None
        if resigned != owner_left:
            code = 40097 if resigned else 40003
            failed.append({"chat_id": chat_id, "errcode": code, "errmsg": "owner state does not allow this transfer"})
            continue
        group.owner = new_owner.userid
        group.status = 3 if resigned else 0
        if session.scalar(select(GroupMember).where(GroupMember.chat_id == chat_id,
                                                    GroupMember.member_id == new_owner.userid)) is None:
            session.add(GroupMember(chat_id=chat_id, member_id=new_owner.userid, type=1, join_time=0, join_scene=1))
    return {"failed_chat_list": failed}


def transfer_groups(session: Session, data: dict[str, Any]) -> dict[str, Any]:
    return _transfer_groups(session, data, resigned=True)


def onjob_transfer_groups(session: Session, data: dict[str, Any]) -> dict[str, Any]:
    return _transfer_groups(session, data, resigned=False)


# ---------------------------------------------------------------- groups (phone actions)

def join_group(session: Session, sim, wechat_user: str, chat_id: str) -> None:
    user = wechat_user_or_action_error(session, wechat_user)
    group = session.get(GroupChat, chat_id)
    if group is None:
        raise ActionError("群聊不存在")
    if session.scalar(select(GroupMember).where(GroupMember.chat_id == chat_id,
                                                GroupMember.member_id == user.external_userid)):
        raise ActionError("已经在群里了")
    size = session.scalar(select(func.count()).where(GroupMember.chat_id == chat_id))
    if size >= MAX_GROUP_SIZE:
        raise ActionError("群已满")
    session.add(GroupMember(chat_id=chat_id, member_id=user.external_userid, type=2, join_time=sim.now(),
                            join_scene=3))
    emit(session, sim, "change_external_chat", "update", ChatId=chat_id, UpdateDetail="add_member",
         JoinScene=3, MemChangeCnt=1, MemChangeList=[user.external_userid])


def leave_group(session: Session, sim, wechat_user: str, chat_id: str) -> None:
    user = wechat_user_or_action_error(session, wechat_user)
    row = session.scalar(select(GroupMember).where(GroupMember.chat_id == chat_id,
                                                   GroupMember.member_id == user.external_userid))
    if row is None:
        raise ActionError("不在这个群里")
    session.delete(row)
    emit(session, sim, "change_external_chat", "update", ChatId=chat_id, UpdateDetail="del_member",
         QuitScene=0, MemChangeCnt=1, MemChangeList=[user.external_userid])


def groups_of(session: Session, external_userid: str) -> list[GroupChat]:
    return list(session.scalars(
        select(GroupChat).join(GroupMember, GroupMember.chat_id == GroupChat.chat_id)
        .where(GroupMember.member_id == external_userid)
    ))


# ---------------------------------------------------------------- transfers

def _start_transfers(session: Session, sim, data: dict[str, Any], kind: str) -> dict[str, Any]:
    handover = session.get(Member, data.get("handover_userid") or "")
    if handover is None:
        raise ApiError(40003, "handover_userid")
    if kind == "resigned" and handover.resigned_at is None:
        raise ApiError(40097)
    if kind == "onjob" and handover.resigned_at is not None:
        raise ApiError(40003, "handover_userid has resigned")
    takeover = member_or_error(session, data.get("takeover_userid"), customers=True)
    if handover.userid == takeover.userid:
        raise ApiError(40130)
    ext_ids = data.get("external_userid") or []
    if not ext_ids or len(ext_ids) > 100:
        raise ApiError(40058, "external_userid must hold 1..100 ids")
    message = data.get("transfer_success_msg")
    if message is not None and len(message) > 200:
        raise ApiError(40058, "transfer_success_msg exceeds 200 characters")
    now, result = sim.now(), []
    for ext in ext_ids:
        result.append({"external_userid": ext, "errcode": _start_one(session, sim, kind, handover, takeover, ext, now)})
    return {"customer": result}


def _start_one(session: Session, sim, kind: str, handover: Member, takeover: Member, ext: str, now: float) -> int:
    try:
        wechat_user_by_external(session, ext)
    except ApiError:
        return 40096
    follow = session.scalar(select(Follow).where(Follow.userid == handover.userid, Follow.external_userid == ext,
                                                 Follow.status == "active"))
    if follow is None:
        return 40131
    if session.scalar(select(Transfer).where(Transfer.external_userid == ext, Transfer.status == 2)):
        return 40129
    if kind == "onjob":
        recent = session.scalar(select(func.count()).where(
            Transfer.external_userid == ext, Transfer.kind == "onjob", Transfer.created_at > now - 90 * 86400,
            Transfer.status.in_((1, 2))))
        if recent >= 2:
            return 40128
    session.add(Transfer(kind=kind, handover_userid=handover.userid, takeover_userid=takeover.userid,
                         external_userid=ext, status=2, created_at=now))
    return 0


def transfer_customer(session: Session, sim, data: dict[str, Any]) -> dict[str, Any]:
    return _start_transfers(session, sim, data, "onjob")


def resigned_transfer_customer(session: Session, sim, data: dict[str, Any]) -> dict[str, Any]:
    return _start_transfers(session, sim, data, "resigned")


def transfer_result(session: Session, data: dict[str, Any], kind: str) -> dict[str, Any]:
    handover, takeover = data.get("handover_userid"), data.get("takeover_userid")
    if not handover or not takeover:
        raise ApiError(40058, "handover_userid and takeover_userid are required")
    offset = page_offset(data.get("cursor"))
    rows = session.scalars(
        select(Transfer).where(Transfer.kind == kind, Transfer.handover_userid == handover,
                               Transfer.takeover_userid == takeover)
        .order_by(Transfer.id).offset(offset).limit(1001)
    ).all()
    items = []
    for t in rows[:1000]:
        item: dict[str, Any] = {"external_userid": t.external_userid, "status": t.status}
        if t.takeover_time:
            item["takeover_time"] = int(t.takeover_time)
        items.append(item)
    return {"customer": items, "next_cursor": str(offset + 1000) if len(rows) > 1000 else ""}


def settle_transfers(session: Session, sim) -> int:
    """Complete waiting transfers whose delay has passed: the takeover member gets the customer."""
    now = sim.now()
    due = session.scalars(select(Transfer).where(
        Transfer.status == 2, Transfer.created_at <= now - sim.settings.transfer_seconds)).all()
    for transfer in due:
        old = session.scalar(select(Follow).where(Follow.userid == transfer.handover_userid,
                                                  Follow.external_userid == transfer.external_userid))
        new = session.scalar(select(Follow).where(Follow.userid == transfer.takeover_userid,
                                                  Follow.external_userid == transfer.external_userid))
        was_friend = new is not None and new.status == "active"
        if new is None:
            new = Follow(userid=transfer.takeover_userid, external_userid=transfer.external_userid, createtime=now)
            session.add(new)
        if not was_friend:
            new.status, new.createtime, new.add_way = "active", now, 202
            new.oper_userid = transfer.takeover_userid
            if old is not None:
                new.state, new.remark, new.tag_ids = old.state, old.remark, list(old.tag_ids)
        if old is not None and old.status != "member_deleted":
            old.status = "member_deleted"
            if transfer.kind == "onjob":
                emit(session, sim, "change_external_contact", "del_external_contact", UserID=old.userid,
                     ExternalUserID=transfer.external_userid, Source="DELETE_BY_TRANSFER")
        if not was_friend:
            emit(session, sim, "change_external_contact", "add_external_contact", UserID=transfer.takeover_userid,
                 ExternalUserID=transfer.external_userid, State=new.state)
        transfer.status, transfer.takeover_time = 1, now
    return len(due)


def refuse_transfer(session: Session, sim, external_userid: str) -> Transfer:
    """The customer refuses a pending on-job transfer: status 3 and a transfer_fail callback."""
    transfer = session.scalar(select(Transfer).where(Transfer.external_userid == external_userid,
                                                     Transfer.status == 2, Transfer.kind == "onjob"))
    if transfer is None:
        raise ActionError("没有等待中的转接")
    transfer.status = 3
    emit(session, sim, "change_external_contact", "transfer_fail", UserID=transfer.takeover_userid,
         ExternalUserID=external_userid, FailReason="customer_refused")
    return transfer


def resign_member(session: Session, sim, userid: str) -> Member:
    """The admin marks a member as having left: their customers become unassigned."""
    member = session.get(Member, userid)
    if member is None:
        raise ActionError(f"没有这个成员: {userid}")
    member.resigned_at = sim.now()
    for group in session.scalars(select(GroupChat).where(GroupChat.owner == userid)):
        group.status = 1
    return member


def unassigned_list(session: Session, data: dict[str, Any]) -> dict[str, Any]:
    limit = page_limit(data.get("page_size"), 1000, 1000)
    offset = page_offset(data.get("cursor"))
    in_transfer = select(Transfer.external_userid).where(Transfer.kind == "resigned", Transfer.status.in_((1, 2)))
    rows = session.execute(
        select(Follow, Member)
        .join(Member, Member.userid == Follow.userid)
        .where(Member.resigned_at.is_not(None), Follow.status == "active",
               Follow.external_userid.not_in(in_transfer))
        .order_by(Follow.id).offset(offset).limit(limit + 1)
    ).all()
    info = [{"handover_userid": f.userid, "external_userid": f.external_userid,
             "dimission_time": int(m.resigned_at)} for f, m in rows[:limit]]
    more = len(rows) > limit
    return {"info": info, "is_last": not more, "next_cursor": str(offset + limit) if more else ""}


