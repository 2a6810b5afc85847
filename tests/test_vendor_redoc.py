"""The vendored Redoc (``scripts/vendor_redoc.sh``) and the API reference page it renders.

No network: the tarball's sha512 is checked by the script when it re-vendors, not here;
here the files it leaves behind must agree with each other and with the pin in the script,
and the app must serve the page, the bundle, and a policy that lets the bundle's search run.
"""
from __future__ import annotations

import re

from core.config import ROOT

VENDOR = ROOT / "marketplace" / "static" / "vendor" / "redoc"
SCRIPT = ROOT / "scripts" / "vendor_redoc.sh"
BUNDLE_URL = "/static/vendor/redoc/redoc.standalone.js"
REFERENCE = "/api/v1/docs/reference/"


def _pinned_version() -> str:
    match = re.search(r'^REDOC_VERSION="([^"]+)"$', SCRIPT.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, "scripts/vendor_redoc.sh has no REDOC_VERSION=\"…\" line"
    return match.group(1)


def _version_file() -> list[str]:
    return (VENDOR / "VERSION").read_text(encoding="utf-8").split()


def test_the_bundle_is_the_pinned_redoc_2_standalone_build():
    bundle = (VENDOR / "redoc.standalone.js").read_text(encoding="utf-8")
    assert len(bundle) > 800_000  # the full standalone build, not a stub or an LFS pointer
    assert bundle.startswith("/*! For license information please see redoc.standalone.js.LICENSE.txt */")
    version = _pinned_version()
    assert version.startswith("2.")
    assert f'"{version}"' in bundle
    assert '"spec-url"' in bundle  # reads the <redoc spec-url=…> element


def test_licences_ship_next_to_the_bundle():
    assert "MIT License" in (VENDOR / "LICENSE").read_text(encoding="utf-8")
    assert "Rebilly" in (VENDOR / "LICENSE").read_text(encoding="utf-8")
    banner = (VENDOR / "redoc.standalone.js.LICENSE.txt").read_text(encoding="utf-8")
    assert "DOMPurify" in banner and "react-dom" in banner  # third-party code built into the bundle
    workers = sorted(VENDOR.glob("*.worker.js.LICENSE.txt"))
    assert len(workers) == 1, workers  # the inline search worker's own notices (lunr)
    assert "lunr" in workers[0].read_text(encoding="utf-8")
    assert workers[0].name in (VENDOR / "redoc.standalone.js").read_text(encoding="utf-8")


def test_version_file_names_the_pin_and_an_integrity_string():
    words = _version_file()
    assert words[:2] == ["redoc", _pinned_version()]
    assert any(re.fullmatch(r"sha512-[A-Za-z0-9+/]{86}==", w) for w in words)


def test_the_vendoring_script_pins_what_was_vendored():
    script = SCRIPT.read_text(encoding="utf-8")
    assert script.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script
    integrity = next(w for w in _version_file() if w.startswith("sha512-"))
    assert f'REDOC_INTEGRITY="{integrity}"' in script
    assert {p.name for p in VENDOR.iterdir()} == {
        "redoc.standalone.js", "LICENSE", "redoc.standalone.js.LICENSE.txt", "VERSION",
        *(p.name for p in VENDOR.glob("*.worker.js.LICENSE.txt")),
    }


def test_the_reference_page_loads_the_vendored_bundle_and_the_document(client):
    page = client.get(REFERENCE)
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert f'<script src="{BUNDLE_URL}"></script>' in html
    assert 'spec-url="/api/v1/openapi.json"' in html
    assert "//cdn" not in html and "https://" not in html  # nothing from elsewhere at run time
    with client.get(BUNDLE_URL) as bundle:
        assert bundle.status_code == 200 and bundle.mimetype in ("text/javascript", "application/javascript")
        assert bundle.get_data() == (VENDOR / "redoc.standalone.js").read_bytes()


def test_only_the_reference_page_may_start_a_blob_worker(client):
    """Redoc's search runs in a worker made from a ``blob:`` URL; under the site's policy it is
    refused and the search box finds nothing (checked in Chromium), so that page alone allows it."""
    policy = client.get(REFERENCE).headers["Content-Security-Policy"]
    assert "worker-src 'self' blob:" in policy
    assert "'unsafe-eval'" not in policy and "frame-ancestors 'none'" in policy
    for other in ("/", "/api/v1/openapi.json", BUNDLE_URL, "/api/v1/docs/reference"):
        with client.get(other) as resp:
            assert "blob:" not in resp.headers["Content-Security-Policy"], other
