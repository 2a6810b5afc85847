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

sha512_b64() {
    if command -v openssl >/dev/null 2>&1; then
        openssl dgst -sha512 -binary "$1" | base64 | tr -d '\n'
    else
        sha512sum "$1" | cut -d' ' -f1 | xxd -r -p | base64 | tr -d '\n'
    fi
}

cd "$work"
tarball="$(npm pack --silent "redoc@${REDOC_VERSION}" | tail -n 1)"
actual="sha512-$(sha512_b64 "$tarball")"
if [ "$actual" != "$REDOC_INTEGRITY" ]; then
    echo "integrity mismatch for $tarball:" >&2
    echo "  expected $REDOC_INTEGRITY" >&2
    echo "  got      $actual" >&2
    exit 1
fi

tar -xzf "$tarball"
pkg_version="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' package/package.json)"
if [ "$pkg_version" != "$REDOC_VERSION" ]; then
    echo "package.json says version '$pkg_version', expected $REDOC_VERSION" >&2
    exit 1
fi

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
