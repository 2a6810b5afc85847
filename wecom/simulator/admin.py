"""``/sim/admin/…``: JSON knobs for tests and operators (faults, tokens, config, reset) and
test-driving endpoints that do what the phone and console pages do."""
from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, current_app, jsonify, render_template, request
from sqlalchemy import select

from wecom.simulator import groups, ids, messaging, services
from wecom.simulator.models import (
    Callback,
    ContactWay,
    Follow,
    GroupChat,
    MassMessage,
    MassTarget,
    MassTask,
    Member,
    WechatUser,
    WelcomeCode,
)
from wecom.simulator.seed import seed
from wecom.simulator.services import ActionError

bp = Blueprint("wecom_sim_admin", __name__, url_prefix="/sim/admin")

SCAN_URL = re.compile(r"/phone/scan/([0-9a-f]{32})|/qr/([0-9a-f]{32})\.png")


def _sim():
    return current_app.extensions["wecom_sim"]


def _body() -> dict[str, Any]:
    return request.get_json(silent=True) or {}


@bp.errorhandler(ActionError)
def _action_error(exc: ActionError):
    return jsonify({"ok": False, "error": str(exc)}), 400


@bp.errorhandler(ValueError)
def _value_error(exc: ValueError):
    return jsonify({"ok": False, "error": str(exc)}), 400


# ---------------------------------------------------------------- knobs

@bp.get("/faults")
def faults_list():
    return jsonify({"faults": _sim().faults.list()})


@bp.post("/faults")
def faults_add():
    body = request.get_json(silent=True)
    specs = body if isinstance(body, list) else [body or {}]
    added = [_sim().faults.add(spec) for spec in specs]
    return jsonify({"ok": True, "added": added, "faults": _sim().faults.list()})


@bp.delete("/faults")
def faults_clear():
    _sim().faults.clear()
    return jsonify({"ok": True, "faults": []})


@bp.post("/tokens/expire")
def tokens_expire():
    sim = _sim()
    with sim.transaction() as session:
        count = services.expire_tokens(session, sim)
    return jsonify({"ok": True, "expired": count})


@bp.post("/reset")
def reset():
    """Wipe everything (state, faults) and reseed the demo corp."""
    sim = _sim()
    sim.faults.clear()
    with sim.write_lock:
        sim.drop_schema()
        sim.create_schema()
        with sim.transaction() as session:
            seed(session, sim.settings.corp_id)
    return jsonify({"ok": True})


@bp.route("/config", methods=["GET", "POST"])
def config():
    sim = _sim()
    if request.method == "POST":
        sim.settings.update(_body())
    return jsonify(sim.settings.public())


# ---------------------------------------------------------------- directory

@bp.get("/members")
def members():
    with _sim().reading() as session:
        rows = session.scalars(select(Member).order_by(Member.userid)).all()
        return jsonify({"members": [
            {"userid": m.userid, "name": m.name, "customer_contact": m.customer_contact,
             "resigned": m.resigned_at is not None} for m in rows
        ]})


@bp.post("/members/<userid>/resign")
def resign(userid: str):
    sim = _sim()
    with sim.transaction() as session:
        groups.resign_member(session, sim, userid)
    return jsonify({"ok": True})


@bp.get("/wechat_users")
def wechat_users():
    with _sim().reading() as session:
        rows = session.scalars(select(WechatUser).order_by(WechatUser.id)).all()
        return jsonify({"wechat_users": [
            {"id": u.id, "nickname": u.nickname, "external_userid": u.external_userid, "unionid": u.unionid}
            for u in rows
        ]})


MAX_NEW_USERS = 10_000


@bp.post("/wechat_users")
def wechat_users_add():
    """``{"handles": [...], "nickname": "…"}``: new WeChat users who can scan codes (load tests,
    a crowd at a poster). Existing handles are left as they are."""
    body, sim = _body(), _sim()
    handles = body.get("handles")
    if not isinstance(handles, list) or not handles or len(handles) > MAX_NEW_USERS:
        raise ActionError(f"handles: 1..{MAX_NEW_USERS} 个微信号")
    handles = [str(h) for h in handles]
    if any(not h or len(h) > 64 for h in handles):
        raise ActionError("微信号长度 1..64")
    nickname = str(body.get("nickname") or "食客")[:32]
    with sim.transaction() as session:
        known = set(session.scalars(select(WechatUser.id).where(WechatUser.id.in_(handles))))
        for n, handle in enumerate(h for h in dict.fromkeys(handles) if h not in known):
            session.add(WechatUser(id=handle, nickname=f"{nickname}{n + 1}", gender=0, unionid=ids.unionid(handle),
                                   external_userid=ids.external_userid(sim.settings.corp_id, handle)))
        users = session.scalars(select(WechatUser).where(WechatUser.id.in_(handles))).all()
        out = {u.id: u.external_userid for u in users}
    return jsonify({"ok": True, "created": len(out) - len(known), "external_userids": out})


@bp.get("/welcome_codes")
def welcome_codes():
    """Every welcome code WeCom handed out, when, and when (if ever) it was used: what a load
    test reads to judge the 20-second window from WeCom's side."""
    since = request.args.get("since", type=float) or 0.0
    with _sim().reading() as session:
        rows = session.scalars(
            select(WelcomeCode).where(WelcomeCode.created_at >= since).order_by(WelcomeCode.created_at)
        ).all()
        return jsonify({"welcome_codes": [
            {"code": c.code, "userid": c.userid, "external_userid": c.external_userid,
             "created_at": c.created_at, "used_at": c.used_at} for c in rows
        ]})


@bp.get("/contacts")
def contacts():
    """Every member ↔ customer relationship, with its status."""
    with _sim().reading() as session:
        rows = session.scalars(select(Follow).order_by(Follow.id)).all()
        return jsonify({"contacts": [
            {"userid": f.userid, "external_userid": f.external_userid, "status": f.status, "state": f.state,
             "tag_ids": f.tag_ids, "remark": f.remark} for f in rows
        ]})


@bp.post("/contacts")
def contacts_add():
    """``{"userid": "zhangwei", "wechat_users": [...], "state": "…"}``: these WeChat users are
    now the member's customers, with no add event (seeding a neighbourhood for load tests).
    Existing relationships are left as they are."""
    body, sim = _body(), _sim()
    handles = body.get("wechat_users")
    if not isinstance(handles, list) or not handles or len(handles) > MAX_NEW_USERS:
        raise ActionError(f"wechat_users: 1..{MAX_NEW_USERS} 个微信号")
    with sim.transaction() as session:
        member = session.get(Member, str(body.get("userid") or ""))
        if member is None:
            raise ActionError("没有这个成员")
        users = session.scalars(select(WechatUser).where(WechatUser.id.in_([str(h) for h in handles]))).all()
        known = set(session.scalars(select(Follow.external_userid).where(
            Follow.userid == member.userid, Follow.external_userid.in_([u.external_userid for u in users]))))
        now = sim.now()
        for user in users:
            if user.external_userid not in known:
                session.add(Follow(userid=member.userid, external_userid=user.external_userid, createtime=now,
                                   state=str(body.get("state") or "")[:30]))
    return jsonify({"ok": True, "added": len(users) - len(known), "unknown": len(set(handles)) - len(users)})


@bp.get("/mass_messages")
def mass_messages():
    """Every mass message with its tasks and recipients: WeCom's own record of who was sent
    what by whom (what a crash test judges duplicates and gaps by)."""
    with _sim().reading() as session:
        messages = session.scalars(select(MassMessage).order_by(MassMessage.created_at, MassMessage.msgid)).all()
        tasks = session.scalars(select(MassTask).order_by(MassTask.id)).all()
        targets = session.scalars(select(MassTarget).order_by(MassTarget.id)).all()
        by_task: dict[tuple[str, str], list[dict]] = {}
        for t in targets:
            by_task.setdefault((t.msgid, t.userid), []).append(
                {"external_userid": t.external_userid, "chat_id": t.chat_id, "status": t.status})
        out = {m.msgid: {"msgid": m.msgid, "chat_type": m.chat_type, "created_at": m.created_at, "text": m.text,
                         "attachments": m.attachments, "tasks": []} for m in messages}
        for task in tasks:
            out[task.msgid]["tasks"].append({"userid": task.userid, "status": task.status, "cancelled": task.cancelled,
                                             "targets": by_task.get((task.msgid, task.userid), [])})
        return jsonify({"mass_messages": list(out.values())})


@bp.get("/groups")
def group_chats():
    with _sim().reading() as session:
        rows = session.scalars(select(GroupChat).order_by(GroupChat.create_time)).all()
        return jsonify({"groups": [groups.group_dict(session, g, need_name=True) for g in rows]})


@bp.post("/contact_ways/<config_id>/welcome")
def contact_way_welcome(config_id: str):
    """Configure (or clear with null) a console welcome: add events then carry no WelcomeCode."""
    sim = _sim()
    with sim.transaction() as session:
        way = session.get(ContactWay, config_id)
        if way is None:
            raise ActionError("没有这个「联系我」")
        way.welcome_text = _body().get("text") or None
    return jsonify({"ok": True})


# ---------------------------------------------------------------- user actions

def _config_id_from(body: dict[str, Any]) -> str:
    if body.get("config_id"):
        return body["config_id"]
    match = SCAN_URL.search(body.get("url") or "")
    if not match:
        raise ActionError("需要 config_id 或扫码 URL")
    return match.group(1) or match.group(2)


@bp.post("/scan")
def scan():
    body, sim = _body(), _sim()
    with sim.transaction() as session:
        result = services.scan(session, sim, body.get("wechat_user"), _config_id_from(body))
    return jsonify({"ok": True, **result})


@bp.post("/delete_contact")
def delete_contact():
    """``{"wechat_user", "userid", "by": "customer"|"member"}`` (default customer)."""
    body, sim = _body(), _sim()
    with sim.transaction() as session:
        wechat_user = body.get("wechat_user") or _wechat_user_for(session, body.get("external_userid"))
        services.delete_contact(session, sim, wechat_user, body.get("userid"), body.get("by", "customer"))
    return jsonify({"ok": True})


@bp.post("/edit_contact")
def edit_contact():
    body, sim = _body(), _sim()
    with sim.transaction() as session:
        wechat_user = body.get("wechat_user") or _wechat_user_for(session, body.get("external_userid"))
        services.console_edit_contact(
            session, sim, body.get("userid"), wechat_user, remark=body.get("remark"),
            description=body.get("description"), add_tag=body.get("add_tag") or [],
            remove_tag=body.get("remove_tag") or [],
        )
    return jsonify({"ok": True})


@bp.post("/console_tags")
def console_tags():
    """``{"action": "create"|"update"|"delete", ...API fields}`` → change_external_tag."""
    body, sim = _body(), _sim()
    with sim.transaction() as session:
        result = services.console_tag_change(session, sim, body.pop("action", ""), body)
    return jsonify({"ok": True, "result": result})


@bp.post("/groups/<chat_id>/join")
def group_join(chat_id: str):
    sim = _sim()
    with sim.transaction() as session:
        groups.join_group(session, sim, _body().get("wechat_user"), chat_id)
    return jsonify({"ok": True})


@bp.post("/groups/<chat_id>/leave")
def group_leave(chat_id: str):
    sim = _sim()
    with sim.transaction() as session:
        groups.leave_group(session, sim, _body().get("wechat_user"), chat_id)
    return jsonify({"ok": True})


@bp.post("/transfers/refuse")
def transfer_refuse():
    sim = _sim()
    with sim.transaction() as session:
        external_userid = _body().get("external_userid")
        if not external_userid and _body().get("wechat_user"):
            external_userid = services.wechat_user_or_action_error(session, _body()["wechat_user"]).external_userid
        groups.refuse_transfer(session, sim, external_userid)
    return jsonify({"ok": True})


@bp.get("/inbox/<wechat_user>")
def inbox(wechat_user: str):
    with _sim().reading() as session:
        services.wechat_user_or_action_error(session, wechat_user)
        return jsonify({"wechat_user": wechat_user, "messages": messaging.inbox(session, wechat_user)})


@bp.post("/confirm/<msgid>")
def confirm(msgid: str):
    """A member confirms a mass-message task (all members when no ``userid`` is given)."""
    sim = _sim()
    with sim.transaction() as session:
        try:
            sent = messaging.confirm(session, sim, msgid, _body().get("userid"))
        except LookupError:
            raise ActionError(f"没有这条群发: {msgid}") from None
    return jsonify({"ok": True, "tasks_sent": sent})


def _wechat_user_for(session, external_userid: str | None) -> str | None:
    user = session.scalar(select(WechatUser).where(WechatUser.external_userid == (external_userid or "")))
    return user.id if user else None


# ---------------------------------------------------------------- callbacks log

@bp.get("/callbacks")
def callbacks():
    sim = _sim()
    with sim.reading() as session:
        rows = session.scalars(select(Callback).order_by(Callback.id.desc()).limit(200)).all()
        items = [
            {"id": c.id, "event": c.event, "change_type": c.change_type, "status": c.status,
             "attempts": c.attempts, "last_status": c.last_status, "last_error": c.last_error,
             "url": c.url, "created_at": c.created_at, "finished_at": c.finished_at, "xml": c.plaintext}
            for c in rows
        ]
    if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html":
        return render_template("sim/callbacks.html", callbacks=items)
    return jsonify({"callbacks": items})
