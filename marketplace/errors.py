"""The one place where domain errors become HTTP, and where HTTP errors get their pages.

Services raise ``core.errors`` kinds, never HTTP exceptions, and a view that lets one through
gets the status its kind means. 403, 404 and 500 answer with a page in the app's style and
language: the diner's phone style under ``/m/`` (``templates/residents/_base.html``), the
portal's elsewhere (``templates/base.html``); a client asking for JSON gets JSON. The 500 page
runs no database query (it must render while the database is down), and if even it fails a
fixed page answers."""
from __future__ import annotations

from flask import Flask, current_app, g, jsonify, render_template, request
from flask_babel import lazy_gettext as _l
from werkzeug.exceptions import (
    BadRequest,
    Conflict,
    Forbidden,
    HTTPException,
    InternalServerError,
    NotFound,
)

from core import errors
from marketplace.api.v1.problems import API_PREFIX, api_problem_for_status
from residents.identity import HOME as DINER_HOME

STATUS_FOR: tuple[tuple[type[errors.DomainError], type[HTTPException]], ...] = (
    (errors.NotFound, NotFound),
    (errors.Forbidden, Forbidden),
    (errors.Conflict, Conflict),
    (errors.DomainError, BadRequest),  # Invalid and every other rule
)

PAGES = {  # status: (title, what happened)
    403: (_l("没有权限"), _l("你的账号不能查看这个页面。如果需要，请联系管理员开通。")),
    404: (_l("页面不存在"), _l("链接可能写错了，或者这个页面已经不在了。")),
    500: (_l("出错了"), _l("服务器开了个小差，请稍后再试。")),
}
DINER_PAGES = {
    403: (_l("没有权限"), _l("这个页面不对当前微信账号开放。")),
    404: (_l("页面不存在"), _l("门店或活动可能已经下架，或者链接已经失效。")),
    500: (_l("出错了"), _l("服务器开了个小差，请稍后再试。")),
}
DINER_COUPON_404 = (
    _l("找不到这张券"),
    _l("这张券不在你的微信账号下，或者链接已经失效。你自己的券都在「我的券」里。"),
)
COUPON_ENDPOINTS = ("residents.coupon", "residents.coupon_status")

FALLBACK_500 = (
    '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1"><title>出错了 · 邻里</title></head>'
    '<body style="font-family:sans-serif;margin:2em;color:#222"><h1 style="font-size:20px">出错了</h1>'
    "<p>服务器开了个小差，请稍后再试。</p><p><a href=\"/\">返回首页</a></p></body></html>"
)


def http_error_for(exc: errors.DomainError) -> HTTPException:
    for kind, http in STATUS_FOR:
        if isinstance(exc, kind):
            return http(description=str(exc.message) or None)
    raise TypeError(exc)  # unreachable: DomainError is last


def is_diner_page() -> bool:
    return request.path == DINER_HOME.rstrip("/") or request.path.startswith(DINER_HOME)


def wants_json() -> bool:
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json"


def own_description(exc: HTTPException) -> str | None:
    """A message someone wrote for this error (a domain error's), not Werkzeug's English."""
    text = exc.description
    if not text or text == type(exc).description:
        return None
    return str(text)


def error_page(exc: HTTPException, status: int):
    """The page (or JSON) for ``status``; no database query on the way. Under the API, a
    problem document."""
    detail = own_description(exc) if status != 500 else None
    if request.path.startswith(API_PREFIX):
        return api_problem_for_status(status, detail)
    if wants_json():
        return jsonify(error=str(detail or exc.name), status=status), status
    diner = is_diner_page()
    title, message = (DINER_PAGES if diner else PAGES)[status]
    if diner and status == 404 and request.endpoint in COUPON_ENDPOINTS:
        title, message = DINER_COUPON_404
    template = "errors/diner.html" if diner else "errors/portal.html"
    return render_template(
        template, status=status, title=title, message=message, detail=detail, safe=status == 500,
    ), status


def init_app(app: Flask) -> None:
    @app.errorhandler(errors.DomainError)
    def _domain_error(exc: errors.DomainError):
        # Re-dispatched as the HTTP error so the app's own 4xx pages render it.
        return app.handle_http_exception(http_error_for(exc))

    @app.errorhandler(403)
    def _forbidden(exc: HTTPException):
        return error_page(exc, 403)

    @app.errorhandler(404)
    def _not_found(exc: HTTPException):
        return error_page(exc, 404)

    @app.errorhandler(HTTPException)
    def _other_http_error(exc: HTTPException):
        """405, 413, 400 …: a problem document under the API, Werkzeug's answer elsewhere."""
        if request.path.startswith(API_PREFIX) and exc.code:
            return api_problem_for_status(exc.code, own_description(exc))
        return exc.get_response()

    @app.errorhandler(InternalServerError)
    def _server_error(exc: InternalServerError):
        # Flask has logged the original exception already; this only answers the browser.
        # Flask-Login's context processor loads the signed-in user for every template (a
        # query): a user not loaded yet stays unknown here, the page never shows them.
        if "_login_user" not in g:
            g._login_user = current_app.login_manager.anonymous_user()
        try:
            return error_page(exc, 500)
        except Exception:  # the last resort must not fail
            app.logger.exception("the 500 page failed to render")
            return FALLBACK_500, 500, {"Content-Type": "text/html; charset=utf-8"}

