#!/usr/bin/env bash
# Prints the tables of docs/BENCHMARKS.md (figure 10, sensitivity, shadow sets, vCPU
# placement, determinism) from the simulated backend, as Markdown.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$NESTOR_ROOT"
ensure_build_dependencies
command -v python3 >/dev/null 2>&1 || ensure_packages python3
swift build -c release --product blade-agent >&2
agent="$(swift build -c release --show-bin-path)/blade-agent"

json() { "$agent" bench shadow-vmcs --backend sim --json "$@"; }
relative() {
    json "$@" | python3 -c 'import json,sys; w={x["name"]: x for x in json.load(sys.stdin)["workloads"]}; print("%.2f | %.2f" % (w["iometer"]["relative"], w["sysbench-oltp"]["relative"]))'
}

echo "Date: $(date -u +%Y-%m-%d). Host: $(uname -sm), $(nproc) cores of $(lscpu | sed -n 's/^Model name: *//p' | head -1)."
echo
echo "### Figure 10"
json | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("| workload | ops/s off | ops/s on | relative | L2 exits/op | trapped VMX/op off | trapped VMX/op on |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for w in r["workloads"]:
    print("| %s | %s | %s | %.2fx | %.1f | %.1f | %.1f |" % (w["name"], format(round(w["opsPerSecondOff"]), ","),
          format(round(w["opsPerSecondOn"]), ","), w["relative"], w["l2ExitsPerOp"], w["trappedVMXPerOpOff"], w["trappedVMXPerOpOn"]))
print()
print("| workload | L0 off | L1 off | L2 off | L0 on | L1 on | L2 on | exits/op off | exits/op on |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for w in r["workloads"]:
    o, n = w["off"], w["on"]
    print("| %s | %.1f us | %.1f us | %.1f us | %.1f us | %.1f us | %.1f us | %.1f | %.1f |" % (w["name"], o["l0MicrosPerOp"], o["l1MicrosPerOp"], o["l2MicrosPerOp"],
          n["l0MicrosPerOp"], n["l1MicrosPerOp"], n["l2MicrosPerOp"], o["l2Exits"] / o["operations"], n["l2Exits"] / n["operations"]))
'
echo
echo "### Sweep (pio-loop)"
json --workload pio-loop --sweep --seconds 0.5 | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("| extra reads/exit | L1 VMX accesses/exit | ops/s off | ops/s on | relative |")
print("| ---: | ---: | ---: | ---: | ---: |")
for p in r["sweep"]:
    print("| %d | %.1f | %s | %s | %.2fx |" % (p["extraReadsPerExit"], p["vmxAccessesPerExit"], format(round(p["opsPerSecondOff"]), ","), format(round(p["opsPerSecondOn"]), ","), p["relative"]))
'
echo
echo "### Sensitivity (iometer x0.5 | iometer x2 | sysbench x0.5 | sysbench x2)"
echo "| constant | iometer x0.5 | iometer x2 | sysbench x0.5 | sysbench x2 |"
echo "| --- | ---: | ---: | ---: | ---: |"
for constant in vm-transition exit-dispatch vmcs-access vmptrld vmx-emulation nested-exit-software \
                nested-entry-software instruction-emulation lapic-access vcpu-block-wake \
                virtio-block-request storage-write guest-block-submit guest-idle-transition; do
    half="$(relative --scale "$constant=0.5")"
    double="$(relative --scale "$constant=2")"
    echo "| $constant | ${half%% |*} | ${double%% |*} | ${half##*| } | ${double##*| } |"
done
echo
echo "### Shadow sets (iometer | sysbench)"
for set in linux-kvm linux-kvm-3.10 none; do echo "| $set | $(relative --shadow-fields "$set") |"; done
echo
echo "### sysbench-oltp vCPU placement"
echo "| share | ops/s off | ops/s on | relative | L2 exits/op | trapped VMX/op off | trapped VMX/op on |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for share in 0 0.25 0.5 0.75 1; do
    json --workload sysbench-oltp --cross-vcpu-share "$share" | python3 -c '
import json, sys
w = json.load(sys.stdin)["workloads"][0]
print("| '"$share"' | %s | %s | %.2fx | %.1f | %.0f | %.0f |" % (format(round(w["opsPerSecondOff"]), ","), format(round(w["opsPerSecondOn"]), ","), w["relative"], w["l2ExitsPerOp"], w["trappedVMXPerOpOff"], w["trappedVMXPerOpOn"]))'
done
echo
echo "### Determinism"
echo "SHA-256 of two runs: $(json | sha256sum | cut -c1-64) $(json | sha256sum | cut -c1-64)"
for seed in 2 3; do echo "seed $seed: $(relative --seed "$seed")"; done
