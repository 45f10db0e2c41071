#!/usr/bin/env bash
# Nestor's main job on one machine: builds (release), creates a PKI, starts a controller and
# 4 simulated blade agents in 2 chassis on loopback (mutual TLS), creates two tenants, VMM
# partitions kept apart by hard chassis anti-affinity, L2 VMs inside them, shows the cluster,
# runs the VMCS-shadowing benchmark, and stops every process it started (also on Ctrl-C).
# Work files go to $NESTOR_QUICKSTART_DIR (default .quickstart/ in the repository).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$NESTOR_ROOT"

ensure_build_dependencies

log "building cluster-controller, blade-agent and clusterctl (release)"
for product in cluster-controller blade-agent clusterctl; do
    swift build -c release --product "$product"
done
bin="$(swift build -c release --show-bin-path)"

work="${NESTOR_QUICKSTART_DIR:-$NESTOR_ROOT/.quickstart}"
rm -rf "$work"
mkdir -p "$work/logs"
pki="$work/pki"

pids=()
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ "${#pids[@]}" -gt 0 ]; then
        log "stopping the ${#pids[@]} processes this script started"
        kill -TERM "${pids[@]}" 2>/dev/null || true
        for pid in "${pids[@]}"; do
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        done
        wait 2>/dev/null || true
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
ctl() { say "clusterctl $*"; "$bin/clusterctl" "$@"; }

log "a cluster CA and one certificate per identity in $pki"
"$bin/clusterctl" pki init --dir "$pki" >/dev/null
for identity in controller/controller admin/ops tenant/acme tenant/globex \
                agent/blade-1 agent/blade-2 agent/blade-3 agent/blade-4; do
    "$bin/clusterctl" pki issue --dir "$pki" --role "${identity%/*}" --name "${identity#*/}" >/dev/null
done
ls "$pki"

log "starting the controller (deploy/configs/quickstart-controller.yaml)"
"$bin/cluster-controller" run --config deploy/configs/quickstart-controller.yaml \
    --data-dir "$work/controller" --pki-dir "$pki" >"$work/controller.out" 2>"$work/logs/controller.log" &
pids+=($!)
for _ in $(seq 100); do grep -q '^listening on' "$work/controller.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^listening on' "$work/controller.out" || die "the controller did not start: $(cat "$work/logs/controller.log")"
endpoint="$(sed -n 's/^listening on //p' "$work/controller.out")"
echo "controller listening on $endpoint (state in $work/controller/cluster.sqlite)"

log "starting 4 blade agents: blade-1, blade-2 in chassis-1; blade-3, blade-4 in chassis-2"
for index in 1 2 3 4; do
    chassis="chassis-$(( (index + 1) / 2 ))"
    "$bin/blade-agent" run --config deploy/configs/quickstart-agent.yaml --controller "$endpoint" \
        --blade-id "blade-$index" --chassis "$chassis" --pki-dir "$pki" \
        >"$work/logs/blade-$index.out" 2>"$work/logs/blade-$index.log" &
    pids+=($!)
done

export NESTOR_ENDPOINT="$endpoint" NESTOR_PKI_DIR="$pki" NESTOR_IDENTITY=admin/ops
for _ in $(seq 100); do
    ready="$("$bin/clusterctl" blade list -o json 2>/dev/null | grep -c '"state" : "ready"' || true)"
    [ "$ready" = 4 ] && break
    sleep 0.2
done
[ "$ready" = 4 ] || die "only $ready of 4 blades registered; logs in $work/logs"
ctl blade list

log "two tenants with quotas (as admin/ops)"
ctl tenant create acme --max-cores 24 --max-memory 96GiB --max-disk 1TiB
ctl tenant create globex --max-cores 16 --max-memory 64GiB --max-disk 500GiB
ctl tenant list

log "tenant acme rents two VMM partitions that must never share a chassis"
export NESTOR_IDENTITY=tenant/acme
ctl partition create web-1 --cores 6 --memory 10GiB --disk 100GiB --vmm --group web --spread chassis --hard
ctl partition create web-2 --cores 6 --memory 10GiB --disk 100GiB --vmm --group web --spread chassis --hard
say "clusterctl partition create web-3 ... --group web --spread chassis --hard   (a third member: 2 chassis only)"
if "$bin/clusterctl" partition create web-3 --cores 6 --memory 10GiB --vmm --group web --spread chassis --hard; then
    die "a third member of a hard chassis group was placed in a 2-chassis cluster"
fi
echo "(refused, as it must be)"

log "tenant acme creates its own L2 VMs inside its VMM partitions (VMM as a Service)"
ctl vm create db-1 --partition web-1 --vcpus 4 --memory 8GiB --workload sysbench-oltp
ctl vm create io-1 --partition web-2 --vcpus 4 --memory 8GiB --workload iometer

log "tenant globex: a core business system on a plain LPAR, and a VMM partition without shadowing"
export NESTOR_IDENTITY=tenant/globex
say "clusterctl partition create erp --cores 4 --memory 16GiB --disk 200GiB --isolation exclusive-blade"
if "$bin/clusterctl" partition create erp --cores 4 --memory 16GiB --disk 200GiB --isolation exclusive-blade; then
    die "an exclusive blade was given away although web-1 or web-2 would then have nowhere to go after a blade loss"
fi
echo "(refused: a blade of its own for globex would leave web-1 or web-2 nowhere to go if their blade failed)"
ctl partition create erp --cores 4 --memory 16GiB --disk 200GiB
ctl partition create lab --cores 4 --memory 8GiB --vmm --shadow-vmcs off
ctl vm create test-1 --partition lab --vcpus 2 --memory 2GiB --workload iometer

log "waiting for the agents to run everything"
export NESTOR_IDENTITY=admin/ops
for _ in $(seq 100); do
    states="$("$bin/clusterctl" partition list -o json | grep -c '"state" : "running"' || true)"
    [ "$states" = 4 ] && break
    sleep 0.2
done
[ "$states" = 4 ] || die "partitions did not all reach running; logs in $work/logs"
sleep 2   # a few heartbeats of L2 counters

ctl blade list
ctl partition list
NESTOR_IDENTITY=tenant/acme ctl vm list --partition web-1
NESTOR_IDENTITY=tenant/acme ctl vm list --partition web-2
NESTOR_IDENTITY=tenant/globex ctl vm list --partition lab
NESTOR_IDENTITY=tenant/acme ctl partition show web-2

log "tenant isolation: globex sees only its own partitions"
NESTOR_IDENTITY=tenant/globex ctl partition list
say "clusterctl partition show web-1   (as tenant/globex)"
NESTOR_IDENTITY=tenant/globex "$bin/clusterctl" partition show web-1 || echo "(refused, as it must be)"

log "live migration: web-1 moves with its running L2 VM; placement keeps it in its chassis (web-2 holds the other)"
ctl partition migrate web-1 --wait
ctl partition show web-1
ctl migration list

ctl events --limit 12

log "VMCS shadowing off and on: the whitepaper's figure 10 (simulated backend, embedded defaults)"
say "blade-agent bench shadow-vmcs --backend sim"
"$bin/blade-agent" bench shadow-vmcs --backend sim "$@"

log "done; the cluster's state and logs are in $work"
