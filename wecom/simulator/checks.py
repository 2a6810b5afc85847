"""Request checks every simulated API shares: the member behind a userid, limit and cursor
parameters (one module, so the API families import it and not each other)."""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from wecom.simulator.errors import ApiError
from wecom.simulator.models import Member


def member_or_error(session: Session, userid: str | None, *, customers: bool = False) -> Member:
    """The member behind ``userid``; ``customers`` also requires customer-contact permission."""
    if not userid:
        raise ApiError(41009)
    member = session.get(Member, userid)
    if member is None or member.resigned_at is not None:
        raise ApiError(40003, userid)
    if customers and not member.customer_contact:
        raise ApiError(84074, f"{userid} has no customer contact permission")
    return member



def page_limit(value: Any, default: int, maximum: int) -> int:
    if value in (None, ""):
        return default
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise ApiError(40058, "invalid limit") from None
    if limit < 1 or limit > maximum:
        raise ApiError(40058, f"limit must be 1..{maximum}")
    return limit


def page_offset(cursor: Any) -> int:
    if cursor in (None, ""):
        return 0
    try:
        return max(0, int(cursor))
    except (TypeError, ValueError):
        raise ApiError(40058, "invalid cursor") from None
