#!/bin/sh
# Vendors asciinema-player's browser bundle from its npm package into
# vendor/asciinema-player/, checking the tarball against the integrity the npm registry
# publishes. The files are committed, so building portcullis never needs npm or a network;
# run this only to move to another version (then update VERSION below and the README).
set -eu
VERSION=3.17.0
INTEGRITY=sha512-JbjNJmA2TLIeYNaOEja+kVSzXadKoqpIzVVmfBGNj2DmdtE/vExBCnkE8NYEcpaQcDvUYg8Ltt0urT80frACmw==

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "asciinema-player@$VERSION" >/dev/null
tarball="asciinema-player-$VERSION.tgz"
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$actual" != "$INTEGRITY" ]; then
    echo "vendor.sh: $tarball does not match the pinned integrity" >&2
    echo "  expected $INTEGRITY" >&2
    echo "  got      $actual" >&2
    exit 1
fi
tar -xzf "$tarball"
out="$here/vendor/asciinema-player"
mkdir -p "$out"
cp package/dist/bundle/asciinema-player.min.js package/dist/bundle/asciinema-player.css \
    package/LICENSE "$out/"
echo "$VERSION" >"$out/VERSION"
(cd "$out" && sha256sum asciinema-player.min.js asciinema-player.css >SHA256SUMS)
echo "vendored asciinema-player $VERSION into $out"
