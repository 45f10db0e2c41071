import FaultHarness
import FaultProxy
import FaultScenario
import Foundation
import NestorPKI
import Partitioner
import Sizes
import WireCodec

/// Where the executables of the cluster under test are.
public struct Binaries: Sendable {
    public var controller: String
    public var agent: String

    public init(controller: String, agent: String) {
        self.controller = controller
        self.agent = agent
    }

    /// The executables next to this one (one build directory holds them all), or in `directory`.
    public static func find(in directory: String? = nil) throws -> Binaries {
        let here = directory ?? URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                                        ?? CommandLine.arguments[0]).deletingLastPathComponent().path
        let binaries = Binaries(controller: here + "/cluster-controller", agent: here + "/blade-agent")
        for path in [binaries.controller, binaries.agent] where !FileManager.default.isExecutableFile(atPath: path) {
            throw HarnessError("\(path) is not an executable; build the package (swift build) or name the directory with --bin-dir")
        }
        return binaries
    }
}

/// The lease timings of the cluster under test: short, so that faults show within a run.
public struct ClusterTiming: Sendable {
    public var heartbeatMillis = 500
    public var suspectAfterMillis = 1_500
    public var unreachableAfterMillis = 3_000
    public init() {}
}

/// A real cluster on loopback, as a scenario shapes it: a PKI, one `cluster-controller` and
/// one `blade-agent` per blade, each agent dialling the controller through a fault proxy of
/// its own. Processes are started, killed, paused and restarted here; what they do is read
/// elsewhere (`ClusterObserver`).
actor LocalCluster {
    struct Agent {
        var process: ChildProcess
        /// The agent's own listener (its actual LPARs).
        var listenPort: Int
        let proxy: FaultProxy
        let arguments: [String]
    }

    let scenario: Scenario
    let directory: String
    let pki: PKIDirectory
    let binaries: Binaries
    let backend: BackendKind
    let timing: ClusterTiming
    let disk: StoreDisk?
    private(set) var controller: ChildProcess?
    private(set) var controllerPort = 0
    private(set) var agents: [String: Agent] = [:]
    private var secondController: ChildProcess?
    /// Which controller each client sends to.
    let routes = ControllerRoutes()
    let dataDirectory: String
    /// The identity the harness uses for admin requests and sampling.
    static let admin = PeerIdentity(role: .admin, name: "harness")

    init(scenario: Scenario, directory: String, binaries: Binaries, backend: BackendKind, timing: ClusterTiming, seed: UInt64) async throws {
        self.scenario = scenario
        self.directory = directory
        self.binaries = binaries
        self.backend = backend
        self.timing = timing
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        pki = PKIDirectory(path: directory + "/pki")
        do {
            _ = try pki.initialize()
            var identities = [PeerIdentity(role: .controller, name: "controller"), Self.admin]
            identities += scenario.tenants.map { PeerIdentity(role: .tenant, name: $0.name) }
            identities += scenario.cluster.bladeIDs.map { PeerIdentity(role: .agent, name: $0) }
            for identity in identities { _ = try pki.issue(CertificateRequest(identity: identity)) }
        } catch {
            throw HarnessError("cannot create the run's PKI in \(directory)/pki: \(error)")
        }
        let needsDisk = scenario.faults.contains { $0.kind == .diskFull || $0.kind == .diskReadOnly }
        if needsDisk {
            let disk = try await StoreDisk(directory: directory, readOnlyFaults: scenario.faults.contains { $0.kind == .diskReadOnly })
            self.disk = disk
            dataDirectory = disk.dataDirectory
        } else {
            disk = nil
            dataDirectory = directory + "/data"
        }
    }

    var storePath: String { dataDirectory + "/cluster.sqlite" }

    // MARK: The controller

    func startController() async throws {
        let process = try ChildProcess(name: "the controller", executable: binaries.controller, arguments: controllerArguments(port: controllerPort),
                                       logPath: directory + "/controller.log", environment: testSwitchEnvironment)
        let port = try await process.listeningPort()
        controllerPort = port
        controller = process
        routes.setPrimary(port)
    }

    /// A second controller on the same data directory (the test switch `shared-store` lets it
    /// open the store); the odd-numbered clients send to it while it runs. Returns its port.
    func startSecondController() async throws -> Int {
        let process = try ChildProcess(name: "the second controller", executable: binaries.controller, arguments: controllerArguments(port: 0),
                                       logPath: directory + "/controller-2.log", environment: testSwitchEnvironment)
        let port = try await process.listeningPort()
        secondController = process
        routes.setSecondary(port)
        return port
    }

    func killSecondController() async {
        routes.setSecondary(nil)
        await secondController?.kill9()
        secondController = nil
    }

    /// A controller on this cluster's data directory, listening on `port` (0: any free one).
    private func controllerArguments(port: Int) -> [String] {
        ["run", "--listen", "127.0.0.1:\(port)", "--data-dir", dataDirectory, "--pki-dir", pki.path,
         "--heartbeat-interval-ms", "\(timing.heartbeatMillis)", "--suspect-after-ms", "\(timing.suspectAfterMillis)",
         "--unreachable-after-ms", "\(timing.unreachableAfterMillis)", "--admission-level", scenario.cluster.admissionArgument,
         "--log-level", "info"]
    }

    /// The test-only switches of the scenario, as the controller reads them.
    var testSwitchEnvironment: [String: String] {
        scenario.testSwitches.isEmpty ? [:] : ["NESTOR_TEST_SWITCHES": scenario.testSwitches.map(\.rawValue).sorted().joined(separator: ",")]
    }

    // MARK: Agents

    func startAgents(seed: UInt64) async throws {
        for (index, blade) in scenario.cluster.bladeIDs.enumerated() {
            let proxy = FaultProxy(name: blade, upstreamHost: "127.0.0.1", upstreamPort: controllerPort, seed: seed &+ UInt64(index))
            let proxyPort = try await proxy.start()
            let domains = scenario.cluster.domains(ofBlade: index)
            var arguments = ["run", "--controller", "127.0.0.1:\(proxyPort)", "--blade-id", blade, "--pki-dir", pki.path,
                             "--cores", "\(scenario.cluster.coresPerBlade)", "--memory", ByteSize.format(scenario.cluster.memoryPerBlade),
                             "--l0-reserved", ByteSize.format(ClusterShape.l0ReservedBytes),
                             "--chassis", domains["chassis"]!, "--rack", domains["rack"]!, "--power-domain", domains["power"]!,
                             "--listen", "127.0.0.1:0", "--backend", backend.rawValue, "--log-level", "info"]
            if backend == .kvm {
                arguments += ["--data-dir", directory + "/agents/\(blade)"]
            }
            let process = try ChildProcess(name: "the agent of \(blade)", executable: binaries.agent, arguments: arguments,
                                           logPath: directory + "/\(blade).log")
            let port = try await process.listeningPort()
            agents[blade] = Agent(process: process, listenPort: port, proxy: proxy, arguments: arguments)
        }
    }

    func restartAgent(_ blade: String) async throws {
        guard let agent = agents[blade], !agent.process.isRunning else { return }
        let process = try ChildProcess(name: "the agent of \(blade)", executable: binaries.agent, arguments: agent.arguments,
                                       logPath: directory + "/\(blade).log")
        let port = try await process.listeningPort()
        agents[blade]?.process = process
        agents[blade]?.listenPort = port
    }

    func agentProcess(_ blade: String) -> ChildProcess? { agents[blade]?.process }

    func agentPorts() -> [String: Int] { agents.mapValues(\.listenPort) }

    func proxies(_ target: LinkTarget) -> [FaultProxy] {
        switch target {
        case .all: return scenario.cluster.bladeIDs.compactMap { agents[$0]?.proxy }
        case .agent(let blade): return agents[blade].map { [$0.proxy] } ?? []
        }
    }

    func process(_ target: ProcessTarget) -> ChildProcess? {
        switch target {
        case .controller: return controller
        case .agent(let blade): return agents[blade]?.process
        case .lparHost: return nil
        }
    }

    /// Starts the process of `target` again when it has ended.
    func restart(_ target: ProcessTarget) async throws {
        switch target {
        case .controller:
            if controller?.isRunning != true { try await startController() }
        case .agent(let blade):
            try await restartAgent(blade)
        case .lparHost:
            break
        }
    }

    /// Every process resumed, every dead one started again, every link healthy, the disk
    /// free: the end of the faults.
    func healAll() async throws {
        for blade in scenario.cluster.bladeIDs {
            if let proxy = agents[blade]?.proxy { await proxy.set(.healthy) }
        }
        await killSecondController()
        disk?.free()
        try disk?.setReadOnly(false)
        controller?.signal(SIGCONT)
        if controller?.isRunning != true { try await startController() }
        for blade in scenario.cluster.bladeIDs {
            agents[blade]?.process.signal(SIGCONT)
            try await restartAgent(blade)
        }
    }

    /// Stops everything: agents first (they stop their LPARs), then the controller, the
    /// proxies and the disk.
    func stop() async {
        await withTaskGroup(of: Void.self) { group in
            for agent in agents.values { group.addTask { await agent.process.stop() } }
        }
        await controller?.stop()
        await secondController?.stop()
        for agent in agents.values { await agent.proxy.stop() }
        await disk?.unmount()
    }
}

extension ClusterShape {
    /// The memory each agent keeps for L0 (`--l0-reserved`): the blade offers the rest.
    static let l0ReservedBytes: UInt64 = 512 << 20
}

/// Where each client's requests go: the controller, or (odd-numbered clients, while a second
/// controller runs) the second one.
final class ControllerRoutes: @unchecked Sendable {
    private let lock = NSLock()
    private var primary = 0
    private var secondary: Int?

    func setPrimary(_ port: Int) { lock.withLock { primary = port } }
    func setSecondary(_ port: Int?) { lock.withLock { secondary = port } }

    /// The port client `index` (0-based) sends to now.
    func port(forClient index: Int) -> Int {
        lock.withLock { index % 2 == 1 ? secondary ?? primary : primary }
    }
}
