"""Browser tests: Debian's headless Chromium (through Playwright) against one live stack.

One stack for the whole session — the app and the WeCom simulator, each on a loopback port,
pointed at each other, with the demo neighbourhood seeded (``marketplace.demo``) — so a test
can sign in as ``demo-manager`` or an owner without building the world first. Tests share
that database: make names unique (``unique()``), never assume an empty table.

The stack has its own SQLite file and its own Redis database, so it neither sees nor
disturbs the other tests' per-test truncation and ``flushdb`` (and leaves nothing behind
for them).

Fixtures:
- ``live_stack`` (session): ``app_url``, ``sim_url``, ``url(path)``, ``drain()``,
  ``wait_for(predicate)``, ``sim_scan_url(config_id)``.
- ``stack``: the same, with the app context pushed for the test (``db.session`` works).
- ``browser`` (session): Chromium.
- ``new_page(viewport=..., **context_options)``: a page in a fresh context (own cookies);
  call it once per signed-in user. Every page it made is screenshotted if the test fails.
- ``page``: one such page; its size comes from the ``viewport`` fixture, which a test
  overrides with ``@pytest.mark.parametrize("viewport", [{"width": 390, "height": 844}])``.
- ``artifacts``: a folder for screenshots a test keeps on purpose
  (``LINLI_BROWSER_ARTIFACTS`` or a pytest tmp dir); failure screenshots go in ``failures/``.
- ``login(page, username, password)``: sign in through the login form.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from core.db import db
from tests.support.servers import IN_CI, LiveServer, make_test_app
from tests.support.stack import Stack

CHROMIUM = os.environ.get("LINLI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEFAULT_VIEWPORT = {"width": 1280, "height": 900}
BROWSER_REDIS_DB = 15  # the other tests use db 0 and flush it after every test
TIMEOUT_MS = 15_000

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    """Everything under tests/browser/ is a browser test, marked or not."""
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _redis_db(url: str, number: int) -> str:
    """The same Redis server, another logical database."""
    parts = urlsplit(url)
    if parts.scheme == "unix":  # unix:///path/redis.sock?db=N (urlunsplit would drop the //)
        base, _, query = url.partition("?")
        kept = [q for q in query.split("&") if q and not q.startswith("db=")]
        return f"{base}?{'&'.join(kept + [f'db={number}'])}"
    return urlunsplit(parts._replace(path=f"/{number}"))




@pytest.fixture(scope="session")
def live_stack(tmp_path_factory, redis_url):
    from core.wecom import get_wecom
    from marketplace.demo import seed_demo
    from wecom.simulator import create_simulator_app

    tmp = tmp_path_factory.mktemp("browser-stack")
    app_server, sim_server = LiveServer(), LiveServer()
    sim_app = create_simulator_app(
        {
            "WECOM_SIM_DATABASE_URL": f"sqlite:///{tmp / 'sim.db'}",
            "WECOM_SIM_PUBLIC_URL": sim_server.url,
            "WECOM_SIM_CALLBACK_URL": f"{app_server.url}/wecom/callback",
        }
    )
    sim_server.app = sim_app
    database_url = f"sqlite:///{tmp / 'app.db'}"
    app = make_test_app(
        tmp / "instance",
        database_url,
        _redis_db(redis_url, BROWSER_REDIS_DB),
        WECOM_API_BASE=f"{sim_server.url}/cgi-bin/",
        WECHAT_OA_API_BASE=f"{sim_server.url}/",  # diner pages past a coupon link sign in via OAuth
        WECHAT_OA_AUTHORIZE_URL=f"{sim_server.url}/connect/oauth2/authorize",
        PUBLIC_BASE_URL=app_server.url,
        PASSWORD_HASH_METHOD="scrypt:1024:8:1",  # cheap hashes: sign-ups and logins stay quick
    )
    app.extensions["redis"].flushdb()
    from sqlalchemy import create_engine

    from marketplace.all_models import metadata

    engine = create_engine(database_url)
    metadata.create_all(engine)
    engine.dispose()
    with app.app_context():
        with db.session.begin():
            seed_demo(db.session, wecom=get_wecom(), wecom_base=app.config["WECOM_API_BASE"])
        db.session.remove()
    app_server.app = app
    stack = Stack(app, app_server, sim_app, sim_server)
    yield stack
    app.extensions["redis"].flushdb()
    app.extensions["redis"].close()
    stack.http.close()
    app_server.stop()
    sim_server.stop()


@pytest.fixture(autouse=True)
def _live_database(live_stack):
    """``core.db`` holds one engine for the process, bound by the last app built; a
    test elsewhere may have built one since the stack started, so point it back here."""
    db.configure(live_stack.app.config["DATABASE_URL"])


@pytest.fixture
def stack(live_stack):
    """The live stack with its app context pushed, for ``db.session`` in the test body."""
    with live_stack.app.app_context():
        yield live_stack
        db.session.remove()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    chosen = os.environ.get("LINLI_BROWSER_ARTIFACTS")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("browser-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


@pytest.fixture
def viewport() -> dict:
    return dict(DEFAULT_VIEWPORT)


@pytest.fixture
def new_page(browser, live_stack, artifacts, request):
    """Factory: a page in a fresh browser context (its own cookies, so its own user)."""
    contexts = []

    def _new_page(viewport: dict | None = None, **options):
        options.setdefault("locale", "zh-CN")
        options.setdefault("timezone_id", "Asia/Shanghai")
        context = browser.new_context(
            base_url=live_stack.app_url,
            viewport=viewport or dict(DEFAULT_VIEWPORT),
            accept_downloads=True,
            **options,
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield _new_page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        folder = artifacts / "failures"
        folder.mkdir(exist_ok=True)
        name = request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
        for i, context in enumerate(contexts):
            for j, pg in enumerate(context.pages):
                path = folder / f"{name}-{i}-{j}.png"
                try:
                    pg.screenshot(path=str(path), full_page=True)
                    print(f"failure screenshot ({pg.url}): {path}")
                except Exception as exc:  # a crashed page must not hide the real failure
                    print(f"no screenshot of {pg.url}: {exc}")
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page, viewport):
    return new_page(viewport=viewport)


def _login(page, username: str, password: str):
    page.goto("/auth/login")
    page.locator("#username").fill(username)
    page.locator("#password").fill(password)
    page.get_by_test_id("login-submit").click()
    from playwright.sync_api import expect

    expect(page, f"login as {username} failed").not_to_have_url(re.compile(r"/auth/login"))
    return page


@pytest.fixture
def login():
    """``login(page, username, password)``: sign in through the form; fails if it didn't work."""
    return _login
