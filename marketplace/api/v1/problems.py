"""Errors as RFC 9457 problem details (``application/problem+json``).

``type`` is a stable URI per kind of problem, relative to the API
(``/api/v1/problems/<slug>``, each described on the reference page); ``title`` is in the
request's language; ``code`` repeats the slug for clients that switch on it, and a coupon
rule's refusal carries the rule's own code (``already_redeemed``, ``expired`` …) in ``reason``."""
from __future__ import annotations

import json

from flask import Response
from flask_babel import lazy_gettext as _l

from core import errors
from integrations.services.idempotency import KeyReused

PROBLEMS = {  # slug: (status, title)
    "unauthorized": (401, _l("缺少或无效的 API 密钥")),
    "forbidden": (403, _l("这个密钥不能做这件事")),
    "not-found": (404, _l("没有找到")),
    "method-not-allowed": (405, _l("不支持这个方法")),
    "conflict": (409, _l("状态不允许")),
    "coupon-refused": (409, _l("这张券现在不能核销")),
    "invalid": (400, _l("请求不合规则")),
    "validation": (422, _l("请求参数不合格式")),
    "idempotency-key-reused": (422, _l("Idempotency-Key 已用于另一个请求")),
    "too-many-requests": (429, _l("请求太频繁")),
    "payload-too-large": (413, _l("请求太大")),
    "server-error": (500, _l("服务器出错了")),
}
MEDIA_TYPE = "application/problem+json"
API_PREFIX = "/api/"
SLUG_FOR_STATUS = {status: slug for slug, (status, _title) in reversed(PROBLEMS.items())}


def problem(slug: str, detail: object = None, **extra) -> Response:
    status, title = PROBLEMS[slug]
    body = {"type": f"/api/v1/problems/{slug}", "title": str(title), "status": status, "code": slug}
    if detail:
        body["detail"] = str(detail)
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(json.dumps(body, ensure_ascii=False, default=str), status=status, mimetype=MEDIA_TYPE)


def for_domain_error(exc: errors.DomainError) -> Response:
    """One place maps the domain's errors to problems."""
    field = getattr(exc, "field", None)
    if isinstance(exc, KeyReused):
        return problem("idempotency-key-reused", exc.message, field=field)
    if isinstance(exc, errors.NotFound):
        return problem("not-found", exc.message)
    if isinstance(exc, errors.Forbidden):
        return problem("forbidden", exc.message)
    if isinstance(exc, errors.Conflict):
        reason = getattr(exc, "code", None)
        if reason == "not_found":  # a coupon rule's "no such coupon (of yours)"
            return problem("not-found", exc.message)
        return problem("coupon-refused" if reason else "conflict", exc.message, reason=reason)
    return problem("invalid", exc.message, field=field)


def api_problem_for_status(status: int, detail: object = None) -> Response:
    """An HTTP error met outside a view's own handling (no such route, a wrong method, a body
    too large, a crash) as a problem too."""
    return problem(SLUG_FOR_STATUS.get(status, "invalid" if status < 500 else "server-error"), detail)
