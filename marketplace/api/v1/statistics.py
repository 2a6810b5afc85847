"""``/stats``: a manager's regional statistics (issue 12) — the dashboard's numbers for a
manager key: totals against the period before, a series, breakdowns.

The numbers are the regional dashboard's own (``stats.services.report``), scoped by the key's
manager as the dashboard scopes the signed-in one (``report.scope_for``). Stricter than the
page, where a foreign filter only shows zeros: a filter naming a circle, merchant, store,
campaign or channel outside the manager's regions is a 404, as every other tenant's id in the
API. Only a manager key may read them; a merchant's or a store's key is a 403."""
from __future__ import annotations

from datetime import date
from typing import Literal

from flask_babel import lazy_gettext as _l
from pydantic import BaseModel, Field, ValidationInfo, field_validator
from spectree import Response as Doc
from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.models import Role, User
from core.db import db
from core.errors import Forbidden, NotFound
from core.tally import METRICS
from core.txn import transaction
from marketplace.api.v1 import schemas
from marketplace.api.v1.base import Caller, bp, json_response, manager_caller, spec
from merchants.models import CUISINES, Channel, Store
from merchants.services import get_store_for, stores_visible_to
from stats.services import report

ERRORS = {f"HTTP_{code}": schemas.Problem for code in (401, 403, 404, 422, 429)}
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)  # the statistics' epoch; far enough ahead
Cuisine = Literal[tuple(CUISINES)]


def _optional_id(description: str):
    return Field(None, ge=1, le=2_147_483_647, description=description)


class StatsQuery(schemas.Strict):
    """A range of local days (both inclusive, at most ``report.MAX_DAYS``) and the dashboard's filters."""

    start: date = Field(alias="from", description="the first local day, 2000-01-01 at the earliest")
    end: date = Field(alias="to", description=f"the last local day (inclusive): not before `from`, at most "
                                              f"{report.MAX_DAYS} days in all, 2099-12-31 at the latest")
    circle_id: int | None = _optional_id("a business circle (商圈) of the manager's regions")
    merchant_id: int | None = _optional_id("a merchant with a store there")
    store_id: int | None = _optional_id("a store there")
    campaign_id: int | None = _optional_id("a campaign of the regions or of a merchant there")
    channel_id: int | None = _optional_id("a channel code (渠道活码) of a store there")
    cuisine: Cuisine | None = Field(None, description="stores serving it")

    @field_validator("start", "end")
    @classmethod
    def _within(cls, day: date) -> date:
        if not FIRST_DAY <= day <= LAST_DAY:
            raise ValueError(str(_l("日期须在 2000-01-01 与 2099-12-31 之间")))
        return day

    @field_validator("end")
    @classmethod
    def _a_range(cls, end: date, info: ValidationInfo) -> date:
        start = info.data.get("start")
        if start is not None and end < start:
            raise ValueError(str(_l("结束日期不能早于开始日期")))
        if start is not None and (end - start).days + 1 > report.MAX_DAYS:
            raise ValueError(str(_l("日期范围最长 %(n)s 天", n=report.MAX_DAYS)))
        return end


class SeriesQuery(StatsQuery):
    grain: Literal["day", "week", "month"] = Field("day", description="weeks start on Monday")


class BreakdownQuery(StatsQuery):
    by: Literal[report.BREAKDOWNS] = Field(description="what to split the totals by")


class Metrics(BaseModel):
    """The counted numbers (money in fen); ``redeemed`` counts reversed ones too, ``reversed`` those."""

    new_contacts: int
    lost_contacts: int
    issued: int
    claimed: int
    redeemed: int
    reversed: int
    discount_fen: int
    bill_fen: int = Field(description="the bills the redeemed coupons were used on")
    pushes_planned: int
    pushes_delivered: int
    pushes_over_quota: int


class FunnelStage(BaseModel):
    stage: Literal["new_contacts", "issued", "redeemed"] = Field(description="redeemed: net of reversals")
    value: int


class Summary(BaseModel):
    from_: date = Field(alias="from")
    to: date
    totals: Metrics
    previous: Metrics = Field(description="the period just before: the month before a calendar month, "
                                          "else as many days")
    net_contacts: int = Field(description="contacts gained less lost over all history up to `to`")
    funnel: list[FunnelStage]


class SeriesPoint(Metrics):
    day: date = Field(description="the day, or the first day of the week or month")


class Series(BaseModel):
    data: list[SeriesPoint]


class BreakdownRow(Metrics):
    id: int
    name: str


class Breakdown(BaseModel):
    data: list[BreakdownRow] = Field(description="most redeemed (net) first")


def _manager(session: Session, who: Caller) -> User:
    """The key's manager, still one (a deactivated manager's keys read nothing)."""
    user = session.get(User, who.manager_id)
    if user is None or not user.active or user.role not in (Role.manager, Role.admin):
        raise Forbidden()
    return user


def _in_scope(session: Session, user: User, scope: report.Scope, query: StatsQuery) -> None:
    """Every id filter names something of the manager's regions, else NotFound."""
    if scope.circle_ids is not None:
        if query.circle_id is not None and query.circle_id not in scope.circle_ids:
            raise NotFound()
        if query.campaign_id is not None and query.campaign_id not in (scope.campaign_ids or ()):
            raise NotFound()
    if query.merchant_id is not None and session.scalar(
            stores_visible_to(session, user).with_only_columns(Store.id)
            .where(Store.merchant_id == query.merchant_id).limit(1)) is None:
        raise NotFound()
    if query.store_id is not None:
        get_store_for(session, user, query.store_id)
    if query.channel_id is not None:
        store_id = session.scalar(select(Channel.store_id).where(Channel.id == query.channel_id))
        if store_id is None:
            raise NotFound()
        get_store_for(session, user, store_id)


def _report(session: Session, who: Caller, query: StatsQuery) -> tuple[report.Scope, report.Query]:
    """The manager's scope and the request as the report's query (a cuisine resolved to stores)."""
    user = _manager(session, who)
    scope = report.scope_for(session, user)
    _in_scope(session, user, scope, query)
    q = report.Query(start=query.start, end=query.end, circle_id=query.circle_id, merchant_id=query.merchant_id,
                     store_id=query.store_id, campaign_id=query.campaign_id, channel_id=query.channel_id,
                     cuisine=query.cuisine)
    return scope, report.resolve(session, q, scope)


def _metrics(values: dict[str, int]) -> dict[str, int]:
    return {m: values[m] for m in METRICS}


@bp.get("/stats/summary")
@spec.validate(query=StatsQuery, resp=Doc(HTTP_200=Summary, **ERRORS), tags=["stats"])
def stats_summary(query: StatsQuery):
    """The range's totals, the previous period's, the reach and the funnel: the dashboard's KPIs."""
    who = manager_caller()
    with transaction(db.session) as session:
        scope, q = _report(session, who, query)
        now = report.totals(session, scope, q)
        return json_response({
            "from": q.start.isoformat(), "to": q.end.isoformat(), "totals": _metrics(now),
            "previous": _metrics(report.totals(session, scope, q.previous())),
            "net_contacts": report.net_contacts(session, scope, q),
            "funnel": [{"stage": stage, "value": value} for stage, value in report.funnel(now)],
        })


@bp.get("/stats/series")
@spec.validate(query=SeriesQuery, resp=Doc(HTTP_200=Series, **ERRORS), tags=["stats"])
def stats_series(query: SeriesQuery):
    """The range day by day (or by week or month), days without anything included as zeros."""
    who = manager_caller()
    with transaction(db.session) as session:
        scope, q = _report(session, who, query)
        rows = report.series(session, scope, q, query.grain)
        return json_response({"data": [{"day": day.isoformat(), **_metrics(values)} for day, values in rows]})


@bp.get("/stats/breakdown")
@spec.validate(query=BreakdownQuery, resp=Doc(HTTP_200=Breakdown, **ERRORS), tags=["stats"])
def stats_breakdown(query: BreakdownQuery):
    """The range's totals per circle, merchant, store, coupon template, campaign or channel
    code; with `store_id`, by channel lists the store's idle codes too (as zeros)."""
    who = manager_caller()
    with transaction(db.session) as session:
        scope, q = _report(session, who, query)
        rows = report.breakdown(session, scope, q, query.by)
        return json_response({"data": [{"id": r.id, "name": r.name, **_metrics(r.values)} for r in rows]})
