"""The platform's own pages: the admin's overview and the monthly settlement statement (page
and CSV) for the admin (every merchant), a manager (the tills in their regions) and an owner
(their merchant). Thin: the month is parsed here, the figures come from ``services``."""
from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta

from flask import Blueprint, Response, abort, render_template, request
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from accounts.access import require_role
from accounts.models import Role
from core.db import db, utcnow
from core.localtime import local
from core.txn import transaction
from stats.services import overview as overview_service
from stats.services import report, settlement

bp = Blueprint("stats_admin", __name__, url_prefix="/stats")

MONTH_RE = re.compile(r"([0-9]{4})-([0-9]{2})")  # ASCII digits only (\d takes any script's)
COLUMNS = (  # the statement's columns: (Line attribute, label, amount in fen?)
    ("redeemed", _l("核销张数"), False),
    ("platform_redeemed", _l("其中平台补贴券"), False),
    ("bill_fen", _l("带动消费(元)"), True),
    ("merchant_discount_fen", _l("商户承担优惠(元)"), True),
    ("platform_discount_fen", _l("平台补贴优惠(元)"), True),
    ("owed_fen", _l("平台应付商户(元)"), True),
)
MERCHANT_LABELS = {"approved": _l("已上线"), "pending": _l("待审核"), "rejected": _l("已驳回"), "no_store": _l("未建门店")}
STORE_LABELS = {"approved": _l("已通过"), "pending": _l("待审核"), "rejected": _l("已驳回")}
REGION_LABELS = {"city": _l("城市"), "district": _l("区县"), "circle": _l("商圈")}
DELIVERY_LABELS = {"planned": _l("待成员发送"), "sent": _l("已送达"), "over_quota": _l("超出企业微信额度"),
                   "not_contact": _l("已非好友"), "unsent": _l("未发送")}


def _today() -> date:
    return local(utcnow()).date()


def _month(today: date) -> date:
    """``?month=YYYY-MM``; by default the last full month."""
    raw = request.args.get("month", "")
    if not raw:
        return (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    match = MONTH_RE.fullmatch(raw)
    if not match or not (2000 <= int(match.group(1)) <= 2100 and 1 <= int(match.group(2)) <= 12):
        abort(400)
    return date(int(match.group(1)), int(match.group(2)), 1)


def _statement(session, month: date) -> tuple[list[settlement.Line], settlement.Line]:
    lines = settlement.statement(session, report.scope_for(session, current_user), month)
    return lines, settlement.total(lines)


@bp.get("/overview")
@require_role(Role.admin)
def overview():
    with transaction(db.session) as session:
        data = overview_service.overview(session, utcnow())
    return render_template("stats/overview.html", o=data, merchant_labels=MERCHANT_LABELS, store_labels=STORE_LABELS,
                           region_labels=REGION_LABELS, delivery_labels=DELIVERY_LABELS,
                           last_month=_month(_today()))


@bp.get("/settlement")
@require_role(Role.admin, Role.manager, Role.owner)
def statement():
    today = _today()
    month = _month(today)
    with transaction(db.session) as session:
        lines, totals = _statement(session, month)
    first, last = settlement.month_range(month)
    prev = (first - timedelta(days=1)).replace(day=1)
    nxt = last + timedelta(days=1)
    return render_template("stats/settlement.html", month=month, first=first, last=last, lines=lines, totals=totals,
                           columns=COLUMNS, prev=prev, next=nxt if nxt <= today else None)


@bp.get("/settlement.csv")
@require_role(Role.admin, Role.manager, Role.owner)
def statement_csv():
    """The statement as CSV, amounts in yuan, a totals line last. UTF-8 with a BOM so
    spreadsheet programs read the Chinese."""
    month = _month(_today())
    with transaction(db.session) as session:
        lines, totals = _statement(session, month)
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(["id", str(_l("商户")), *[str(label) for _, label, _ in COLUMNS]])
    writer.writerows([line.merchant_id, line.name, *_cells(line)] for line in lines)
    writer.writerow(["", str(_l("合计")), *_cells(totals)])
    name = f"linli-settlement-{month.strftime('%Y-%m')}.csv"
    return Response(out.getvalue(), mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _cells(line: settlement.Line) -> list:
    return [f"{getattr(line, attr) / 100:.2f}" if money else getattr(line, attr) for attr, _, money in COLUMNS]
