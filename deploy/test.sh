#!/usr/bin/env bash
# Sets up what the tests need and runs Nestor's whole test suite.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$NESTOR_ROOT"

ensure_build_dependencies
command -v python3 >/dev/null 2>&1 || ensure_packages python3
# The fault harness's read-only store disk is a FUSE filesystem (deploy/harness/errorfs.py).
ensure_packages python3 python3-fusepy

log "checking that the generated protocol code matches Protos/Schema/nestor.schema"
python3 Protos/Schema/generate.py --check

log "building (debug, with tests)"
swift build --build-tests

# The tests that run KVM guests go one at a time, after the rest: many KVM LPARs at once on
# 2 cores have stalled this host's per-CPU kernel work (a "workqueue lockup" on CPU 0 under
# kvm_pvm) for minutes.
kvm_tests='KVMBackendTests|KVMRuntimeTests|KVMSharedRuntimeTests|KVMCommandTests|KVMBladeTests|KVMFaultTests'

log "running the test suite"
swift test --skip-build --skip "$kvm_tests"

log "running the tests with KVM guests, one at a time"
swift test --skip-build --no-parallel --filter "$kvm_tests"

if command -v gcc >/dev/null && command -v ld >/dev/null && command -v objcopy >/dev/null; then
    log "rebuilding the guest images from source"
    images="$(mktemp -d)"
    Agents/Guests/build.sh "$images"
    different=()
    for image in lpar-os.bin l1-vmm.bin vmx-microcode.bin; do
        cmp -s "$images/$image" "Agents/Guests/images/$image" || different+=("$image")
    done
    if [ "${#different[@]}" -eq 0 ]; then
        # Byte for byte the images the KVM tests above booted: booting them again adds nothing.
        log "the rebuilt guest images are identical to the committed ones"
    else
        log "the rebuilt ${different[*]} differ from the committed images (another toolchain?): booting the rebuilt ones"
        NESTOR_GUEST_IMAGES="$images" swift test --skip-build --no-parallel --filter KVMBackendTests
    fi
    rm -rf "$images"
else
    log "no gcc/ld/objcopy: the committed guest images are tested as they are"
fi

log "running fault scenarios against a real cluster (one seed each; nestor-harness run --help for the rest)"
.build/debug/nestor-harness run --seeds 1 \
    Tests/Scenarios/agent-kill.yaml Tests/Scenarios/controller-kill-in-create-storm.yaml Tests/Scenarios/store-read-only.yaml \
    Tests/Scenarios/test-switches/skip-hard-anti-affinity.yaml Tests/Scenarios/test-switches/no-store-cas.yaml

log "simulating the cluster under faults (bounded: 200 seeds of 40 blades; nestor-harness simulate --help for the rest)"
.build/debug/nestor-harness simulate --seeds 1-200 --blades 40 --minutes 0.5 --faults-per-minute 12
log "the simulation's checker sees what the test switches break"
.build/debug/nestor-harness simulate --seeds 1-20 --blades 40 --minutes 0.5 --quiet --test-switch skip-hard-anti-affinity
.build/debug/nestor-harness simulate --seeds 1-20 --blades 40 --minutes 0.5 --quiet --test-switch shared-store --test-switch no-store-cas

log "fuzzing the wire decoder (bounded)"
"$NESTOR_ROOT/deploy/fuzz.sh" "${NESTOR_FUZZ_SECONDS:-30}"

log "all tests passed"
