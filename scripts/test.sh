#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs every test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# Tests use their own job secret; never touch the user's key file.
export FABRIC_JOB_SECRET="${FABRIC_JOB_SECRET:-test-secret-$(od -An -tx8 -N16 /dev/urandom | tr -d ' \n')}"
swift build --build-tests
swift test --skip-build "$@"
