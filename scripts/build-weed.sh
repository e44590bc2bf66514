#!/usr/bin/env bash
# The embedded object store's binary: SeaweedFS's `weed`, built from its Go module once per machine.
#
#   bash scripts/build-weed.sh VERSION DEST_DIR
#
# The build (12-21 minutes on 2 busy cores, a 164 MB binary, a 2 GB Go build cache) is kept OUTSIDE the clone,
# in ~/.cache/icetide/weed-VERSION/ (keyed by version, like the registry build), so a fresh clone on the same
# machine links it instead of rebuilding. `go install …@VERSION` is refused (the module's go.mod has a replace
# directive), so the module is fetched with `go mod download` (verified against go.sum's checksum database)
# and built inside Go's module cache with Go's own build cache (`go env GOCACHE`). It needs Go >= 1.26.6 (the
# module's go.mod; an older go fetches that toolchain from the Go module proxy) and about 4.3 GB for Go's caches.
set -euo pipefail
MODULE=github.com/seaweedfs/seaweedfs
VERSION=${1:?usage: build-weed.sh VERSION DEST_DIR}
DEST=${2:?usage: build-weed.sh VERSION DEST_DIR}
STORE=${ICETIDE_BUILD_STORE:-$HOME/.cache/icetide}/weed-$VERSION

if [ -x "$STORE/weed" ] && "$STORE/weed" version >/dev/null 2>&1; then
    echo "weed: reusing the build in $STORE"
else
    command -v go >/dev/null || { echo "error: go not found: the object store (SeaweedFS) is built from its Go module" >&2; exit 1; }
    started=$(date +%s)
    (cd / && go mod download "$MODULE@$VERSION")
    src="$(go env GOMODCACHE)/$MODULE@$VERSION"
    rm -rf "$STORE.tmp" && mkdir -p "$STORE.tmp"
    echo "weed: building $MODULE@$VERSION (about 20 minutes on 2 cores) …"
    (cd "$src" && go build -trimpath -ldflags "-s -w" -o "$STORE.tmp/weed" ./weed)
    "$STORE.tmp/weed" version
    rm -rf "$STORE" && mv "$STORE.tmp" "$STORE"
    echo "weed: built in $(( $(date +%s) - started )) s into $STORE"
fi
mkdir -p "$DEST"
ln -sfn "$STORE/weed" "$DEST/weed"
