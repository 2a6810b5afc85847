"""Languages: Chinese first; ``?lang=en`` (or ``?lang=zh_CN``) switches and is remembered in a
cookie. The browser's Accept-Language is deliberately ignored: the portal is Chinese unless
someone picks English."""
from __future__ import annotations

from flask import Flask, g, has_request_context, request
from flask_babel import get_locale

from core.config import ROOT
from core.extensions import babel

LANGUAGES = ("zh_CN", "en")
DEFAULT_LANGUAGE = "zh_CN"
LANG_COOKIE = "lang"


def select_locale() -> str:
    if not has_request_context():  # jobs, CLI, services called from tests
        return DEFAULT_LANGUAGE
    chosen = request.args.get("lang")
    if chosen in LANGUAGES:
        return chosen
    cookie = request.cookies.get(LANG_COOKIE)
    return cookie if cookie in LANGUAGES else DEFAULT_LANGUAGE


def init_app(app: Flask) -> None:
    babel.init_app(
        app,
        locale_selector=select_locale,
        default_translation_directories=str(ROOT / "translations"),
    )

    @app.before_request
    def _note_language_choice() -> None:
        chosen = request.args.get("lang")
        if chosen in LANGUAGES:
            g.lang_chosen = chosen

    @app.after_request
    def _remember_language(response):
        chosen = g.get("lang_chosen")
        if chosen and request.cookies.get(LANG_COOKIE) != chosen:
            response.set_cookie(
                LANG_COOKIE,
                chosen,
                max_age=365 * 24 * 3600,
                secure=bool(app.config.get("SESSION_COOKIE_SECURE")),
                httponly=True,
                samesite="Lax",
            )
        return response

    @app.context_processor
    def _i18n_context() -> dict:
        return {"get_locale": get_locale, "LANGUAGES": LANGUAGES}
