"""``/cgi-bin/…``: the WeCom server API as the app sees it.

Every answer is HTTP 200 with ``errcode``/``errmsg`` (except injected ``http_status``
faults). Each call runs in one transaction; ``ApiError`` rolls it back.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, request
from sqlalchemy.orm import Session

from wecom.simulator import groups, messaging, services
from wecom.simulator.errors import ApiError, errmsg

bp = Blueprint("wecom_sim_api", __name__, url_prefix="/cgi-bin")

Handler = Callable[[Session, Any, dict[str, Any]], dict[str, Any] | None]
HANDLERS: dict[str, Handler] = {}


def api(path: str):
    def register(fn: Handler) -> Handler:
        HANDLERS[path] = fn
        return fn

    return register


def _sim():
    return current_app.extensions["wecom_sim"]


def _reply(payload: dict[str, Any], status: int = 200) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status=status, content_type="application/json; charset=UTF-8")


def _error(code: int, detail: str = "") -> Response:
    return _reply({"errcode": code, "errmsg": errmsg(code, _sim().now(), request.remote_addr or "127.0.0.1", detail)})


def _request_data() -> dict[str, Any]:
    data: dict[str, Any] = {k: v for k, v in request.args.items() if k != "access_token"}
    raw = request.get_data(cache=True)
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(47001) from None
        if not isinstance(body, dict):
            raise ApiError(47001)
        data.update(body)
    return data


# APIs WeCom limits by concurrent calls per corp (45033 beyond): path -> settings knob.
CONCURRENCY_LIMITS = {"externalcontact/mark_tag": "tag_concurrency"}


@bp.route("/<path:api_path>", methods=["GET", "POST"])
def dispatch(api_path: str) -> Response:
    sim = _sim()
    api_path = api_path.strip("/")
    knob = CONCURRENCY_LIMITS.get(api_path)
    if knob is None:
        return _call(sim, api_path)
    limit = int(getattr(sim.settings, knob))
    if not sim.in_flight.enter(api_path, limit):
        return _error(45033, f"more than {limit} concurrent calls")
    try:
        return _call(sim, api_path)
    finally:
        sim.in_flight.leave(api_path)


def _call(sim, api_path: str) -> Response:
    fault = sim.faults.take(api_path)
    if fault and fault.get("after"):  # WeCom did the work; the answer never reached the caller
        _carry_out(sim, api_path)
        return _faulty(fault) or _error(-1, "simulated fault after the call")
    if fault:
        answer = _faulty(fault)
        if answer is not None:
            return answer
    return _carry_out(sim, api_path)


def _faulty(fault: dict) -> Response | None:
    if fault.get("latency_ms"):
        time.sleep(fault["latency_ms"] / 1000)
    if fault.get("http_status"):
        status = fault["http_status"]
        return Response(f"<html><body><h1>{status}</h1>simulated upstream failure</body></html>",
                        status=status, content_type="text/html")
    if "errcode" in fault:
        return _error(fault["errcode"], "simulated fault")
    return None


def _carry_out(sim, api_path: str) -> Response:
    handler = HANDLERS.get(api_path)
    if handler is None:
        return _error(48001, f"unknown api {api_path}")
    try:
        data = _request_data()
        with sim.transaction() as session:
            if api_path != "gettoken":
                services.check_token(session, sim, request.args.get("access_token"))
            result = handler(session, sim, data) or {}
    except ApiError as exc:
        return _error(exc.errcode, exc.detail)
    return _reply({"errcode": 0, "errmsg": "ok", **result})


# ---------------------------------------------------------------- token and members

@api("gettoken")
def gettoken(session, sim, data):
    token = services.issue_token(session, sim, data.get("corpid"), data.get("corpsecret"))
    return {"access_token": token.token, "expires_in": max(0, int(token.expires_at - sim.now()))}


@api("user/get")
def user_get(session, sim, data):
    return services.user_get(session, sim, data.get("userid"))


@api("user/simplelist")
def user_simplelist(session, sim, data):
    return {"userlist": services.user_simplelist(session, data.get("department_id"))}


@api("user/list_id")
def user_list_id(session, sim, data):
    return services.user_list_id(session, data.get("cursor"), data.get("limit"))


# ---------------------------------------------------------------- contact ways

@api("externalcontact/add_contact_way")
def add_contact_way(session, sim, data):
    way = services.add_contact_way(session, sim, data)
    result = {"config_id": way.config_id}
    if way.scene == 2:
        result["qr_code"] = services.qr_code_url(sim, way)
    return result


@api("externalcontact/get_contact_way")
def get_contact_way(session, sim, data):
    return {"contact_way": services.contact_way_dict(sim, services.contact_way_or_error(session, data.get("config_id")))}


@api("externalcontact/update_contact_way")
def update_contact_way(session, sim, data):
    services.update_contact_way(session, sim, data)


@api("externalcontact/del_contact_way")
def del_contact_way(session, sim, data):
    services.delete_contact_way(session, data)


@api("externalcontact/list_contact_way")
def list_contact_way(session, sim, data):
    return services.list_contact_ways(session, sim, data)


# ---------------------------------------------------------------- customers

@api("externalcontact/get")
def customer_get(session, sim, data):
    return services.customer_get(session, sim, data.get("external_userid"))


@api("externalcontact/list")
def customer_list(session, sim, data):
    return {"external_userid": services.customer_list(session, data.get("userid"))}


@api("externalcontact/batch/get_by_user")
def batch_get_by_user(session, sim, data):
    return services.batch_get_by_user(session, sim, data)


@api("externalcontact/get_follow_user_list")
def get_follow_user_list(session, sim, data):
    return {"follow_user": services.follow_user_list(session)}


# ---------------------------------------------------------------- tags

@api("externalcontact/get_corp_tag_list")
def get_corp_tag_list(session, sim, data):
    return {"tag_group": services.tag_list(session, data)}


@api("externalcontact/add_corp_tag")
def add_corp_tag(session, sim, data):
    group, tags = services.add_tags(session, sim, data)
    return {"tag_group": services.tag_group_dict(group, tags)}


@api("externalcontact/edit_corp_tag")
def edit_corp_tag(session, sim, data):
    services.edit_tag(session, data)


@api("externalcontact/del_corp_tag")
def del_corp_tag(session, sim, data):
    services.delete_tags(session, data)


@api("externalcontact/mark_tag")
def mark_tag(session, sim, data):
    services.mark_tag(session, data)


# ---------------------------------------------------------------- messages

@api("externalcontact/send_welcome_msg")
def send_welcome_msg(session, sim, data):
    messaging.send_welcome(session, sim, data)


@api("externalcontact/add_msg_template")
def add_msg_template(session, sim, data):
    return messaging.add_msg_template(session, sim, data)


@api("externalcontact/get_groupmsg_list_v2")
def get_groupmsg_list_v2(session, sim, data):
    return messaging.list_v2(session, data)


@api("externalcontact/get_groupmsg_task")
def get_groupmsg_task(session, sim, data):
    return messaging.task_list(session, data)


@api("externalcontact/get_groupmsg_send_result")
def get_groupmsg_send_result(session, sim, data):
    return messaging.send_result(session, data)


@api("externalcontact/remind_groupmsg_send")
def remind_groupmsg_send(session, sim, data):
    messaging.remind(session, sim, data)


@api("externalcontact/cancel_groupmsg_send")
def cancel_groupmsg_send(session, sim, data):
    messaging.cancel(session, data)


# ---------------------------------------------------------------- groups

@api("externalcontact/groupchat/list")
def groupchat_list(session, sim, data):
    return groups.group_list(session, data)


@api("externalcontact/groupchat/get")
def groupchat_get(session, sim, data):
    group = groups.group_or_error(session, data.get("chat_id"))
    return {"group_chat": groups.group_dict(session, group, need_name=bool(int(data.get("need_name") or 0)))}


@api("externalcontact/groupchat/transfer")
def groupchat_transfer(session, sim, data):
    return groups.transfer_groups(session, data)


@api("externalcontact/groupchat/onjob_transfer")
def groupchat_onjob_transfer(session, sim, data):
    return groups.onjob_transfer_groups(session, data)


# ---------------------------------------------------------------- transfers

@api("externalcontact/transfer_customer")
def transfer_customer(session, sim, data):
    return groups.transfer_customer(session, sim, data)


@api("externalcontact/transfer_result")
def transfer_result(session, sim, data):
    return groups.transfer_result(session, data, "onjob")


@api("externalcontact/resigned/transfer_customer")
def resigned_transfer_customer(session, sim, data):
    return groups.resigned_transfer_customer(session, sim, data)


@api("externalcontact/resigned/transfer_result")
def resigned_transfer_result(session, sim, data):
    return groups.transfer_result(session, data, "resigned")


@api("externalcontact/get_unassigned_list")
def get_unassigned_list(session, sim, data):
    return groups.unassigned_list(session, data)
