#!/usr/bin/env bash
# Installs the system packages the build needs, if they are missing.
# Debian 12 (or Ubuntu) with Swift 6.2+ on the PATH is assumed.
set -euo pipefail

# The build needs the verbs headers; the tests also start ranks under
# MPICH's Hydra (mpich), which FABRIC_SETUP_TEST_PACKAGES=1 adds.
packages=(libibverbs-dev librdmacm-dev)
[ "${FABRIC_SETUP_TEST_PACKAGES:-0}" = 1 ] && packages+=(mpich)
need=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || need+=("$package")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
    for candidate in /opt/swift/usr/bin /usr/share/swift/usr/bin; do
        [ -x "$candidate/swift" ] && export PATH="$candidate:$PATH"
    done
fi
command -v swift >/dev/null 2>&1 || { echo "swift is not on the PATH: install Swift 6.2 or later" >&2; exit 1; }
