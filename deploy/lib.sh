# Shared helpers of Nestor's deploy scripts. Source it; do not run it.

set -euo pipefail

NESTOR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export NESTOR_ROOT

# Steps are logged with the seconds since the first script of this run started.
NESTOR_STARTED_AT="${NESTOR_STARTED_AT:-$(date +%s)}"
export NESTOR_STARTED_AT
log() { printf '\033[1m==> [%4ss] %s\033[0m\n' "$(( $(date +%s) - NESTOR_STARTED_AT ))" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root to run: $* (install sudo or run as root)"
    fi
}

# Installs the Debian packages among "$@" that are missing.
ensure_packages() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing Debian packages: ${missing[*]}"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}"
    fi
}

# Finds the Swift toolchain (6.x) or explains how to get one.
ensure_swift() {
    if ! command -v swift >/dev/null 2>&1; then
        for candidate in /opt/swift/usr/bin /usr/share/swift/usr/bin; do
            if [ -x "$candidate/swift" ]; then PATH="$candidate:$PATH"; export PATH; break; fi
        done
    fi
    command -v swift >/dev/null 2>&1 || die "Swift 6 is not installed (https://www.swift.org/install/linux/)"
    local version
    version="$(swift --version 2>/dev/null | grep -o 'Swift version [0-9]*' | grep -o '[0-9]*$' || true)"
    [ "${version:-0}" -ge 6 ] || die "Swift 6 or later is needed; found: $(swift --version 2>&1 | head -1)"
}

# What the build and the tests need from the system.
ensure_build_dependencies() {
    ensure_packages ca-certificates git libcurl4 libxml2 zlib1g-dev libsqlite3-dev
    ensure_swift
}
