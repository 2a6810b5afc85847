"""The statistics pages: one dashboard over the rollups for every viewer — the regional one
(``/stats/``: managers their regions, the admin all) and the merchant's (``/portal/dashboard``:
an owner their stores) — and its CSV files. Thin: parsing the range and filters, then
``services.report``; who sees what is the report's ``Scope``."""
from __future__ import annotations

import csv
import io
from datetime import date, timedelta

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup, escape

from accounts.access import require_role
from accounts.models import Role
from core.db import db, utcnow
from core.localtime import local
from core.tally import METRICS
from core.txn import transaction
from merchants.models import CUISINES
from merchants.services import get_store_for
from merchants.views import register_store_link
from stats.services import report

bp = Blueprint("stats", __name__, url_prefix="/stats")
portal = Blueprint("stats_portal", __name__, url_prefix="/portal")
register_store_link("stats_portal.store_dashboard", _l("经营看板"))

PRESETS = {
    "7d": _l("近 7 天"), "30d": _l("近 30 天"), "this_month": _l("本月"), "last_month": _l("上月"),
    "90d": _l("近 90 天"), "365d": _l("近一年"), "custom": _l("自定义"),
}
GRAINS = {"day": _l("按日"), "week": _l("按周"), "month": _l("按月")}
LABELS = {
    "new_contacts": _l("新增好友"), "lost_contacts": _l("流失好友"), "issued": _l("发券"), "claimed": _l("领券"),
    "redeemed": _l("核销"), "reversed": _l("撤销核销"), "discount_fen": _l("优惠金额(元)"), "bill_fen": _l("带动消费(元)"),
    "pushes_planned": _l("计划推送"), "pushes_delivered": _l("送达"), "pushes_over_quota": _l("超出额度"),
}
MONEY = ("discount_fen", "bill_fen")
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)  # a custom range's bounds
TABLE_ROWS = 50  # rows a breakdown shows on the page (most redeemed first); its CSV has them all
LEVEL_LABELS = {"circle": _l("商圈"), "merchant": _l("商户"), "store": _l("门店"), "template": _l("优惠券"),
                "campaign": _l("营销活动"), "channel": _l("渠道码")}


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name, "")
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 10:
        abort(400)
    return int(raw)


def _date_arg(name: str) -> date | None:
    raw = request.args.get(name, "")
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        abort(400)
    if not FIRST_DAY <= day <= LAST_DAY:  # year 1 or 9999 would overflow the previous period's dates
        abort(400)
    return day


def _range(today: date) -> tuple[str, date, date]:
    preset = request.args.get("range", "30d")
    if preset not in PRESETS:
        abort(400)
    if preset == "custom":
        start, end = _date_arg("from"), _date_arg("to")
        if start is None or end is None or end < start or (end - start).days >= report.MAX_DAYS:
            abort(400)
        return preset, start, end
    if preset == "this_month":
        return preset, today.replace(day=1), today
    if preset == "last_month":
        end = today.replace(day=1) - timedelta(days=1)
        return preset, end.replace(day=1), end
    days = int(preset[:-1])
    return preset, today - timedelta(days=days - 1), today


def _query(today: date) -> tuple[str, report.Query]:
    preset, start, end = _range(today)
    cuisine = request.args.get("cuisine") or None
    if cuisine is not None and cuisine not in CUISINES:
        abort(400)
    return preset, report.Query(
        start=start, end=end, circle_id=_int_arg("circle"), merchant_id=_int_arg("merchant"),
        store_id=_int_arg("store"), campaign_id=_int_arg("campaign"), channel_id=_int_arg("channel"), cuisine=cuisine,
    )


def _level(scope: report.Scope, q: report.Query) -> list[str]:
    """What the drill-down tables list at this depth: region → circle → store →
    template/campaign/channel; a merchant starts at its stores and coupons."""
    if q.store_id:
        return ["template", "campaign", "channel"]
    if scope.merchant_id is not None:
        return ["store", "template", "campaign"]
    if q.circle_id or q.merchant_id:
        return ["store", "campaign"]
    return ["circle", "merchant"]


def _grain(q: report.Query) -> str:
    grain = request.args.get("grain") or ("day" if q.days <= 92 else "week" if q.days <= 366 else "month")
    if grain not in GRAINS:
        abort(400)
    return grain


def _data(session, today: date):
    scope = report.scope_for(session, current_user)
    preset, q = _query(today)
    if q.store_id is not None:
        get_store_for(session, current_user, q.store_id)  # another tenant's store: 404, not zeros
    q = report.resolve(session, q, scope)
    return scope, preset, q, _grain(q)


@bp.get("/")
@require_role(Role.manager, Role.admin)
def dashboard():
    return _page("stats.dashboard", _l("数据统计"))


@portal.get("/dashboard")
@require_role(Role.owner)
def merchant_dashboard():
    return _page("stats_portal.merchant_dashboard", _l("经营看板"))


@portal.get("/stores/<int:store_id>/dashboard")
@require_role(Role.owner)
def store_dashboard(store_id: int):
    """The store page's link: the merchant's dashboard narrowed to the store."""
    with transaction(db.session) as session:
        get_store_for(session, current_user, store_id)  # no such store of yours: 404 here, not after
    return redirect(url_for("stats_portal.merchant_dashboard", **{**request.args.to_dict(), "store": store_id}))


def _page(endpoint: str, title):
    """The dashboard: five reads of the rollups — the series (the KPIs are its sum), the
    previous period's totals, the level's breakdowns (circle, merchant and store ones from one
    grouping), the reach — plus names and the filter menus."""
    today = local(utcnow()).date()
    with transaction(db.session) as session:
        scope, preset, q, grain = _data(session, today)
        series = report.series(session, scope, q, grain)
        now, before = report.totals_of(series), report.totals(session, scope, q.previous())
        levels = _level(scope, q)
        tables = report.breakdowns(session, scope, q, levels + ([] if q.store_id or "store" in levels else ["store"]),
                                   head=TABLE_ROWS, tail=5)
        stores = [] if q.store_id else tables["store"]
        funnel = report.funnel(now)
        labels = _strings(LABELS)
        context = dict(
            page=endpoint, title=title, merchant_view=scope.merchant_id is not None, preset=preset, q=q, grain=grain,
            now=now, before=before, net=report.net_contacts(session, scope, q), change=report.change, series=series,
            levels={by: tables[by][:TABLE_ROWS] for by in levels}, counts={by: len(tables[by]) for by in levels},
            top=stores[:5],
            bottom=list(reversed(stores[-5:])) if len(stores) > 5 else [], funnel=funnel,
            presets=PRESETS, grains=GRAINS, labels=labels, cells=_cells_renderer(labels), money=MONEY, metrics=METRICS,
            level_labels=_strings(LEVEL_LABELS), cuisines=CUISINES, chart=_charts(series, funnel),
            **report.choices(session, scope),
        )
    return render_template("stats/dashboard.html", **context)


def _cells_renderer(labels: dict[str, str]):
    """A row's eleven metric cells as one piece of HTML (a table of 50 rows would otherwise be
    550 template macro calls)."""
    heads = {m: escape(labels[m]) for m in METRICS}

    def cells(values: dict) -> Markup:
        return Markup("".join(
            f'<td data-label="{heads[m]}" data-value="{values[m]}">'
            f'{"¥%.2f" % (values[m] / 100) if m in MONEY else values[m]}</td>' for m in METRICS))
    return cells


def _strings(labels: dict) -> dict[str, str]:
    """Lazy labels translated once per page, not once per table cell."""
    return {key: str(label) for key, label in labels.items()}


def _charts(series, funnel) -> dict:
    labels = [d.isoformat() for d, _ in series]
    return {
        "trend": {"kind": "line", "labels": labels, "yuan": [False, True], "series": [
            {"name": str(LABELS["issued"]), "data": [v["issued"] for _, v in series], "axis": 0},
            {"name": str(LABELS["redeemed"]), "data": [v["redeemed"] - v["reversed"] for _, v in series], "axis": 0},
            {"name": str(LABELS["new_contacts"]), "data": [v["new_contacts"] for _, v in series], "axis": 0},
            {"name": str(LABELS["discount_fen"]), "data": [v["discount_fen"] / 100 for _, v in series], "axis": 1},
        ]},
        "funnel": {"kind": "funnel", "labels": [str(LABELS[k]) for k, _ in funnel],
                   "series": [{"name": str(_l("转化")), "data": [v for _, v in funnel]}]},
    }


@bp.get("/export.csv")
@require_role(Role.manager, Role.admin, Role.owner)
def export_csv():
    """Every table of the page as CSV: ``table`` = series, or a breakdown (circle, merchant,
    store, template, campaign, channel). UTF-8 with a BOM so spreadsheet programs read the Chinese."""
    table = request.args.get("table", "series")
    if table not in ("series", *report.BREAKDOWNS):
        abort(400)
    today = local(utcnow()).date()
    with transaction(db.session) as session:
        scope, _preset, q, grain = _data(session, today)
        if table == "series":
            head = [str(_l("日期"))]
            body = [[d.isoformat(), *_cells(v)] for d, v in report.series(session, scope, q, grain)]
        else:
            head = ["id", str(LEVEL_LABELS[table])]
            body = [[r.id, r.name, *_cells(r.values)] for r in report.breakdown(session, scope, q, table)]
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow([*head, *[str(LABELS[m]) for m in METRICS]])
    writer.writerows(body)
    name = f"linli-{table}-{q.start.isoformat()}-{q.end.isoformat()}.csv"
    return Response(out.getvalue(), mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _cells(values: dict) -> list:
    return [f"{values[m] / 100:.2f}" if m in MONEY else values[m] for m in METRICS]
