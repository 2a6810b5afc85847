#!/usr/bin/env bash
# Re-vendor Apache ECharts into marketplace/static/vendor/echarts/ (no CDN at run time).
# Pinned: bump ECHARTS_VERSION and ECHARTS_INTEGRITY together
# (ECHARTS_INTEGRITY = `npm view echarts@<version> dist.integrity`).
# Needs: npm, tar, openssl (or sha512sum + base64). Run from anywhere.
set -euo pipefail

ECHARTS_VERSION="6.1.0"
ECHARTS_INTEGRITY="sha512-q0yaFPggC9FUdsWH4blavRWFmxdrIodbkoKNAjJudAI6CA9gNPxHtV2RcZNEepZVlk4yvBYkOkbk6HIVpIyHZA=="

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$repo_root/marketplace/static/vendor/echarts"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

sha512_b64() {
    if command -v openssl >/dev/null 2>&1; then
        openssl dgst -sha512 -binary "$1" | base64 | tr -d '\n'
    else
        sha512sum "$1" | cut -d' ' -f1 | xxd -r -p | base64 | tr -d '\n'
    fi
}

cd "$work"
tarball="$(npm pack --silent "echarts@${ECHARTS_VERSION}" | tail -n 1)"
actual="sha512-$(sha512_b64 "$tarball")"
if [ "$actual" != "$ECHARTS_INTEGRITY" ]; then
    echo "integrity mismatch for $tarball:" >&2
    echo "  expected $ECHARTS_INTEGRITY" >&2
    echo "  got      $actual" >&2
    exit 1
fi

tar -xzf "$tarball"
pkg_version="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' package/package.json)"
if [ "$pkg_version" != "$ECHARTS_VERSION" ]; then
    echo "package.json says version '$pkg_version', expected $ECHARTS_VERSION" >&2
    exit 1
fi

mkdir -p "$dest"
cp package/dist/echarts.min.js "$dest/echarts.min.js"
cp package/LICENSE "$dest/LICENSE"
cp package/NOTICE "$dest/NOTICE"
# The LICENSE points at licenses/LICENSE-d3 for d3-derived code that is in the bundle.
cp package/licenses/LICENSE-d3 "$dest/LICENSE-d3"
printf 'echarts %s\n%s\n' "$ECHARTS_VERSION" "$ECHARTS_INTEGRITY" > "$dest/VERSION"

echo "vendored echarts $ECHARTS_VERSION into ${dest#"$repo_root"/}"
