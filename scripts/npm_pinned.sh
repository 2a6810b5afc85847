# Sourced by scripts/vendor_*.sh: fetch one npm package at a pinned version and integrity.
#   npm_pinned NAME VERSION INTEGRITY   unpacks it into ./package (of the current directory),
#                                       or exits 1 if the tarball or its version is not the pin.
# Needs: npm, tar, openssl (or sha512sum + base64).

sha512_b64() {
    if command -v openssl >/dev/null 2>&1; then
        openssl dgst -sha512 -binary "$1" | base64 | tr -d '\n'
    else
        sha512sum "$1" | cut -d' ' -f1 | xxd -r -p | base64 | tr -d '\n'
    fi
}

npm_pinned() {
    local name="$1" version="$2" integrity="$3" tarball actual pkg_version
    tarball="$(npm pack --silent "${name}@${version}" | tail -n 1)"
    actual="sha512-$(sha512_b64 "$tarball")"
    if [ "$actual" != "$integrity" ]; then
        echo "integrity mismatch for $tarball:" >&2
        echo "  expected $integrity" >&2
        echo "  got      $actual" >&2
        exit 1
    fi
    tar -xzf "$tarball"
    pkg_version="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' package/package.json)"
    if [ "$pkg_version" != "$version" ]; then
        echo "package.json says version '$pkg_version', expected $version" >&2
        exit 1
    fi
}
