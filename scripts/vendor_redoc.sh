#!/usr/bin/env bash
# Re-vendor Redoc's standalone bundle into marketplace/static/vendor/redoc/ (no CDN at run time):
# it renders the API's reference page (/api/v1/docs/reference/) from /api/v1/openapi.json.
# Pinned: bump REDOC_VERSION and REDOC_INTEGRITY together
# (REDOC_INTEGRITY = `npm view redoc@<version> dist.integrity`).
# Needs: npm, tar, openssl (or sha512sum + base64). Run from anywhere.
set -euo pipefail

REDOC_VERSION="2.5.4"
REDOC_INTEGRITY="sha512-M6jWhG1qoBnH6TFmzJnstyCZ87HmOY/UzDm78mHiYihEdlV/YcS9ogOo1NlElnJMeLsyxHFe2yFc4sNjHTrABQ=="

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$repo_root/marketplace/static/vendor/redoc"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# shellcheck source=npm_pinned.sh
. "$repo_root/scripts/npm_pinned.sh"

cd "$work"
npm_pinned redoc "$REDOC_VERSION" "$REDOC_INTEGRITY"

# The standalone bundle carries a search worker inline (started from a blob: URL); the
# worker's own third-party notices (lunr) ship in a file named by the worker's hash.
worker_licences=(package/bundles/*.worker.js.LICENSE.txt)
if [ "${#worker_licences[@]}" -ne 1 ] || [ ! -f "${worker_licences[0]}" ]; then
    echo "expected one *.worker.js.LICENSE.txt in the package, found: ${worker_licences[*]}" >&2
    exit 1
fi

rm -rf "$dest"
mkdir -p "$dest"
cp package/bundles/redoc.standalone.js "$dest/redoc.standalone.js"
cp package/LICENSE "$dest/LICENSE"
# The bundle's banner points at these for the third-party code built into it.
cp package/bundles/redoc.standalone.js.LICENSE.txt "$dest/redoc.standalone.js.LICENSE.txt"
cp "${worker_licences[0]}" "$dest/"
printf 'redoc %s\n%s\n' "$REDOC_VERSION" "$REDOC_INTEGRITY" > "$dest/VERSION"

echo "vendored redoc $REDOC_VERSION into ${dest#"$repo_root"/}"
