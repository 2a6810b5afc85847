"""The app's security settings, applied once by ``create_app``:

- refuse to build an app that talks to the real WeCom with the demo secrets committed to this
  repository (``core.config.refuse_demo_secrets``, naming each one);
- believe ``X-Forwarded-*`` only from ``TRUSTED_PROXIES`` reverse proxies (werkzeug's
  ProxyFix), so the login throttle sees each client's own address behind a load balancer;
- response headers: a content security policy, no framing, nosniff, a referrer policy and,
  when cookies are secure (HTTPS), HSTS.

The policy fits our pages: our own stylesheet and the diner pages' inline ``<style>`` and
``style=`` attributes (styles may be inline), scripts only from us or inline with the
request's nonce (``<script nonce="{{ csp_nonce() }}">``), images from us or ``data:`` (QR codes),
``fetch`` to ourselves; the few inline event handlers in our templates (``onsubmit="return
confirm(...)"``) are allowed by their hashes ('unsafe-hashes'), found when the app is built;
forms post to us, or end at WeChat's OAuth page when a diner's
identity must be asked again. No page may be framed. The WeCom simulator is a separate app
and sets none of this. One page more: the API's reference page (vendored Redoc) runs its
search in a worker it starts from a ``blob:`` URL, so that path alone also has ``worker-src``.
"""
from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, abort, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from core.config import refuse_demo_secrets

HSTS_SECONDS = 365 * 24 * 3600
WORKER_PAGES = frozenset({"/api/v1/docs/reference/"})  # Redoc: its search worker is a blob: script
_HANDLER_RE = re.compile(r'\son[a-z]+="([^"]*)"')


def init_app(app: Flask) -> None:
    """Call right after the config is loaded: a refused configuration stops here."""
    refuse_demo_secrets(app.config)

    proxies = int(app.config.get("TRUSTED_PROXIES") or 0)
    if proxies < 0:
        raise ValueError("TRUSTED_PROXIES must be 0 or more")
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)

    form_targets = " ".join(["'self'", *_origins(app.config.get("WECHAT_OA_AUTHORIZE_URL"))])
    hsts = bool(app.config.get("SESSION_COOKIE_SECURE"))
    handler_hashes = inline_handler_hashes(Path(app.root_path, app.template_folder or "templates"))

    app.add_template_global(csp_nonce)

    @app.before_request
    def _refuse_nul_bytes():
        """No text we keep holds a NUL (PostgreSQL refuses one in any string): a form or
        query value carrying one is a client's error, said as such, not a 500 later."""
        if any("\x00" in v for v in request.args.values()) or (
            request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data")
            and any("\x00" in v for v in request.form.values())
        ):
            abort(400, description="NUL byte in a form or query value")

    @app.after_request
    def _security_headers(response):
        headers = response.headers
        policy = content_security_policy(csp_nonce(), form_targets, handler_hashes)
        if request.path in WORKER_PAGES:
            policy += "; worker-src 'self' blob:"
        headers.setdefault("Content-Security-Policy", policy)
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        if hsts:
            headers.setdefault("Strict-Transport-Security", f"max-age={HSTS_SECONDS}")
        return response


def csp_nonce() -> str:
    """This request's script nonce (templates: ``<script nonce="{{ csp_nonce() }}">``)."""
    value = g.get("csp_nonce")
    if value is None:
        value = g.csp_nonce = secrets.token_urlsafe(16)
    return value


def inline_handler_hashes(folder: Path) -> tuple[str, ...]:
    """CSP hash sources of the constant inline event handlers in the templates under
    ``folder`` (handlers built from template expressions cannot be hashed and stay blocked)."""
    found = set()
    for path in sorted(folder.rglob("*.html")):
        for raw in _HANDLER_RE.findall(path.read_text(encoding="utf-8")):
            if "{{" in raw or "{%" in raw:
                continue
            digest = hashlib.sha256(html.unescape(raw).encode()).digest()
            found.add(f"'sha256-{base64.b64encode(digest).decode()}'")
    return tuple(sorted(found))


def content_security_policy(nonce: str, form_targets: str = "'self'", handler_hashes: tuple[str, ...] = ()) -> str:
    handlers = f" 'unsafe-hashes' {' '.join(handler_hashes)}" if handler_hashes else ""
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'{handlers}",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            f"form-action {form_targets}",
            "frame-ancestors 'none'",
        ]
    )


def _origins(url: str | None) -> list[str]:
    parts = urlsplit(url or "")
    if parts.scheme in ("http", "https") and parts.netloc:
        return [f"{parts.scheme}://{parts.netloc}"]
    return []
