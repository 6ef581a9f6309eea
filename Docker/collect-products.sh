#!/bin/sh
# Copies the tools a container needs out of a release build, with the Swift
# runtime libraries they load (found with ldd, so nothing is listed by hand),
# into OUT/bin and OUT/lib/swift: the tree the runtime image copies to
# /usr/local. The tools lose their debug information (strip).
#   sh Docker/collect-products.sh BUILD_DIR OUT
set -eu
build="$1"
out="$2"
tools="mpirun mpiexec mpiinfo mpibench mpi-example mpi-p2p-check mpi-runtime-check mpi-regcache-check fabric-info fabric-perf fabric-example"
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib/swift"
for tool in $tools; do
    [ -x "$build/$tool" ] || { echo "collect-products: $build/$tool is missing (swift build -c release builds it)" >&2; exit 1; }
    cp "$build/$tool" "$out/bin/"
    # Debug information is most of a tool's size; the image need not carry it.
    strip --strip-debug "$out/bin/$tool"
done
# The Swift runtime is whatever the tools load from outside the system's
# library folders; rdma-core and libc come from the image's packages.
for tool in $tools; do ldd "$build/$tool"; done \
    | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' \
    | grep -v -E '^/(usr/)?lib(64)?/' \
    | sort -u \
    | while read -r library; do cp "$library" "$out/lib/swift/"; done
[ -n "$(ls "$out/lib/swift")" ] || { echo "collect-products: found no Swift runtime libraries through ldd" >&2; exit 1; }
