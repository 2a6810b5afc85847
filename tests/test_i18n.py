"""The English catalogue stays complete and in step with the code.

Chinese is the source language (the msgids); English lives in translations/en. A string added
to the code without running the extract/update/compile commands in babel.cfg, an empty or fuzzy
translation, or a stale messages.mo (the file read at runtime) fails here, with the fix spelled out.
"""
from __future__ import annotations

import re
from io import BytesIO
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_keywords, parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

from core.db import db
from merchants.models import Region, RegionLevel
from tests.support.coupons import login, make_shop, make_template, tx
from tests.support.merchants import client, fast_hashing  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]
BABEL_CFG = ROOT / "babel.cfg"
LC_MESSAGES = ROOT / "translations" / "en" / "LC_MESSAGES"
PO = LC_MESSAGES / "messages.po"
MO = LC_MESSAGES / "messages.mo"
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")


def documented_commands() -> list[str]:
    """The pybabel commands in babel.cfg's header: the one recipe people and this test follow."""
    lines = (line.lstrip("#").strip() for line in BABEL_CFG.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line.startswith("pybabel ")]


def how_to_fix() -> str:
    return "Run from the repo root (with .venv/bin/pybabel), then translate the new entries:\n  " + "\n  ".join(
        documented_commands()
    )


def load_po():
    with PO.open("rb") as f:
        return read_po(f, locale="en")


def key(message_id, context) -> tuple[str, str | None]:
    return (message_id[0] if isinstance(message_id, (tuple, list)) else message_id), context


def extract_source() -> dict[tuple[str, str | None], list[str]]:
    """What `pybabel extract` finds with babel.cfg's mapping and keywords: {(msgid, ctx): [file:line]}."""
    extract = next(c for c in documented_commands() if c.startswith("pybabel extract"))
    keywords = dict(DEFAULT_KEYWORDS)
    keywords.update(parse_keywords(re.findall(r"(?:-k|--keyword)[= ]?(\S+)", extract)))
    with BABEL_CFG.open(encoding="utf-8") as f:
        method_map, options_map = parse_mapping_cfg(f, filename=str(BABEL_CFG))
    # Only walk the top folders the mapping names (and, like pybabel, skip .* and _* folders).
    roots = {pattern.split("/", 1)[0] for pattern, _method in method_map}

    def wanted(dirpath: str) -> bool:
        rel = Path(dirpath).relative_to(ROOT)
        return rel.parts[0] in roots and not any(p.startswith((".", "_")) for p in rel.parts)

    found: dict[tuple[str, str | None], list[str]] = {}
    for filename, lineno, message, _comments, context in extract_from_dir(
        ROOT, method_map, options_map, keywords=keywords, directory_filter=wanted
    ):
        found.setdefault(key(message, context), []).append(f"{filename}:{lineno}")
    return found


# ------------------------------------------------------------------------------- the catalogue


def test_mapping_covers_every_package_with_ui_text():
    with BABEL_CFG.open(encoding="utf-8") as f:
        method_map, _options = parse_mapping_cfg(f, filename=str(BABEL_CFG))
    patterns = dict(method_map)
    for package in ("marketplace", "merchants", "coupons"):
        assert patterns.get(f"{package}/**.py") == "python", package
    assert patterns.get("templates/**.html") == "jinja2"
    assert not any(p.startswith("wecom") for p in patterns), "the simulator has its own templates"
    extract = next(c for c in documented_commands() if c.startswith("pybabel extract"))
    assert "-k _l" in extract and "-k lazy_gettext" in extract


def test_every_message_is_translated_and_none_is_fuzzy():
    catalog = load_po()
    messages = [m for m in catalog if m.id]
    assert len(messages) > 400
    empty = [m.id for m in messages if not m.string or (isinstance(m.string, tuple) and not all(m.string))]
    fuzzy = [m.id for m in messages if m.fuzzy]
    assert not empty, f"{len(empty)} untranslated in {PO.relative_to(ROOT)}:\n" + "\n".join(map(str, empty))
    assert not fuzzy, "fuzzy entries (check them, then remove the flag):\n" + "\n".join(map(str, fuzzy))
    assert not catalog.obsolete, "obsolete (#~) entries: run the update command in babel.cfg"
    problems = [f"{m.id}: {err}" for m, errors in catalog.check() for err in errors]
    assert not problems, "placeholder errors:\n" + "\n".join(problems)


def test_committed_mo_matches_the_po():
    """messages.mo is what runs; it must be the .po compiled (`pybabel compile` = write_mo)."""
    compiled = BytesIO()
    write_mo(compiled, load_po())
    compiled.seek(0)
    expected = {(m.id, m.context): m.string for m in read_mo(compiled) if m.id}
    with MO.open("rb") as f:
        actual = {(m.id, m.context): m.string for m in read_mo(f) if m.id}
    stale = sorted(
        (str(k[0]) for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k)), key=str
    )
    assert not stale, (
        f"{MO.relative_to(ROOT)} is out of date for {len(stale)} message(s), e.g. {stale[:5]}.\n"
        "Run: pybabel compile -d translations -l en"
    )


def test_every_string_in_the_code_is_in_the_catalogue():
    found = extract_source()
    assert len(found) > 400  # the extraction really ran over the packages and templates
    catalog = load_po()
    missing = {k: where for k, where in found.items() if catalog.get(k[0], context=k[1]) is None}
    listing = "\n".join(f"  {k[0]!r}  ({', '.join(where[:3])})" for k, where in sorted(missing.items(), key=str))
    assert not missing, f"{len(missing)} string(s) not in {PO.relative_to(ROOT)}:\n{listing}\n{how_to_fix()}"
    stale = sorted(m.id for m in catalog if m.id and key(m.id, m.context) not in found)
    assert not stale, "entries no longer in the code:\n  " + "\n  ".join(map(str, stale)) + "\n" + how_to_fix()


# ------------------------------------------------------------------------------- rendered pages


def english(client, url: str) -> str:
    resp = client.get(url + ("&" if "?" in url else "?") + "lang=en")
    assert resp.status_code == 200, (url, resp.status_code)
    html = resp.get_data(as_text=True)
    assert '<html lang="en">' in html
    return html


def test_login_and_home_pages_in_english(client):  # noqa: F811
    page = english(client, "/auth/login")
    for text in ("Sign in", "Username", "Password", "Remember me", "Merchant sign-up", "No account yet?"):
        assert text in page, text
    # Nothing Chinese left but the switch back to Chinese.
    assert CJK.findall(page.replace("中文", "")) == []

    home = english(client, "/")
    assert "Neighbourhood restaurants, coupons in WeCom." in home
    assert "Linli · neighbourhood deals" in home
    assert CJK.findall(home.replace("中文", "")) == []
    assert "街坊的餐馆" in client.get("/?lang=zh_CN").get_data(as_text=True)


@pytest.fixture
def shop(app):
    with tx() as session:
        city = Region(name="上海", level=RegionLevel.city)
        session.add(city)
        session.flush()
        district = Region(name="徐汇", level=RegionLevel.district, parent_id=city.id)
        session.add(district)
        session.flush()
        circle = Region(name="徐家汇", level=RegionLevel.circle, parent_id=district.id)
        session.add(circle)
        session.flush()
        return make_shop(session, circle)


def test_portal_coupons_and_desk_in_english(app, client, shop):  # noqa: F811
    template = make_template(shop)  # 满100减20, an amount-off coupon
    login(client, shop.owner)
    page = english(client, "/portal/coupons/")
    for text in ("New coupon", "Redemption desk", "Amount off", "Spend ¥100, save ¥20", "Merchant-funded", "Active"):
        assert text in page, text
    assert "新建优惠券" not in page and "核销台" not in page

    preview = english(client, f"/portal/coupons/{template.id}/preview")
    assert "Coupon preview" in preview and "Limit 1 per person" in preview

    desk = english(client, "/desk")
    assert "Scan the diner's coupon code" in desk and "Look up" in desk
    db.session.remove()
