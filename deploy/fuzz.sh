#!/usr/bin/env bash
# Fuzzes the wire decoder with libFuzzer for a bounded time: deploy/fuzz.sh [SECONDS]
# (default 60). Builds the wire-fuzz target with -sanitize=fuzzer in .build-fuzz, seeds a
# corpus from the golden vectors, and fails on any crash. A crashing input is left in
# .build-fuzz/crashes; `swift run wire-fuzz FILE` replays it without libFuzzer.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$NESTOR_ROOT"

seconds="${1:-60}"
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || die "usage: deploy/fuzz.sh [SECONDS] (a positive number; got '$seconds')"

ensure_build_dependencies
command -v python3 >/dev/null 2>&1 || ensure_packages python3

log "building the decoder's fuzz target (libFuzzer) in .build-fuzz"
swift build --product wire-fuzz --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer -Xswiftc -DFUZZING \
    -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld

corpus=.build-fuzz/corpus
mkdir -p "$corpus" .build-fuzz/crashes
python3 - "$corpus" <<'PY'
import glob, os, struct, sys
corpus = sys.argv[1]
names = []
for line in open("Protos/Messages/Generated.swift"):
    line = line.strip()
    if line.startswith("CatalogEntry(type:"):
        number = int(line.split("type:")[1].split(",")[0])
        name = line.split('name: "')[1].split('"')[0]
        names.append((number, name))
preamble = b"NSTR" + struct.pack("<HHII", 1, 0, 1 << 16, 0)
for index, (number, name) in enumerate(names):
    path = f"Tests/WireTests/Golden/{name}.hex"
    if not os.path.exists(path):
        continue
    payload = bytes.fromhex(open(path).read().strip())
    open(os.path.join(corpus, f"payload-{name}"), "wb").write(bytes([index * 2 + 1]) + payload)
    frame = struct.pack("<IBBHQ", len(payload), 1, 0, number, 1) + payload
    open(os.path.join(corpus, f"stream-{name}"), "wb").write(b"\x00" + preamble + frame)
PY

log "fuzzing for ${seconds} s ($(ls "$corpus" | wc -l) seed inputs)"
.build-fuzz/debug/wire-fuzz "$corpus" -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=2048 \
    -artifact_prefix=.build-fuzz/crashes/ -print_final_stats=1 2>.build-fuzz/fuzz.log \
    || { tail -40 .build-fuzz/fuzz.log >&2; die "the fuzzer found a crash: see .build-fuzz/crashes/"; }
grep -E "stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb" .build-fuzz/fuzz.log >&2 || true
log "no crash"
