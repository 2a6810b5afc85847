"""Pages for people: the diner's phone (``/phone/…``), the staff console (``/console/…``),
QR images and avatars. Plain HTML forms, no JavaScript framework."""
from __future__ import annotations

import io
import re
from html import escape

import qrcode
from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from wecom.simulator import groups, messaging, services
from wecom.simulator.models import ContactWay, Follow, GroupChat, GroupMember, Member, Transfer, WechatUser
from wecom.simulator.services import ActionError

bp = Blueprint("wecom_sim_pages", __name__)

COLOURS = ("#07c160", "#1989fa", "#ff976a", "#ee0a24", "#7232dd", "#ffb400", "#00a6a6", "#8a6d3b")
CONFIG_ID = re.compile(r"([0-9a-f]{32})")


def _sim():
    return current_app.extensions["wecom_sim"]


@bp.get("/")
def index():
    return render_template("sim/index.html")


# ---------------------------------------------------------------- images

@bp.get("/qr/<config_id>.png")
def qr_png(config_id: str):
    with _sim().reading() as session:
        if session.get(ContactWay, config_id) is None:
            abort(404)
    image = qrcode.make(services.scan_url(_sim(), config_id), box_size=8, border=2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return Response(buffer.getvalue(), content_type="image/png")


@bp.get("/avatar/<kind>/<key>.svg")
def avatar(kind: str, key: str):
    with _sim().reading() as session:
        if kind == "wechat":
            row = session.get(WechatUser, key)
            label = row.nickname if row else "?"
        else:
            row = session.get(Member, key)
            label = row.name if row else "?"
    colour = COLOURS[sum(map(ord, key)) % len(COLOURS)]
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96" viewBox="0 0 96 96">'
        f'<rect width="96" height="96" rx="12" fill="{colour}"/>'
        '<text x="48" y="62" font-size="44" text-anchor="middle" fill="#fff" '
        f'font-family="sans-serif">{escape(label[-1:])}</text></svg>'
    )
    return Response(svg, content_type="image/svg+xml")


# ---------------------------------------------------------------- phone

@bp.get("/phone/")
def phone_list():
    with _sim().reading() as session:
        users = session.scalars(select(WechatUser).order_by(WechatUser.id)).all()
    return render_template("sim/phone_list.html", users=users)


def _phone_context(session, sim, user: WechatUser) -> dict:
    """What the phone shows below the scanner: handover notices, chats, groups."""
    follows = session.scalars(select(Follow).where(Follow.external_userid == user.external_userid,
                                                   Follow.status == "active")).all()
    members = {m.userid: m for m in session.scalars(select(Member))}
    chats: dict[str, list[dict]] = {}
    for message in messaging.inbox(session, user.id):
        key = message["chat_id"] or message["from"]
        chats.setdefault(key, []).append(message)
    my_groups = groups.groups_of(session, user.external_userid)
    other_groups = [g for g in session.scalars(select(GroupChat)) if g not in my_groups]
    pending = session.scalars(select(Transfer).where(Transfer.external_userid == user.external_userid,
                                                     Transfer.status == 2, Transfer.kind == "onjob")).all()
    return dict(user=user, follows=follows, members=members, chats=chats, my_groups=my_groups,
                other_groups=other_groups, pending=pending,
                group_names={g.chat_id: g.name for g in [*my_groups, *other_groups]},
                avatar=lambda kind, key: services.avatar_url(sim, kind, key))


@bp.get("/phone/<wechat_user>")
def phone(wechat_user: str):
    sim = _sim()
    with sim.reading() as session:
        user = session.get(WechatUser, wechat_user) or abort(404)
        ways = session.scalars(select(ContactWay).where(ContactWay.scene == 2).order_by(ContactWay.created_at.desc())
                               .limit(30)).all()
        return render_template("sim/phone.html", ways=ways, qr_url=lambda w: services.qr_code_url(sim, w),
                               **_phone_context(session, sim, user))


@bp.get("/phone/<wechat_user>/live")
def phone_live(wechat_user: str):
    """The phone's chats, groups and notices alone: the page polls this, so a welcome message
    or a mass send shows up without a reload."""
    sim = _sim()
    with sim.reading() as session:
        user = session.get(WechatUser, wechat_user) or abort(404)
        html = render_template("sim/_phone_live.html", **_phone_context(session, sim, user))
    return Response(html, content_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})


def _run(action):
    sim = _sim()
    try:
        with sim.transaction() as session:
            result = action(session, sim)
    except ActionError as exc:
        flash(str(exc), "error")
        return None
    return result or True


def _flash_scan(result) -> bool:
    """Say how a scan went, naming the member as the diner sees them (not the userid);
    False when it failed (``_run`` already flashed why)."""
    if not isinstance(result, dict):
        return False
    with _sim().reading() as session:
        member = session.get(Member, result["userid"])
        name = member.name if member and member.name else result["userid"]
    flash(_("已添加 %(name)s 为好友", name=name) if result["added"] else _("已经和 %(name)s 是好友了", name=name), "ok")
    return True


@bp.post("/phone/<wechat_user>/scan")
def phone_scan_post(wechat_user: str):
    match = CONFIG_ID.search(request.form.get("code", ""))
    if not match:
        flash(_("没有识别到「联系我」二维码"), "error")
        return redirect(url_for(".phone", wechat_user=wechat_user))
    _flash_scan(_run(lambda s, sim: services.scan(s, sim, wechat_user, match.group(1))))
    return redirect(url_for(".phone", wechat_user=wechat_user))


@bp.post("/phone/<wechat_user>/delete")
def phone_delete(wechat_user: str):
    userid = request.form.get("userid", "")
    if _run(lambda s, sim: services.delete_contact(s, sim, wechat_user, userid, "customer")):
        flash(_("已删除联系人"), "ok")
    return redirect(url_for(".phone", wechat_user=wechat_user))


@bp.post("/phone/<wechat_user>/groups/<chat_id>/<action>")
def phone_group(wechat_user: str, chat_id: str, action: str):
    fn = {"join": groups.join_group, "leave": groups.leave_group}.get(action) or abort(404)
    if _run(lambda s, sim: fn(s, sim, wechat_user, chat_id)):
        flash(_("已加入群聊") if action == "join" else _("已退出群聊"), "ok")
    return redirect(url_for(".phone", wechat_user=wechat_user))


@bp.post("/phone/<wechat_user>/refuse")
def phone_refuse(wechat_user: str):
    def refuse(session, sim):
        user = services.wechat_user_or_action_error(session, wechat_user)
        groups.refuse_transfer(session, sim, user.external_userid)

    if _run(refuse):
        flash(_("已拒绝转接"), "ok")
    return redirect(url_for(".phone", wechat_user=wechat_user))


@bp.route("/phone/scan/<config_id>", methods=["GET", "POST"])
def phone_scan(config_id: str):
    """What the QR code encodes: pick the diner who scans (or ``?as=``), then add."""
    who = request.values.get("as")
    if who:
        if _flash_scan(_run(lambda s, sim: services.scan(s, sim, who, config_id))):
            return redirect(url_for(".phone", wechat_user=who))
    with _sim().reading() as session:
        way = session.get(ContactWay, config_id) or abort(404)
        users = session.scalars(select(WechatUser).order_by(WechatUser.id)).all()
        return render_template("sim/phone_scan.html", way=way, users=users)


# ---------------------------------------------------------------- console

@bp.get("/console/")
def console_list():
    with _sim().reading() as session:
        members = session.scalars(select(Member).order_by(Member.userid)).all()
    return render_template("sim/console_list.html", members=members)


@bp.get("/console/<userid>")
def console(userid: str):
    sim = _sim()
    with sim.reading() as session:
        member = session.get(Member, userid) or abort(404)
        customers = session.execute(
            select(Follow, WechatUser).join(WechatUser, WechatUser.external_userid == Follow.external_userid)
            .where(Follow.userid == userid, Follow.status != "member_deleted").order_by(Follow.createtime.desc())
        ).all()
        tasks = messaging.pending_tasks(session, userid)
        owned = session.scalars(select(GroupChat).where(GroupChat.owner == userid)).all()
        sizes = {g.chat_id: len(session.scalars(select(GroupMember).where(GroupMember.chat_id == g.chat_id)).all())
                 for g in owned}
        return render_template("sim/console.html", member=member, customers=customers, tasks=tasks, owned=owned,
                               sizes=sizes, avatar=lambda kind, key: services.avatar_url(sim, kind, key))


@bp.post("/console/<userid>/confirm/<msgid>")
def console_confirm(userid: str, msgid: str):
    if _run(lambda s, sim: messaging.confirm(s, sim, msgid, userid)):
        flash(_("已发送"), "ok")
    return redirect(url_for(".console", userid=userid))


@bp.post("/console/<userid>/delete")
def console_delete(userid: str):
    wechat_user = request.form.get("wechat_user", "")
    if _run(lambda s, sim: services.delete_contact(s, sim, wechat_user, userid, "member")):
        flash(_("已删除客户"), "ok")
    return redirect(url_for(".console", userid=userid))


@bp.post("/console/<userid>/remark")
def console_remark(userid: str):
    wechat_user, remark = request.form.get("wechat_user", ""), request.form.get("remark", "")
    if _run(lambda s, sim: services.console_edit_contact(s, sim, userid, wechat_user, remark=remark)):
        flash(_("备注已保存"), "ok")
    return redirect(url_for(".console", userid=userid))
