public import FaultHarness
public import FaultScenario
import Foundation
public import Partitioner
import Protos
import Wire
import WireCodec

/// How `nestor-harness run` runs: which backend the agents use, where the executables are,
/// where each run's files go, and whether they are kept.
public struct RunOptions: Sendable {
    public var backend: BackendKind = .sim
    public var binaries: Binaries
    /// A directory per run is made under it.
    public var workDirectory: String = NSTemporaryDirectory()
    /// Keep each run's directory (logs, PKI, store) also when it passed.
    public var keepFiles = false
    /// Progress lines (to stderr).
    public var log: @Sendable (String) -> Void = { _ in }

    public init(binaries: Binaries) { self.binaries = binaries }
}

/// One scenario with one seed against a real cluster: start it, create the tenants, run the
/// workload and the nemesis together while the observer samples and the checker judges each
/// sample, heal everything, wait until the cluster settles, judge the end state against the
/// history, and stop it all.
public enum ScenarioRunner {
    public static func run(_ scenario: Scenario, seed: UInt64, options: RunOptions) async throws -> RunResult {
        if let reason = unsupported(scenario, backend: options.backend) { throw HarnessError("\(scenario.name): \(reason)") }
        let directory = (options.workDirectory as NSString).appendingPathComponent("nestor-harness-\(scenario.name)-\(seed)-\(UUID().uuidString.prefix(6))")
        let log = options.log
        ChildRegistry.shared.killChildrenOnInterrupt {}
        let cluster = try await LocalCluster(scenario: scenario, directory: directory, binaries: options.binaries, backend: options.backend,
                                       timing: ClusterTiming(), seed: seed)
        var passed = false
        defer {
            if passed && !options.keepFiles { try? FileManager.default.removeItem(atPath: directory) }
        }
        do {
            let result = try await runStarted(scenario, seed: seed, cluster: cluster, directory: directory, options: options)
            await cluster.stop()
            passed = result.passed
            if !passed { log("  the run's files (logs, PKI, store) are kept in \(directory)") }
            return result
        } catch {
            await cluster.stop()
            log("  the run's files (logs, PKI, store) are kept in \(directory)")
            throw error
        }
    }

    /// Why the scenario cannot run on `backend`, or nil.
    public static func unsupported(_ scenario: Scenario, backend: BackendKind) -> String? {
        let needsLPARHost = scenario.faults.contains { fault in
            switch fault.kind {
            case .crashLoop, .kill(.lparHost), .pause(.lparHost): true
            default: false
            }
        }
        if needsLPARHost && backend != .kvm {
            return "its faults hit lpar-host processes, which only the kvm backend has (the sim backend runs LPARs inside the agent); run it with --backend kvm"
        }
        return nil
    }

    static func runStarted(_ scenario: Scenario, seed: UInt64, cluster: LocalCluster, directory: String, options: RunOptions) async throws -> RunResult {
        let log = options.log
        log("\(scenario.name) seed \(seed): starting a controller and \(scenario.cluster.blades) agents (\(options.backend.rawValue)) in \(directory)")
        try await cluster.startController()
        try await cluster.startAgents(seed: seed)
        let controllerPort = await cluster.controllerPort
        let admin = try PeerLink(identity: LocalCluster.admin, pkiDirectory: cluster.pki.path, port: controllerPort, expected: .role(.controller))
        try await createTenants(scenario, admin: admin)
        let setupClock = RunClock()
        let setupObserver = try ClusterObserver(scenario: scenario, cluster: cluster, pkiDirectory: cluster.pki.path,
                                                controllerPort: controllerPort, clock: setupClock, backend: options.backend)
        let setupWatch = Task { await setupObserver.watch(every: .milliseconds(200)) }
        let ready = await waitForSample(of: setupObserver, clock: setupClock, within: 60_000) { $0.allReady }
        setupWatch.cancel()
        await setupWatch.value
        await setupObserver.close()
        guard ready.held else {
            throw HarnessError("the cluster did not come up: not every blade was ready within 60 s; the processes' logs are in \(directory)")
        }

        let plan = WorkloadPlanner.plan(scenario, seed: seed)
        let steps = NemesisPlanner.plan(scenario, seed: seed)
        log("  \(plan.count) operations from \(scenario.workload.clients) clients, \(steps.count) nemesis steps, \(FaultEvent.seconds(scenario.durationMillis))")
        let clock = RunClock()
        let observer = try ClusterObserver(scenario: scenario, cluster: cluster, pkiDirectory: cluster.pki.path,
                                           controllerPort: controllerPort, clock: clock, backend: options.backend)
        let nemesis = Nemesis(cluster: cluster, observer: observer, clock: clock, log: log)
        let watching = Task { await observer.watch(every: .milliseconds(200)) }
        let faults = Task { try await nemesis.run(steps) }
        let clients = WorkloadClients(scenario: scenario, plan: plan, pkiDirectory: cluster.pki.path, routes: cluster.routes, clock: clock)
        let history: [HistoryEntry]
        do {
            history = try await clients.run()
            try await faults.value
        } catch {
            faults.cancel()
            watching.cancel()
            await watching.value
            throw error
        }
        await clock.sleep(until: scenario.durationMillis)
        log("  \(FaultEvent.seconds(clock.now)): the workload is done (\(history.count) operations); healing every fault")
        try await cluster.healAll()

        // Settle: sample by sample until the cluster is where it should be, bounded; the final
        // check runs either way.
        let settleStart = clock.now
        let crashed = await observer.crashed
        let settled = await waitForSample(of: observer, clock: clock, within: scenario.settleMillis) { unsettled($0, crashed: crashed).isEmpty }
        watching.cancel()
        await watching.value
        let final = settled.sample
        let waiting = unsettled(final, crashed: crashed)
        if waiting.isEmpty {
            log("  \(FaultEvent.seconds(clock.now)): settled in \(FaultEvent.seconds(clock.now - settleStart))")
        } else {
            log("  \(FaultEvent.seconds(clock.now)): not settled after \(FaultEvent.seconds(clock.now - settleStart)): \(waiting.prefix(3).joined(separator: "; "))")
        }
        await observer.record(InvariantChecker.checkFinal(final.observation, history: history, crashed: crashed))
        var violations = await observer.violations
        if !waiting.isEmpty {
            violations.append(Violation(.notSettled, at: clock.now,
                                        "the cluster did not settle within \(FaultEvent.seconds(scenario.settleMillis)) after the faults healed: \(waiting.prefix(3).joined(separator: "; "))"))
        }
        let unmet = await unmetExpectations(scenario, history: history, observer: observer)
        writeRecord(directory: directory, history: history, violations: violations, nemesis: await nemesis.done)
        let reasons = Dictionary(grouping: history.compactMap { entry -> String? in
            if case .refused(let reason) = entry.outcome { return Self.shape(reason) } else { return nil }
        }, by: { $0 }).mapValues(\.count).sorted { $0.value > $1.value }.prefix(4)
        if !reasons.isEmpty { log("  refusals: " + reasons.map { "\($0.value) \($0.key)" }.joined(separator: "; ")) }
        log("  \(await observer.samples) samples")
        await observer.close()
        await admin.drop()
        let result = RunResult(scenario: scenario.name, seed: seed, backend: options.backend.rawValue, durationSeconds: Double(clock.now) / 1_000,
                               faults: await nemesis.injected, history: history, violations: violations, unmetExpectations: unmet,
                               expected: scenario.expectedViolations)
        for line in result.unmetExpectations { log("  expectation not met: \(line)") }
        log("  \(result.passed ? "passed" : "FAILED"): \(result.ok) ok, \(result.refused) refused, \(result.failed) failed, \(result.unknown) unknown, \(result.violations) violations")
        return result
    }

    /// The history, the violations and the nemesis's steps as JSON files in the run's directory.
    static func writeRecord(directory: String, history: [HistoryEntry], violations: [Violation], nemesis: [String]) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try? encoder.encode(history).write(to: URL(fileURLWithPath: directory + "/history.json"))
        try? encoder.encode(violations).write(to: URL(fileURLWithPath: directory + "/violations.json"))
        try? encoder.encode(nemesis).write(to: URL(fileURLWithPath: directory + "/nemesis.json"))
    }

    /// A refusal's reason with its names and numbers taken out, so that alike ones group.
    static func shape(_ reason: String) -> String {
        String(reason.prefix(80).map { $0.isNumber ? "N" : $0 })
    }

    static func createTenants(_ scenario: Scenario, admin: PeerLink) async throws {
        for tenant in scenario.tenants {
            let request = CreateTenantRequest(name: tenant.name, quota: TenantQuota(
                maxCores: UInt32(tenant.quotaCores), maxMemoryBytes: tenant.quotaMemory, maxDiskBytes: 1 << 40,
                maxPartitions: UInt32(tenant.quotaPartitions)))
            let outcome = await admin.call(request, expecting: TenantResponse.self, timeout: .seconds(10))
            guard outcome.answer != nil else { throw HarnessError("cannot create tenant \(tenant.name): \(outcome)") }
        }
    }

    static func unmetExpectations(_ scenario: Scenario, history: [HistoryEntry], observer: ClusterObserver) async -> [String] {
        var unmet: [String] = []
        let ok = history.filter { $0.outcome == .ok }.count
        let refused = history.filter { if case .refused = $0.outcome { true } else { false } }.count
        for expectation in scenario.expectations {
            switch expectation {
            case .unreachable(let blade, let after, let within):
                if let seen = await observer.firstUnreachable(blade, after: after) {
                    if seen > after + within {
                        unmet.append("\(blade) unreachable \(FaultEvent.seconds(seen - after)) after \(FaultEvent.seconds(after)), later than \(FaultEvent.seconds(within))")
                    }
                } else {
                    unmet.append("the controller never reported \(blade) unreachable after \(FaultEvent.seconds(after))")
                }
            case .minimumOK(let count) where ok < count:
                unmet.append("\(ok) operations ok, fewer than \(count)")
            case .minimumRefused(let count) where refused < count:
                unmet.append("\(refused) operations refused, fewer than \(count)")
            case .minimumOK, .minimumRefused, .violation:
                break   // a violation expected is judged by RunResult
            }
        }
        return unmet
    }

    /// Waits for the observer's samples until one satisfies `condition`, or `millis` of
    /// `clock` have passed: the last sample, and whether it satisfied the condition.
    static func waitForSample(of observer: ClusterObserver, clock: RunClock, within millis: UInt64,
                              _ condition: (ClusterObserver.Sample) -> Bool) async -> (sample: ClusterObserver.Sample, held: Bool) {
        let deadline = clock.now + millis
        while true {
            let sample = await observer.nextSample()
            if condition(sample) { return (sample, true) }
            if clock.now >= deadline { return (sample, false) }
        }
    }

    /// What keeps the cluster from its desired state in a sample, in a few words each.
    static func unsettled(_ sample: ClusterObserver.Sample, crashed: Set<String>) -> [String] {
        guard sample.complete else { return ["an agent or the store did not answer"] }
        var waiting = InvariantChecker.unsettled(sample.observation, crashed: crashed)
        if !sample.allReady { waiting.append("not every blade is ready in the controller's eyes") }
        return waiting
    }
}
