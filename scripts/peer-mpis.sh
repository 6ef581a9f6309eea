# Sourced by the benchmark scripts: Debian's MPICH and Open MPI as peers.
#
# find_peers MODES: with PEERS=install, apt-gets whichever is missing
# (root); unless PEERS=none, builds scripts/osu-style.c with each MPI's
# mpicc into $OUT and sets the array `peers` to NAME-MODE for each MPI
# found and each of MODES (tcp, shm).
find_peers() {
    local modes=$1 mode
    peers=()
    if [ "$PEERS" = install ]; then
        local missing=()
        command -v mpicc.mpich >/dev/null 2>&1 || missing+=(mpich libmpich-dev)
        command -v mpicc.openmpi >/dev/null 2>&1 || missing+=(openmpi-bin libopenmpi-dev)
        if [ "${#missing[@]}" -gt 0 ]; then
            echo "# installing ${missing[*]} (Debian)" >&2
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        fi
    fi
    if [ "$PEERS" != none ] && command -v mpicc.mpich >/dev/null 2>&1; then
        mpicc.mpich -O2 -o "$OUT/osu-style-mpich" scripts/osu-style.c 2>/dev/null
        for mode in $modes; do peers+=("mpich-$mode"); done
    fi
    if [ "$PEERS" != none ] && command -v mpicc.openmpi >/dev/null 2>&1; then
        mpicc.openmpi -O2 -o "$OUT/osu-style-openmpi" scripts/osu-style.c 2>/dev/null
        for mode in $modes; do peers+=("openmpi-$mode"); done
    fi
}
