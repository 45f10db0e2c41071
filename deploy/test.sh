#!/usr/bin/env bash
# Sets up what the tests need and runs Nestor's whole test suite.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$NESTOR_ROOT"

ensure_build_dependencies

log "building (debug, with tests)"
swift build --build-tests

log "running the test suite"
swift test

log "all tests passed"
