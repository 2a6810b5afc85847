"""Corp rules: tokens, members, 「联系我」 contact ways, customers, tags, and the user actions
(scan, delete, console edits) that WeCom reports through callbacks.

Services take a Session and the ``Sim`` (clock, settings); they never commit. API-facing
failures raise ``ApiError``; phone/console failures raise ``ActionError``.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from wecom.simulator import ids
from wecom.simulator.callbacks import emit
from wecom.simulator.checks import member_or_error, page_limit, page_offset
from wecom.simulator.errors import ApiError
from wecom.simulator.messaging import deliver
from wecom.simulator.models import (
    ContactWay,
    Follow,
    Member,
    Tag,
    TagGroup,
    Token,
    WechatUser,
    WelcomeCode,
)

MAX_CONTACT_WAYS = 500_000
DEPARTMENT_ID = 1  # the demo corp has one department holding everyone


class ActionError(Exception):
    """A phone/console action that cannot happen (unknown diner, code, …)."""


# ---------------------------------------------------------------- tokens

def issue_token(session: Session, sim, corpid: str | None, secret: str | None) -> Token:
    """Repeated gettoken within validity returns the same token, as WeCom does."""
    if not corpid:
        raise ApiError(41002)
    if not secret:
        raise ApiError(41004)
    if corpid != sim.settings.corp_id:
        raise ApiError(40013)
    if secret != sim.settings.secret:
        raise ApiError(40001)
    now = sim.now()
    token = session.scalars(
        select(Token).where(Token.expires_at > now + 60).order_by(Token.created_at.desc())
    ).first()
    if token is None:
        token = Token(token=ids.access_token(), created_at=now, expires_at=now + sim.settings.token_ttl)
        session.add(token)
    return token


def check_token(session: Session, sim, value: str | None) -> None:
    if not value:
        raise ApiError(41001)
    token = session.get(Token, value)
    if token is None:
        raise ApiError(40014)
    if token.expires_at <= sim.now():
        raise ApiError(42001)


def expire_tokens(session: Session, sim) -> int:
    tokens = session.scalars(select(Token).where(Token.expires_at > sim.now())).all()
    for token in tokens:
        token.expires_at = sim.now()
    return len(tokens)


# ---------------------------------------------------------------- members

def avatar_url(sim, kind: str, key: str) -> str:
    return f"{sim.settings.public_url}/avatar/{kind}/{key}.svg"


def member_dict(sim, member: Member) -> dict[str, Any]:
    return {
        "userid": member.userid,
        "name": member.name,
        "department": [DEPARTMENT_ID],
        "main_department": DEPARTMENT_ID,
        "position": member.position,
        "mobile": member.mobile,
        "gender": str(member.gender),
        "avatar": avatar_url(sim, "member", member.userid),
        "status": 1 if member.resigned_at is None else 5,
    }


def user_get(session: Session, sim, userid: str | None) -> dict[str, Any]:
    if not userid:
        raise ApiError(41009)
    member = session.get(Member, userid)
    if member is None or member.resigned_at is not None:
        raise ApiError(60111, userid)
    return member_dict(sim, member)


def active_members(session: Session) -> list[Member]:
    return list(session.scalars(select(Member).where(Member.resigned_at.is_(None)).order_by(Member.userid)))


def user_simplelist(session: Session, department_id: Any) -> list[dict[str, Any]]:
    if str(department_id or DEPARTMENT_ID) != str(DEPARTMENT_ID):
        raise ApiError(40058, "invalid department_id")
    return [
        {"userid": m.userid, "name": m.name, "department": [DEPARTMENT_ID]} for m in active_members(session)
    ]


def user_list_id(session: Session, cursor: str | None, limit: Any) -> dict[str, Any]:
    limit = page_limit(limit, 10000, 10000)
    offset = page_offset(cursor)
    members = active_members(session)
    page = members[offset : offset + limit]
    return {
        "next_cursor": str(offset + limit) if offset + limit < len(members) else "",
        "dept_user": [{"userid": m.userid, "department": DEPARTMENT_ID} for m in page],
    }


# ---------------------------------------------------------------- contact ways

def _check_len(value: Any, name: str, limit: int = 30) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiError(40058, f"{name} must be a string")
    if len(value) > limit:
        raise ApiError(40058, f"{name} exceeds {limit} characters")
    return value


def _contact_way_users(session: Session, way_type: int, users: Any, party: Any) -> tuple[list[str], list[int]]:
    users = list(users or [])
    party = list(party or [])
    if not all(isinstance(u, str) for u in users):
        raise ApiError(40058, "user must be a list of userids")
    if way_type == 1:
        if party or len(users) != 1:
            raise ApiError(40058, "type 1 needs exactly one user")
    elif not users and not party:
        raise ApiError(40058, "user and party are both empty")
    if len(set(users)) > 100:
        raise ApiError(41041)
    for userid in users:
        member_or_error(session, userid, customers=True)
    expanded = set(users)
    for dept in party:
        if str(dept) != str(DEPARTMENT_ID):
            raise ApiError(40058, f"invalid party {dept}")
        expanded.update(m.userid for m in active_members(session) if m.customer_contact)
    if len(expanded) > 100:
        raise ApiError(41041)
    return users, [int(p) for p in party]


def add_contact_way(session: Session, sim, data: dict[str, Any]) -> ContactWay:
    way_type, scene = data.get("type"), data.get("scene")
    if way_type in (None, ""):
        raise ApiError(41037)
    if scene in (None, ""):
        raise ApiError(41038)
    if way_type not in (1, 2):
        raise ApiError(41039)
    if scene not in (1, 2):
        raise ApiError(41040)
    style = data.get("style")
    if style is not None and (scene != 1 or not isinstance(style, int) or style < 1):
        raise ApiError(41042)
    remark = _check_len(data.get("remark"), "remark")
    state = _check_len(data.get("state"), "state")
    users, party = _contact_way_users(session, way_type, data.get("user"), data.get("party"))
    if session.scalar(select(func.count()).select_from(ContactWay)) >= MAX_CONTACT_WAYS:
        raise ApiError(41045)
    way = ContactWay(
        config_id=ids.config_id(),
        type=way_type,
        scene=scene,
        style=style,
        remark=remark,
        skip_verify=bool(data.get("skip_verify", True)),
        state=state,
        users=users,
        party=party,
        is_temp=bool(data.get("is_temp", False)),
        expires_in=data.get("expires_in"),
        chat_expires_in=data.get("chat_expires_in"),
        unionid=data.get("unionid"),
        is_exclusive=bool(data.get("is_exclusive", False)),
        conclusions=data.get("conclusions"),
        created_at=sim.now(),
    )
    session.add(way)
    return way


def qr_code_url(sim, way: ContactWay) -> str:
    return f"{sim.settings.public_url}/qr/{way.config_id}.png"


def scan_url(sim, config_id: str) -> str:
    return f"{sim.settings.public_url}/phone/scan/{config_id}"


def contact_way_or_error(session: Session, config_id: Any) -> ContactWay:
    if not config_id:
        raise ApiError(41043)
    way = session.get(ContactWay, str(config_id))
    if way is None:
        raise ApiError(41044)
    return way


def contact_way_dict(sim, way: ContactWay) -> dict[str, Any]:
    data: dict[str, Any] = {
        "config_id": way.config_id,
        "type": way.type,
        "scene": way.scene,
        "remark": way.remark,
        "skip_verify": way.skip_verify,
        "state": way.state,
        "user": list(way.users),
        "party": list(way.party),
        "is_temp": way.is_temp,
        "is_exclusive": way.is_exclusive,
    }
    if way.style is not None:
        data["style"] = way.style
    if way.scene == 2:
        data["qr_code"] = qr_code_url(sim, way)
    if way.is_temp:
        data.update(expires_in=way.expires_in or 7 * 86400, chat_expires_in=way.chat_expires_in or 86400,
                    unionid=way.unionid or "", conclusions=way.conclusions or {})
    return data


def update_contact_way(session: Session, sim, data: dict[str, Any]) -> None:
    way = contact_way_or_error(session, data.get("config_id"))
    if "remark" in data:
        way.remark = _check_len(data["remark"], "remark")
    if "state" in data:
        way.state = _check_len(data["state"], "state")
    if "skip_verify" in data:
        way.skip_verify = bool(data["skip_verify"])
    if "style" in data:
        if way.scene != 1 or not isinstance(data["style"], int):
            raise ApiError(41042)
        way.style = data["style"]
    if "user" in data or "party" in data:
        way.users, way.party = _contact_way_users(
            session, way.type, data.get("user", way.users), data.get("party", way.party)
        )
    for key in ("expires_in", "chat_expires_in", "unionid", "conclusions"):
        if key in data:
            setattr(way, key, data[key])


def delete_contact_way(session: Session, data: dict[str, Any]) -> None:
    session.delete(contact_way_or_error(session, data.get("config_id")))


def list_contact_ways(session: Session, sim, data: dict[str, Any]) -> dict[str, Any]:
    now = sim.now()
    start = float(data.get("start_time") or now - 90 * 86400)
    end = float(data.get("end_time") or now)
    limit = page_limit(data.get("limit"), 100, 1000)
    offset = page_offset(data.get("cursor"))
    rows = session.scalars(
        select(ContactWay)
        .where(ContactWay.created_at >= start, ContactWay.created_at <= end, ContactWay.is_temp.is_(False))
        .order_by(ContactWay.created_at, ContactWay.config_id)
        .offset(offset)
        .limit(limit + 1)
    ).all()
    result: dict[str, Any] = {"contact_way": [{"config_id": w.config_id} for w in rows[:limit]]}
    if len(rows) > limit:
        result["next_cursor"] = str(offset + limit)
    return result


# ---------------------------------------------------------------- customers

def wechat_user_by_external(session: Session, external_userid: Any) -> WechatUser:
    if not external_userid:
        raise ApiError(40096, "external_userid missing")
    user = session.scalar(select(WechatUser).where(WechatUser.external_userid == str(external_userid)))
    if user is None:
        raise ApiError(40096)
    return user


def visible_follows(session: Session, external_userid: str) -> list[Follow]:
    """Follows the API can still see: active or one-way (the customer deleted the member)."""
    return list(
        session.scalars(
            select(Follow)
            .where(Follow.external_userid == external_userid, Follow.status != "member_deleted")
            .order_by(Follow.createtime)
        )
    )


def visible_follow(session: Session, userid: str, external_userid: str) -> Follow | None:
    """The member's relationship with the customer unless the member deleted them."""
    return session.scalar(
        select(Follow).where(
            Follow.userid == userid, Follow.external_userid == external_userid, Follow.status != "member_deleted"
        )
    )


def follow_or_error(session: Session, userid: str, external_userid: str) -> Follow:
    follow = visible_follow(session, userid, external_userid)
    if follow is None:
        raise ApiError(84061)
    return follow


def live_tags(session: Session, tag_ids: list[str]) -> list[tuple[Tag, TagGroup]]:
    if not tag_ids:
        return []
    rows = session.execute(
        select(Tag, TagGroup)
        .join(TagGroup, Tag.group_id == TagGroup.group_id)
        .where(Tag.id.in_(tag_ids), Tag.deleted.is_(False))
    ).all()
    return [(tag, group) for tag, group in rows]


def external_contact_dict(sim, user: WechatUser) -> dict[str, Any]:
    return {
        "external_userid": user.external_userid,
        "name": user.nickname,
        "avatar": avatar_url(sim, "wechat", user.id),
        "type": 1,
        "gender": user.gender,
        "unionid": user.unionid,
    }


def follow_user_dict(session: Session, follow: Follow) -> dict[str, Any]:
    return {
        "userid": follow.userid,
        "remark": follow.remark,
        "description": follow.description,
        "createtime": int(follow.createtime),
        "tags": [
            {"group_name": g.name, "tag_name": t.name, "type": 1, "tag_id": t.id}
            for t, g in live_tags(session, follow.tag_ids)
        ],
        "remark_mobiles": [],
        "add_way": follow.add_way,
        "oper_userid": follow.oper_userid,
        "state": follow.state,
    }


def customer_get(session: Session, sim, external_userid: Any) -> dict[str, Any]:
    user = wechat_user_by_external(session, external_userid)
    follows = visible_follows(session, user.external_userid)
    if not follows:
        raise ApiError(84061)
    return {
        "external_contact": external_contact_dict(sim, user),
        "follow_user": [follow_user_dict(session, f) for f in follows],
    }


def customer_list(session: Session, userid: Any) -> list[str]:
    member = member_or_error(session, userid, customers=True)
    return list(
        session.scalars(
            select(Follow.external_userid)
            .where(Follow.userid == member.userid, Follow.status != "member_deleted")
            .order_by(Follow.createtime, Follow.id)
        )
    )


def batch_get_by_user(session: Session, sim, data: dict[str, Any]) -> dict[str, Any]:
    userids = data.get("userid_list") or []
    if not isinstance(userids, list) or not userids:
        raise ApiError(40058, "userid_list is empty")
    if len(userids) > 100:
        raise ApiError(40058, "userid_list exceeds 100")
    for userid in userids:
        member_or_error(session, userid, customers=True)
    limit = page_limit(data.get("limit"), 50, 100)
    offset = page_offset(data.get("cursor"))
    rows = session.execute(
        select(Follow, WechatUser)
        .join(WechatUser, WechatUser.external_userid == Follow.external_userid)
        .where(Follow.userid.in_(userids), Follow.status != "member_deleted")
        .order_by(Follow.id)
        .offset(offset)
        .limit(limit + 1)
    ).all()
    items = []
    for follow, user in rows[:limit]:
        info = follow_user_dict(session, follow)
        info["tag_id"] = [t["tag_id"] for t in info.pop("tags")]
        items.append({"external_contact": external_contact_dict(sim, user), "follow_info": info})
    return {
        "external_contact_list": items,
        "next_cursor": str(offset + limit) if len(rows) > limit else "",
    }


def follow_user_list(session: Session) -> list[str]:
    return [m.userid for m in active_members(session) if m.customer_contact]


# ---------------------------------------------------------------- tags

def _tag_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 30:
        raise ApiError(40072)
    return value


def _group_dict(group: TagGroup, tags: list[Tag], *, with_deleted: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "group_id": group.group_id,
        "group_name": group.name,
        "create_time": int(group.create_time),
        "order": group.order,
        "tag": [],
    }
    if with_deleted:
        data["deleted"] = group.deleted
    for tag in sorted(tags, key=lambda t: (-t.order, t.create_time)):
        item = {"id": tag.id, "name": tag.name, "create_time": int(tag.create_time), "order": tag.order}
        if with_deleted:
            item["deleted"] = tag.deleted
        data["tag"].append(item)
    return data


def tag_list(session: Session, data: dict[str, Any]) -> list[dict[str, Any]]:
    group_ids, tag_ids = data.get("group_id") or [], data.get("tag_id") or []
    if group_ids:
        groups = session.scalars(select(TagGroup).where(TagGroup.group_id.in_(group_ids))).all()
        return [
            _group_dict(g, list(session.scalars(select(Tag).where(Tag.group_id == g.group_id))), with_deleted=True)
            for g in groups
        ]
    if tag_ids:
        tags = session.scalars(select(Tag).where(Tag.id.in_(tag_ids))).all()
        by_group: dict[str, list[Tag]] = {}
        for tag in tags:
            by_group.setdefault(tag.group_id, []).append(tag)
        return [_group_dict(session.get(TagGroup, gid), ts, with_deleted=True) for gid, ts in by_group.items()]
    groups = session.scalars(
        select(TagGroup).where(TagGroup.deleted.is_(False)).order_by(TagGroup.order.desc(), TagGroup.create_time)
    ).all()
    return [
        _group_dict(g, list(session.scalars(select(Tag).where(Tag.group_id == g.group_id, Tag.deleted.is_(False)))))
        for g in groups
    ]


def add_tags(session: Session, sim, data: dict[str, Any]) -> tuple[TagGroup, list[Tag]]:
    entries = data.get("tag") or []
    if not isinstance(entries, list) or not entries:
        raise ApiError(40058, "tag is empty")
    now = sim.now()
    if data.get("group_id"):
        group = session.get(TagGroup, data["group_id"])
        if group is None or group.deleted:
            raise ApiError(40068, "group_id")
    else:
        name = _tag_name(data.get("group_name"))
        group = session.scalar(select(TagGroup).where(TagGroup.name == name, TagGroup.deleted.is_(False)))
        if group is None:
            group = TagGroup(group_id=ids.tag_id(), name=name, order=int(data.get("order") or 0), create_time=now)
            session.add(group)
            session.flush()
    created: list[Tag] = []
    for entry in entries:
        entry = entry if isinstance(entry, dict) else {"name": entry}
        name = _tag_name(entry.get("name"))
        tag = session.scalar(
            select(Tag).where(Tag.group_id == group.group_id, Tag.name == name, Tag.deleted.is_(False))
        )
        if tag is None:
            tag = Tag(id=ids.tag_id(), group_id=group.group_id, name=name, order=int(entry.get("order") or 0),
                      create_time=now)
            session.add(tag)
            session.flush()
        if tag not in created:
            created.append(tag)
    return group, created


def tag_group_dict(group: TagGroup, tags: list[Tag]) -> dict[str, Any]:
    return _group_dict(group, tags)


def edit_tag(session: Session, data: dict[str, Any]) -> TagGroup | Tag:
    target: TagGroup | Tag | None = session.get(Tag, data.get("id") or "") or session.get(TagGroup, data.get("id") or "")
    if target is None or target.deleted:
        raise ApiError(40068)
    if data.get("name") is not None:
        name = _tag_name(data["name"])
        if isinstance(target, Tag):
            clash = select(Tag).where(Tag.group_id == target.group_id, Tag.name == name, Tag.id != target.id,
                                      Tag.deleted.is_(False))
        else:
            clash = select(TagGroup).where(TagGroup.name == name, TagGroup.group_id != target.group_id,
                                           TagGroup.deleted.is_(False))
        if session.scalars(clash).first() is not None:
            raise ApiError(40071)
        target.name = name
    if data.get("order") is not None:
        target.order = int(data["order"])
    return target


def delete_tags(session: Session, data: dict[str, Any]) -> list[str]:
    """Returns the ids of the tags deleted (group deletes included)."""
    tag_ids, group_ids = data.get("tag_id") or [], data.get("group_id") or []
    if not tag_ids and not group_ids:
        raise ApiError(40058, "tag_id and group_id are both empty")
    deleted: list[str] = []
    for tid in tag_ids:
        tag = session.get(Tag, tid)
        if tag is None or tag.deleted:
            raise ApiError(40068, tid)
        tag.deleted = True
        deleted.append(tid)
    for gid in group_ids:
        group = session.get(TagGroup, gid)
        if group is None or group.deleted:
            raise ApiError(40068, gid)
        group.deleted = True
        for tag in session.scalars(select(Tag).where(Tag.group_id == gid, Tag.deleted.is_(False))):
            tag.deleted = True
            deleted.append(tag.id)
    session.flush()
    for group in session.scalars(select(TagGroup).where(TagGroup.deleted.is_(False))):
        alive = session.scalar(select(func.count()).where(Tag.group_id == group.group_id, Tag.deleted.is_(False)))
        if not alive:
            group.deleted = True
    return deleted


def mark_tag(session: Session, data: dict[str, Any]) -> Follow:
    add, remove = list(data.get("add_tag") or []), list(data.get("remove_tag") or [])
    if not add and not remove:
        raise ApiError(40058, "add_tag and remove_tag are both empty")
    member = member_or_error(session, data.get("userid"), customers=True)
    user = wechat_user_by_external(session, data.get("external_userid"))
    follow = follow_or_error(session, member.userid, user.external_userid)
    for tid in add + remove:
        tag = session.get(Tag, tid)
        if tag is None or tag.deleted:
            raise ApiError(40068, tid)
    current = [t for t in follow.tag_ids if t not in remove]
    current += [t for t in add if t not in current]
    follow.tag_ids = current
    return follow


# ---------------------------------------------------------------- user actions (emit callbacks)

def wechat_user_or_action_error(session: Session, wechat_user: str | None) -> WechatUser:
    user = session.get(WechatUser, wechat_user or "")
    if user is None:
        raise ActionError(f"没有这个微信用户: {wechat_user}")
    return user


def _pick_member(session: Session, way: ContactWay, user: WechatUser) -> str:
    candidates = list(way.users)
    if way.party:
        candidates += [m.userid for m in active_members(session) if m.customer_contact and m.userid not in candidates]
    candidates = [u for u in candidates if (m := session.get(Member, u)) is not None and m.resigned_at is None]
    if not candidates:
        raise ActionError("这个「联系我」二维码已没有可用的成员")
    if way.is_exclusive or way.type == 2:
        for follow in session.scalars(
            select(Follow).where(Follow.external_userid == user.external_userid, Follow.status == "active")
        ):
            if follow.userid in candidates:
                return follow.userid
    chosen = candidates[way.rotation % len(candidates)]
    way.rotation += 1
    return chosen


def scan(session: Session, sim, wechat_user: str, config_id: str) -> dict[str, Any]:
    """A diner scans a contact-me code: the member gains a customer and WeCom says so."""
    user = wechat_user_or_action_error(session, wechat_user)
    way = session.get(ContactWay, config_id or "")
    if way is None:
        raise ActionError("二维码已失效")
    userid = _pick_member(session, way, user)
    follow = session.scalar(
        select(Follow).where(Follow.userid == userid, Follow.external_userid == user.external_userid)
    )
    result = {"userid": userid, "external_userid": user.external_userid, "state": way.state}
    if follow is not None and follow.status == "active":
        return {**result, "added": False, "welcome_code": None}
    now = sim.now()
    if follow is None:
        follow = Follow(userid=userid, external_userid=user.external_userid, createtime=now)
        session.add(follow)
    follow.status, follow.createtime, follow.state = "active", now, way.state
    follow.add_way, follow.oper_userid, follow.tag_ids = 1, user.external_userid, []
    code = None
    if way.welcome_text:
        deliver(session, sim, user.id, userid, {"text": {"content": way.welcome_text}}, source="welcome")
    else:
        code = ids.welcome_code()
        session.add(WelcomeCode(code=code, userid=userid, external_userid=user.external_userid, created_at=now))
    emit(session, sim, "change_external_contact", "add_external_contact", UserID=userid,
         ExternalUserID=user.external_userid, State=way.state, WelcomeCode=code)
    return {**result, "added": True, "welcome_code": code}


def delete_contact(session: Session, sim, wechat_user: str, userid: str, by: str = "customer") -> None:
    """``by="customer"``: the diner deletes the member (del_follow_user);
    ``by="member"``: the member deletes the diner in the console (del_external_contact)."""
    user = wechat_user_or_action_error(session, wechat_user)
    follow = visible_follow(session, userid, user.external_userid)
    if follow is None:
        raise ActionError("不是好友关系")
    if by == "customer":
        if follow.status != "active":
            raise ActionError("已经删除过了")
        follow.status = "customer_deleted"
        change = "del_follow_user"
    elif by == "member":
        follow.status = "member_deleted"
        change = "del_external_contact"
    else:
        raise ActionError("by 只能是 customer 或 member")
    emit(session, sim, "change_external_contact", change, UserID=userid, ExternalUserID=user.external_userid)


def console_edit_contact(session: Session, sim, userid: str, wechat_user: str, *, remark: str | None = None,
                         description: str | None = None, add_tag: list[str] = (), remove_tag: list[str] = ()) -> None:
    """A member edits a customer in the WeCom app: edit_external_contact."""
    user = wechat_user_or_action_error(session, wechat_user)
    follow = visible_follow(session, userid, user.external_userid)
    if follow is None:
        raise ActionError("不是好友关系")
    if remark is not None:
        follow.remark = remark[:30]
    if description is not None:
        follow.description = description[:150]
    if add_tag or remove_tag:
        for tid in [*add_tag, *remove_tag]:
            tag = session.get(Tag, tid)
            if tag is None or tag.deleted:
                raise ActionError(f"没有这个标签: {tid}")
        current = [t for t in follow.tag_ids if t not in remove_tag]
        follow.tag_ids = current + [t for t in add_tag if t not in current]
    emit(session, sim, "change_external_contact", "edit_external_contact", UserID=userid,
         ExternalUserID=user.external_userid)


def console_tag_change(session: Session, sim, action: str, data: dict[str, Any]) -> dict[str, Any]:
    """The admin edits corp tags in the console: the API rules, plus change_external_tag events."""
    try:
        if action == "create":
            group, tags = add_tags(session, sim, data)
            for tag in tags:
                emit(session, sim, "change_external_tag", "create", Id=tag.id, TagType="tag")
            return tag_group_dict(group, tags)
        if action == "update":
            target = edit_tag(session, data)
            kind = "tag" if isinstance(target, Tag) else "tag_group"
            emit(session, sim, "change_external_tag", "update", Id=data["id"], TagType=kind)
            return {"id": data["id"]}
        if action == "delete":
            delete_tags(session, data)
            for gid in data.get("group_id") or []:
                emit(session, sim, "change_external_tag", "delete", Id=gid, TagType="tag_group")
            for tid in data.get("tag_id") or []:
                emit(session, sim, "change_external_tag", "delete", Id=tid, TagType="tag")
            return {}
    except ApiError as exc:
        raise ActionError(f"{exc.errcode} {exc.detail}".strip()) from exc
    raise ActionError("action 只能是 create、update 或 delete")
