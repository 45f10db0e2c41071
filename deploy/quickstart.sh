#!/usr/bin/env bash
# Sets up, builds and runs Nestor's main job: VMM on LPAR with VMCS shadowing off and on,
# on the simulated whitepaper blade (Xeon E5-2667 v3), and the whitepaper's figure 10.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$NESTOR_ROOT"

ensure_build_dependencies

log "building blade-agent (release)"
swift build -c release --product blade-agent
agent="$(swift build -c release --show-bin-path)/blade-agent"

log "the whitepaper's LPAR layout, checked against the partitioner's isolation rules"
"$agent" lpar check --spec deploy/configs/whitepaper-blade.yaml

log "VMCS shadowing off and on (simulated backend, embedded defaults)"
"$agent" bench shadow-vmcs --backend sim --sweep "$@"
