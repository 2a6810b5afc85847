"""The vendored Apache ECharts (``scripts/vendor_echarts.sh``) and the statistics script.

No network: the tarball's sha512 is checked by the script when it re-vendors, not here;
here the files it leaves behind must agree with each other and with the pin in the script.
"""
from __future__ import annotations

import re

from core.config import ROOT

VENDOR = ROOT / "marketplace" / "static" / "vendor" / "echarts"
SCRIPT = ROOT / "scripts" / "vendor_echarts.sh"
STATS_JS = ROOT / "marketplace" / "static" / "stats.js"


def _pinned_version() -> str:
    match = re.search(r'^ECHARTS_VERSION="([^"]+)"$', SCRIPT.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, "scripts/vendor_echarts.sh has no ECHARTS_VERSION=\"…\" line"
    return match.group(1)


def _version_file() -> list[str]:
    return (VENDOR / "VERSION").read_text(encoding="utf-8").split()


def test_the_bundle_is_echarts_6_1_0_under_its_licence_banner():
    bundle = (VENDOR / "echarts.min.js").read_text(encoding="utf-8")
    assert len(bundle) > 500_000  # the full build, not a stub or an LFS pointer
    assert bundle.lstrip().startswith("/*")
    assert "Licensed to the Apache Software Foundation (ASF)" in bundle[:1000]
    assert 'version="6.1.0"' in bundle or 'version:"6.1.0"' in bundle


def test_the_bundle_has_the_chinese_and_english_locales_built_in():
    bundle = (VENDOR / "echarts.min.js").read_text(encoding="utf-8")
    assert '"ZH"' in bundle and '"EN"' in bundle
    assert "还原" in bundle and "Restore" in bundle  # toolbox strings of each locale


def test_licence_and_notice_ship_next_to_the_bundle():
    licence = (VENDOR / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence and "Version 2.0" in licence
    assert "Apache ECharts" in (VENDOR / "NOTICE").read_text(encoding="utf-8")
    assert (VENDOR / "LICENSE-d3").is_file()  # the LICENSE points at it for bundled d3 code


def test_version_file_names_6_1_0_and_an_integrity_string():
    words = _version_file()
    assert words[:2] == ["echarts", "6.1.0"]
    assert any(re.fullmatch(r"sha512-[A-Za-z0-9+/]{86}==", w) for w in words)


def test_the_vendoring_script_pins_what_was_vendored():
    script = SCRIPT.read_text(encoding="utf-8")
    assert script.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script
    words = _version_file()
    assert _pinned_version() == words[1]
    integrity = next(w for w in words if w.startswith("sha512-"))
    assert f'ECHARTS_INTEGRITY="{integrity}"' in script


def test_stats_js_has_no_eval_and_makes_no_inline_handlers():
    source = STATS_JS.read_text(encoding="utf-8")
    assert "eval(" not in source
    assert not re.search(r"""setAttribute\(\s*['"`]on""", source, re.IGNORECASE)
    assert "innerHTML" not in source
