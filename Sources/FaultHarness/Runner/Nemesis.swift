import FaultHarness
import FaultScenario
import Foundation
import Protos
#if canImport(Glibc)
import Glibc
#endif

/// Carries out the nemesis plan against the cluster: each step at its time, each one logged
/// with what it did (or why it could do nothing: an `lpar-host` crash with no LPAR running).
actor Nemesis {
    let cluster: LocalCluster
    let observer: ClusterObserver
    let clock: RunClock
    let log: @Sendable (String) -> Void
    /// The `lpar-host` processes paused by a pause of `lpar-host`, to resume.
    private var pausedLPARHosts: [Int32] = []
    /// Faults actually injected.
    private(set) var injected = 0
    /// What each step did, in order, for the run's report.
    private(set) var done: [String] = []

    init(cluster: LocalCluster, observer: ClusterObserver, clock: RunClock, log: @escaping @Sendable (String) -> Void) {
        self.cluster = cluster
        self.observer = observer
        self.clock = clock
        self.log = log
    }

    func run(_ steps: [NemesisStep]) async throws {
        for step in steps {
            await clock.sleep(until: step.atMillis)
            if Task.isCancelled { return }
            let what = try await perform(step.action)
            let line = "\(FaultEvent.seconds(clock.now)): \(what)"
            done.append(line)
            log("  nemesis \(line)")
        }
    }

    private func perform(_ action: NemesisStep.Action) async throws -> String {
        switch action {
        case .kill(let target):
            guard let process = await cluster.process(target), process.isRunning else { return "kill -9 \(target): not running" }
            injected += 1
            await process.kill9()
            return "kill -9 \(target) (pid \(process.pid))"
        case .restart(let target):
            try await cluster.restart(target)
            return "restarted \(target)"
        case .pause(.lparHost):
            guard let (blade, lpar, pid) = await pickLPARHost(0) else { return "SIGSTOP an lpar-host: none runs" }
            injected += 1
            kill(pid, SIGSTOP)
            pausedLPARHosts.append(pid)
            return "SIGSTOP the lpar-host of \(lpar) on \(blade) (pid \(pid))"
        case .resume(.lparHost):
            for pid in pausedLPARHosts { kill(pid, SIGCONT) }
            pausedLPARHosts = []
            return "SIGCONT the paused lpar-hosts"
        case .pause(let target):
            guard let process = await cluster.process(target), process.isRunning else { return "SIGSTOP \(target): not running" }
            injected += 1
            process.signal(SIGSTOP)
            return "SIGSTOP \(target) (pid \(process.pid))"
        case .resume(let target):
            await cluster.process(target)?.signal(SIGCONT)
            return "SIGCONT \(target)"
        case .link(let target, let faults):
            injected += 1
            for proxy in await cluster.proxies(target) { await proxy.set(faults) }
            return "\(target): \(faults)"
        case .healLink(let target):
            for proxy in await cluster.proxies(target) { await proxy.set(.healthy) }
            return "\(target) healed"
        case .fillDisk:
            guard let disk = cluster.disk else { return "no store disk to fill" }
            injected += 1
            try disk.fill()
            return "the store's disk filled (ENOSPC)"
        case .freeDisk:
            cluster.disk?.free()
            return "the store's disk freed"
        case .readOnly:
            guard let disk = cluster.disk else { return "no store disk to make read-only" }
            injected += 1
            try disk.setReadOnly(true)
            return "the store's disk read-only (EROFS)"
        case .readWrite:
            try cluster.disk?.setReadOnly(false)
            return "the store's disk writable"
        case .startSecondController:
            injected += 1
            let port = try await cluster.startSecondController()
            return "a second controller on the same store, on port \(port), takes half the clients"
        case .killSecondController:
            await cluster.killSecondController()
            return "kill -9 the second controller"
        case .crashLPAR(let pick):
            guard let (blade, lpar, pid) = await pickLPARHost(pick) else { return "kill -9 an lpar-host: none runs" }
            injected += 1
            await observer.noteCrashed(lpar)
            kill(pid, SIGKILL)
            return "kill -9 the lpar-host of \(lpar) on \(blade) (pid \(pid))"
        }
    }

    /// A running LPAR with a process of its own, chosen by `pick` among those the agents last
    /// reported, in a stable order.
    private func pickLPARHost(_ pick: UInt64) async -> (blade: String, lpar: String, pid: Int32)? {
        var candidates: [(String, String, Int32)] = []
        for blade in cluster.scenario.cluster.bladeIDs {
            for lpar in await observer.lpars(of: blade).sorted(by: { $0.name < $1.name })
            where lpar.state == .running {
                if let pid = lpar.processID, ClusterObserver.alive(Int32(bitPattern: pid)) { candidates.append((blade, lpar.name, Int32(bitPattern: pid))) }
            }
        }
        guard !candidates.isEmpty else { return nil }
        return candidates[Int(pick % UInt64(candidates.count))]
    }
}
