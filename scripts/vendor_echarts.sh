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

# shellcheck source=npm_pinned.sh
. "$repo_root/scripts/npm_pinned.sh"

cd "$work"
npm_pinned echarts "$ECHARTS_VERSION" "$ECHARTS_INTEGRITY"

mkdir -p "$dest"
cp package/dist/echarts.min.js "$dest/echarts.min.js"
cp package/LICENSE "$dest/LICENSE"
cp package/NOTICE "$dest/NOTICE"
# The LICENSE points at licenses/LICENSE-d3 for d3-derived code that is in the bundle.
cp package/licenses/LICENSE-d3 "$dest/LICENSE-d3"
printf 'echarts %s\n%s\n' "$ECHARTS_VERSION" "$ECHARTS_INTEGRITY" > "$dest/VERSION"

echo "vendored echarts $ECHARTS_VERSION into ${dest#"$repo_root"/}"
