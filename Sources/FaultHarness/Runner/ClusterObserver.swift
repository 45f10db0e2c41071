import FaultHarness
import FaultScenario
import Foundation
import ClusterCore
import GRDB
import Partitioner
import Protos
import Wire
import WireCodec
#if canImport(Glibc)
import Glibc
#endif

/// Watches the cluster under test from outside, several times a second: every agent's actual
/// LPARs (from the agent's own listener, not through the controller), the partitions and
/// claims in the store's file (read directly, read-only), and the blades' health as the
/// controller reports it. Each sample is an `Observation` the checker judges; whoever waits for
/// the cluster to reach a state waits for the next sample (`nextSample`), not for a time.
actor ClusterObserver {
    /// One sample: what the checker judges, and what waiting for a state needs.
    struct Sample: Sendable {
        var observation: Observation
        /// Every agent and the store answered.
        var complete: Bool
        /// The controller answered and reports every blade of the scenario ready.
        var allReady: Bool
    }

    let scenario: Scenario
    let cluster: LocalCluster
    let clock: RunClock
    let backend: BackendKind
    private let pkiDirectory: String
    private var agentLinks: [String: PeerLink] = [:]
    private let controllerLink: PeerLink
    private var database: DatabaseQueue?
    private var lastLPARs: [String: [ActualLPAR]] = [:]
    private var lastPartitions: [StoredPartition] = []
    /// Partitions whose LPAR the harness crashed on purpose.
    private(set) var crashed: Set<String> = []
    /// Each blade's health as the controller reported it, when it changed.
    private(set) var health: [String: [(millis: UInt64, health: Protos.BladeHealth)]] = [:]
    private var latest: Sample?
    private var waiters: [CheckedContinuation<Sample, Never>] = []
    private var seen: Set<String> = []
    private(set) var violations: [Violation] = []
    private(set) var samples = 0
    static let maxViolations = 1_000

    init(scenario: Scenario, cluster: LocalCluster, pkiDirectory: String, controllerPort: Int, clock: RunClock, backend: BackendKind) throws {
        self.scenario = scenario
        self.cluster = cluster
        self.clock = clock
        self.backend = backend
        self.pkiDirectory = pkiDirectory
        controllerLink = try PeerLink(identity: LocalCluster.admin, pkiDirectory: pkiDirectory, port: controllerPort, expected: .role(.controller))
    }

    func noteCrashed(_ partition: String) { crashed.insert(partition) }

    /// The last LPARs an agent reported, for the nemesis to pick an `lpar-host` from.
    func lpars(of blade: String) -> [ActualLPAR] { lastLPARs[blade] ?? [] }

    /// Samples until cancelled, one sample every `interval` (the sampling rate); each
    /// sample's violations are kept (each distinct one once, at the first time it was seen),
    /// and whoever waits for the next sample gets it.
    func watch(every interval: Duration) async {
        while !Task.isCancelled {
            let started = ContinuousClock.now
            let taken = await sample()
            samples += 1
            record(InvariantChecker.check(taken.observation, crashed: crashed))
            latest = taken
            for waiter in waiters { waiter.resume(returning: taken) }
            waiters = []
            let next = started + interval
            if next > ContinuousClock.now { try? await Task.sleep(until: next, clock: .continuous) }
        }
        // Stopped: nobody waits for a sample that will not come.
        let last = latest ?? Sample(observation: Observation(timeMillis: clock.now, blades: [], partitions: []), complete: false, allReady: false)
        for waiter in waiters { waiter.resume(returning: last) }
        waiters = []
    }

    /// The next sample `watch` takes.
    func nextSample() async -> Sample {
        await withCheckedContinuation { waiters.append($0) }
    }

    func record(_ found: [Violation]) {
        for violation in found where violations.count < Self.maxViolations {
            if seen.insert("\(violation.kind.rawValue) \(violation.detail)").inserted { violations.append(violation) }
        }
    }

    /// One sample of the agents, the store and the controller.
    private func sample() async -> Sample {
        let ports = await cluster.agentPorts()
        var links: [String: PeerLink] = [:]
        for (blade, port) in ports {
            if agentLinks[blade] == nil {
                agentLinks[blade] = try? PeerLink(identity: LocalCluster.admin, pkiDirectory: pkiDirectory, port: port,
                                                  expected: .identity(PeerIdentity(role: .agent, name: blade)))
            }
            links[blade] = agentLinks[blade]
        }
        // Every agent at once: a paused one costs its timeout once, not once per blade after it.
        let answers = await withTaskGroup(of: (String, InspectBladeResponse?).self) { group in
            for (blade, link) in links {
                let port = ports[blade]!
                group.addTask {
                    await link.retarget(port)
                    return (blade, await link.call(InspectBladeRequest(blade: blade), expecting: InspectBladeResponse.self, timeout: .seconds(1)).answer)
                }
            }
            var answers: [String: InspectBladeResponse] = [:]
            for await (blade, answer) in group { answers[blade] = answer }
            return answers
        }
        var complete = true
        var blades: [ObservedBlade] = []
        for (index, blade) in scenario.cluster.bladeIDs.enumerated() {
            var lpars: [ActualLPAR]
            var cores = scenario.cluster.coresPerBlade
            var memory = scenario.cluster.memoryPerBlade
            if let answer = answers[blade] {
                lpars = answer.lpars
                cores = Int(answer.cores)
                memory = answer.memoryBytes
                lastLPARs[blade] = lpars
            } else {
                complete = false
                lpars = await unobserved(blade)
            }
            blades.append(ObservedBlade(id: blade, cores: cores, memoryBytes: memory, domains: scenario.cluster.domains(ofBlade: index),
                                        lpars: lpars.map(Self.observed)))
        }
        if let partitions = readStore() { lastPartitions = partitions } else { complete = false }
        let allReady = await sampleHealth()
        return Sample(observation: Observation(timeMillis: clock.now, blades: blades, partitions: lastPartitions),
                      complete: complete, allReady: allReady)
    }

    /// What a blade whose agent does not answer holds: nothing when the agent has ended and
    /// its LPARs ran inside it (sim) or their processes have ended too (kvm); else what it
    /// last reported (a paused agent's LPARs are still there).
    private func unobserved(_ blade: String) async -> [ActualLPAR] {
        let last = lastLPARs[blade] ?? []
        guard let process = await cluster.agentProcess(blade), !process.isRunning else { return last }
        guard backend == .kvm else { return [] }
        return last.filter { lpar in lpar.processID.map { Self.alive(Int32(bitPattern: $0)) } ?? false }
    }

    static func alive(_ pid: Int32) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 else { return false }
        // A zombie is not running; /proc says so in its state field.
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return !stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }

    /// The blades' health as the controller reports it, kept where it changed; whether every
    /// blade of the scenario is ready.
    private func sampleHealth() async -> Bool {
        guard let answer = await controllerLink.call(ListBladesRequest(), expecting: BladeListResponse.self, timeout: .seconds(1)).answer else {
            return false
        }
        let now = clock.now
        for blade in answer.blades {
            guard let reported = blade.health, health[blade.id]?.last?.health != reported else { continue }
            health[blade.id, default: []].append((now, reported))
        }
        return answer.blades.count == scenario.cluster.blades && answer.blades.allSatisfy { $0.health == .ready }
    }

    /// The first time after `after` the controller reported `blade` unreachable, if it did.
    func firstUnreachable(_ blade: String, after: UInt64) -> UInt64? {
        health[blade]?.first { $0.millis >= after && $0.health == .unreachable }?.millis
    }

    func close() async {
        for link in agentLinks.values { await link.drop() }
        await controllerLink.drop()
        try? database?.close()
        database = nil
    }

    // MARK: The store's file

    private func readStore() -> [StoredPartition]? {
        let path = (cluster.dataDirectory as NSString).appendingPathComponent("cluster.sqlite")
        if database == nil {
            guard FileManager.default.fileExists(atPath: path) else { return nil }
            var configuration = Configuration()
            configuration.readonly = true
            configuration.busyMode = .timeout(1)
            database = try? DatabaseQueue(path: path, configuration: configuration)
        }
        guard let database else { return nil }
        do {
            return try database.read { db in
                try Row.fetchAll(db, sql: """
                    SELECT p.name, p.tenant, p.group_name, p.spread_level, p.spread_hard, p.max_per_domain, p.exclusive_blade,
                           p.desired, c.blade, c.cores AS claim_cores, c.memory_base, c.memory AS claim_memory
                    FROM partitions p LEFT JOIN claims c ON c.partition = p.name ORDER BY p.name
                    """).map { row in
                    let name: String = row["name"]
                    let tenant: String = row["tenant"]
                    var spread: StoredPartition.Spread?
                    if let group: String = row["group_name"] {
                        let level: String = row["spread_level"] ?? "blade"
                        let hard: Bool = row["spread_hard"] ?? true
                        let most: Int = row["max_per_domain"] ?? 1
                        spread = StoredPartition.Spread(group: "\(tenant)/\(group)", level: level, hard: hard, maxPerDomain: most)
                    }
                    let exclusive: Bool = row["exclusive_blade"] ?? false
                    let desired = (row["desired"] as String?).flatMap(DesiredState.init(rawValue:))
                    let blade: String? = row["blade"]
                    var claim: StoredPartition.Claim?
                    if let blade {
                        let cores: String = row["claim_cores"] ?? ""
                        let base: Int64 = row["memory_base"] ?? 0
                        let size: Int64 = row["claim_memory"] ?? 0
                        claim = StoredPartition.Claim(blade: blade, cores: cores.split(separator: ",").compactMap { Int($0) },
                                                      memoryBase: UInt64(bitPattern: base), memoryBytes: UInt64(bitPattern: size))
                    }
                    return StoredPartition(name: name, tenant: tenant, spread: spread, exclusiveBlade: exclusive, claim: claim,
                                           shouldRun: desired == .running)
                }
            }
        } catch {
            return nil
        }
    }

    static func observed(_ lpar: ActualLPAR) -> ObservedLPAR {
        let state: ObservedLPAR.State = switch lpar.state {
        case .defined: .defined
        case .activating: .activating
        case .running: .running
        case .deactivating: .deactivating
        case .stopped: .stopped
        case .failed: .failed
        case .migrating: .migrating
        }
        return ObservedLPAR(name: lpar.name, partition: lpar.name, tenant: lpar.tenant, state: state, cores: lpar.dedicatedCores.map(Int.init),
                            memoryStart: lpar.memoryStart, memoryBytes: lpar.memoryBytes,
                            migration: lpar.migration.map { ObservedLPAR.Migration(target: $0.role == .target, handedOver: $0.stage == .handedOver) })
    }
}
