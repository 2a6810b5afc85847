"""WeCom errcodes the simulator answers with, and errmsg text in WeCom's shape."""
from __future__ import annotations

import secrets

ERRMSG: dict[int, str] = {
    -1: "system busy",
    40001: "invalid credential",
    40003: "invalid userid",
    40013: "invalid corpid",
    40014: "invalid access_token",
    40050: "chatid not found",
    40058: "invalid parameter",
    40068: "invalid tagid",
    40071: "tag name already exists",
    40072: "invalid tag name length",
    40096: "invalid external userid",
    40097: "user not resigned",
    40128: "transfer too frequently",
    40129: "customer is transferring",
    40130: "handover and takeover are the same user",
    40131: "handover_userid is not follow user of external contact",
    41001: "access_token missing",
    41002: "corpid missing",
    41004: "corpsecret missing",
    41009: "userid missing",
    41037: "missing contact way type",
    41038: "missing contact way scene",
    41039: "invalid contact way type",
    41040: "invalid contact way scene",
    41041: "contact way user count exceed limit",
    41042: "invalid contact way style",
    41043: "missing contact way config_id",
    41044: "invalid contact way config_id",
    41045: "contact way count exceed limit",
    41046: "missing msgid",
    41047: "invalid msgid",
    41048: "no customer to send",
    41049: "missing welcome code",
    41050: "invalid welcome code",
    41051: "externaluser has started chatting",
    41064: "attachments count exceed limit",
    41065: "invalid attachment type",
    41093: "msg has been cancelled",
    41094: "remind count exceed limit",
    42001: "access_token expired",
    45009: "api freq out of limit",
    45033: "api concurrent out of limit",
    47001: "data format error",
    48001: "api unauthorized",
    60111: "userid not found",
    84061: "not external contact",
    84074: "no privilege to access/modify contact/party/agent",
}


class ApiError(Exception):
    """Raised by services; the API blueprint turns it into ``{"errcode", "errmsg"}``."""

    def __init__(self, errcode: int, detail: str = "") -> None:
        super().__init__(f"{errcode} {detail}")
        self.errcode = errcode
        self.detail = detail


def errmsg(errcode: int, now: float, ip: str, detail: str = "") -> str:
    base = ERRMSG.get(errcode, "unknown error")
    if detail:
        base = f"{base}: {detail}"
    hint = f"{int(now)}_{secrets.randbelow(900) + 100}_{secrets.token_hex(16)}"
    return (
        f"{base}, hint: [{hint}], from ip: {ip}, "
        f"more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}"
    )
