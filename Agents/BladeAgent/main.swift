import ArgumentParser
import ClusterCore
import CommandLineSupport
import BladeAgentKit
import Foundation
import KVMBackend
import Logging
import Partitioner
import ServiceLifecycle
import Wire
import WireCodec
import Sizes

/// The per-blade agent of Nestor.
struct BladeAgent: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blade-agent",
        abstract: "Nestor's per-blade agent: runs the partitioner (L0) that cuts a blade into LPARs.",
        discussion: """
            Errors in the input (flags, spec files) are reported in one line with exit code 2.
            """,
        version: "0.1.0",
        subcommands: [Run.self, Probe.self, Bench.self, LPARCommand.self, CostModel.self, LPARHost.self])
}

/// Options every command shares.
struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .warning

    func logger(_ label: String) throws -> Logger {
        var logger = Logger(label: label) { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = logLevel
        return logger
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the agent: dial the controller, register this blade, heartbeat, and carry out commands.",
        discussion: """
            Every option can also be set in the config file (YAML) under the flag's name, e.g. \
            'blade-id: blade-1'; a flag overrides the file; an unknown key is an error. The agent \
            dials the controller over mutual TLS as nestor://agent/BLADE-ID, registers the blade's \
            inventory and failure-domain labels, heartbeats with the actual state of its LPARs, and \
            dials again with exponential backoff (0.2 s to 5 s) whenever the link drops. Runs until \
            SIGTERM or SIGINT.
            """)

    static let keys = ["controller", "blade-id", "cores", "memory", "l0-reserved", "disk", "disks", "nics", "nested", "chassis", "rack",
                       "power-domain", "pki-dir", "cert", "key", "ca", "backend", "heartbeat-interval-ms", "sim-slice-ms", "log-level",
                       "data-dir", "guest-image", "shared-disk", "listen", "sim-dirty-rate"]

    @Option(help: "Config file (YAML) with any of the options below.")
    var config: String?
    @Option(help: "The controller, HOST:PORT.")
    var controller: String?
    @Option(help: "This blade's id; its identity is nestor://agent/BLADE-ID.")
    var bladeId: String?
    @Option(help: "Cores of the blade, 1 to 4096 (default 16).")
    var cores: Int?
    @Option(help: "Memory of the blade, e.g. 64GiB (default 64GiB).", transform: ByteCount.parse)
    var memory: ByteCount?
    @Option(help: "Memory L0 keeps for itself, a multiple of 2MiB (default 1GiB).", transform: ByteCount.parse)
    var l0Reserved: ByteCount?
    @Option(help: "Disk capacity offered to partitions, e.g. 2TiB (default 1TiB).", transform: ByteCount.parse)
    var disk: ByteCount?
    @Option(help: "Disks and HBAs, ID:LUNS[:shared],... (default fc0:64:shared).")
    var disks: String?
    @Option(help: "NICs, ID[:shared],... (default eth0:shared).")
    var nics: String?
    @Option(help: "Whether LPARs may run guest hypervisors: true or false (default true).")
    var nested: Bool?
    @Option(help: "Failure domains: the chassis, rack and power domain the blade sits in (default chassis-1, rack-1, power-1).")
    var chassis: String?
    @Option(help: "The blade's rack.")
    var rack: String?
    @Option(help: "The blade's power domain.")
    var powerDomain: String?
    @Option(help: "PKI directory with ca.pem and agent-BLADE-ID.pem / agent-BLADE-ID-key.pem.")
    var pkiDir: String?
    @Option(help: "Certificate file (PEM); overrides the one from --pki-dir.")
    var cert: String?
    @Option(help: "Private key file (PEM); overrides the one from --pki-dir.")
    var key: String?
    @Option(help: "Cluster CA certificate file (PEM); overrides the one from --pki-dir.")
    var ca: String?
    @Option(help: "Backend: sim (simulated, any host) or kvm (each LPAR a real KVM VM in its own process).")
    var backend: BackendKind?
    @Option(help: "kvm backend: directory of the LPARs' disk images (default /var/lib/nestor/agent).")
    var dataDir: String?
    @Option(help: "kvm backend: the guest image LPARs boot (default: the lpar-os image).")
    var guestImage: String?
    @Option(help: "kvm backend: one disk image that backs the first shared disk of --disks; each partition gets its own LUN range of it (LUN size = file size / LUNs). Default: a sparse image per partition in --data-dir.")
    var sharedDisk: String?
    @Option(help: "Also listen on HOST:PORT (port 0: any free port) for admins and the controller to read this blade's actual LPARs (clusterctl blade inspect --agent); prints 'listening on HOST:PORT' once bound. Default: no listener.")
    var listen: String?
    @Option(help: "Heartbeat interval in ms, 10 to 60000 (default: what the controller asks for).")
    var heartbeatIntervalMs: UInt64?
    @Option(help: "sim backend: virtual ms each L2 VM runs per heartbeat, 0 to 1000 (default 2).")
    var simSliceMs: Double?
    @Option(help: "sim backend: bytes per second each running LPAR's guest writes to its memory, e.g. 64MiB (default 0); what a live migration's rounds must catch up with.")
    var simDirtyRate: ByteCount?
    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical (default notice).")
    var logLevel: Logger.Level?

    func run() async throws {
        let file: ConfigFile?
        do { file = try config.map { path throws(ConfigFileError) in try ConfigFile(path: path, known: Self.keys) } }
        catch { throw AgentError.badInput(error.message) }
        func value(_ flag: String?, _ key: String) -> String? { file?.merged(flag, key) ?? flag }
        func typed<Value: ExpressibleByArgument>(_ flag: Value?, _ key: String, expected: String) throws -> Value? {
            try file?.merged(flag, key, expected: expected) ?? flag
        }
        func size(_ flag: ByteCount?, _ key: String, default fallback: UInt64) throws -> UInt64 {
            (try file?.mergedSize(flag, key) ?? flag)?.bytes ?? fallback
        }
        func name(_ flag: String?, _ key: String, default fallback: String?) throws -> String {
            guard let text = value(flag, key) ?? fallback else { throw AgentError.badInput("\(key) is required (flag --\(key) or the config file)") }
            if let problem = ObjectName.problem(text, what: key) { throw AgentError.badInput(problem) }
            return text
        }
        let level = try typed(logLevel, "log-level", expected: oneOf(Logger.Level.self)) ?? .notice
        guard let controllerText = value(controller, "controller") else { throw AgentError.badInput("controller is required (HOST:PORT)") }
        guard let endpoint = Endpoint(controllerText) else { throw AgentError.badInput("controller '\(controllerText)' is not HOST:PORT") }
        let id = try name(bladeId, "blade-id", default: nil)
        let coreCount = try typed(cores, "cores", expected: "a whole number") ?? 16
        guard (1...4096).contains(coreCount) else {
            throw AgentError.badInput("cores \(coreCount) is not between 1 and 4096")
        }
        let memoryBytes = try size(memory, "memory", default: 64 << 30)
        let reserved = try size(l0Reserved, "l0-reserved", default: 1 << 30)
        guard reserved % (2 << 20) == 0 else { throw AgentError.badInput("l0-reserved must be a multiple of 2MiB") }
        guard memoryBytes > reserved else {
            throw AgentError.badInput("memory \(ByteSize.format(memoryBytes)) leaves nothing above l0-reserved \(ByteSize.format(reserved))")
        }
        var diskBytes = try size(disk, "disk", default: 1 << 40)
        let nestedCapable = try typed(nested, "nested", expected: "true or false") ?? true
        let backendKind = try typed(backend, "backend", expected: oneOf(BackendKind.self)) ?? .sim
        var kvmSettings: KVMRuntimeSettings?
        if backendKind == .kvm {
            let probe = KVMProbe.run()
            guard probe.usable else { throw AgentError.badInput("backend kvm is not usable here: \(probe.reason) (blade-agent probe)") }
            let image = value(guestImage, "guest-image") ?? GuestImages.path("lpar-os.bin")
            guard FileManager.default.isReadableFile(atPath: image) else {
                throw AgentError.badInput("guest-image \(image) cannot be read")
            }
            kvmSettings = KVMRuntimeSettings(image: image, executable: GuestImages.executable,
                                             dataDirectory: value(dataDir, "data-dir") ?? "/var/lib/nestor/agent")
            if nestedCapable {
                let vmmImage = GuestImages.path("l1-vmm.bin"), microcode = GuestImages.path("vmx-microcode.bin")
                for path in [vmmImage, microcode] where !FileManager.default.isReadableFile(atPath: path) {
                    throw AgentError.badInput("nested: the guest hypervisor image \(path) cannot be read (or use nested: false)")
                }
                kvmSettings?.vmmImage = vmmImage
                kvmSettings?.microcode = microcode
            }
        } else if value(sharedDisk, "shared-disk") != nil {
            throw AgentError.badInput("shared-disk is for the kvm backend (backend: kvm)")
        }
        let heartbeat = try typed(heartbeatIntervalMs, "heartbeat-interval-ms", expected: "a whole number of milliseconds")
        if let heartbeat, !(10...60_000).contains(heartbeat) {
            throw AgentError.badInput("heartbeat-interval-ms \(heartbeat) is not between 10 and 60000")
        }
        let slice = try typed(simSliceMs, "sim-slice-ms", expected: "a number of milliseconds") ?? 2
        guard slice >= 0, slice <= 1000 else {
            throw AgentError.badInput("sim-slice-ms \(slice) is not between 0 and 1000")
        }
        let resources = BladeResources(coreCount: coreCount, memoryBytes: memoryBytes, l0ReservedBytes: reserved,
                                       disks: try Inventory.disks(value(disks, "disks") ?? "fc0:64:shared"),
                                       nics: try Inventory.nics(value(nics, "nics") ?? "eth0:shared"),
                                       nestedCapable: nestedCapable)
        if let problem = resources.problem() { throw AgentError.badInput(problem) }
        if let path = value(sharedDisk, "shared-disk"), kvmSettings != nil {
            guard let shared = resources.disks.first(where: \.shared) else {
                throw AgentError.badInput("shared-disk needs a shared disk in disks (ID:LUNS:shared)")
            }
            switch SharedDiskImage.open(path: path, disk: shared) {
            case .success(let image):
                kvmSettings?.sharedDisk = image
                let imageBytes = image.lunBytes * UInt64(image.lunCount)
                if disk == nil, file?.values["disk"] == nil { diskBytes = imageBytes }
                guard diskBytes <= imageBytes else {
                    throw AgentError.badInput("disk \(ByteSize.format(diskBytes)) is more than the shared-disk image holds (\(ByteSize.format(imageBytes)))")
                }
            case .failure(let error): throw error
            }
        }
        let tls: TLSIdentity
        do {
            tls = try TLSIdentity.load(identity: PeerIdentity(role: .agent, name: id), pkiDirectory: value(pkiDir, "pki-dir"),
                                       certificate: value(cert, "cert"), key: value(key, "key"), ca: value(ca, "ca"))
            _ = try tls.verifiedIdentity(.identity(PeerIdentity(role: .agent, name: id)), usage: .client)
        } catch { throw AgentError.badInput("the agent of blade \(id) cannot start with these credentials: \(error.message)") }
        var settings = AgentSettings(controller: endpoint, bladeID: id, resources: resources, diskBytes: diskBytes,
                                     chassis: try name(chassis, "chassis", default: "chassis-1"),
                                     rack: try name(rack, "rack", default: "rack-1"),
                                     powerDomain: try name(powerDomain, "power-domain", default: "power-1"), tls: tls)
        settings.backend = backendKind.rawValue
        settings.kvm = kvmSettings
        settings.heartbeatIntervalMillis = heartbeat
        settings.sliceSeconds = slice / 1000
        settings.simDirtyBytesPerSecond = try size(simDirtyRate, "sim-dirty-rate", default: 0)
        if let text = value(listen, "listen") {
            guard let endpoint = Endpoint(text) else { throw AgentError.badInput("listen '\(text)' is not HOST:PORT") }
            settings.listen = endpoint
        }
        var logger = Logger(label: "nestor.agent") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = level
        logger[metadataKey: "blade.id"] = "\(id)"
        let service: AgentService
        do { service = try AgentService(settings: settings, logger: logger) }
        catch { throw AgentError.badInput("\(error)") }
        var services: [any Service] = [service]
        if let endpoint = settings.listen {
            let listener: AgentListener
            do {
                listener = try AgentListener(endpoint: endpoint, tls: tls, runtime: service.runtime, logger: logger)
                let port = try await listener.start()
                let bound = Endpoint(host: endpoint.host, port: port)
                await service.runtime.enableMigrations(tls: tls, address: "\(bound)")
                FileHandle.standardOutput.write(Data("listening on \(bound)\n".utf8))
            } catch { throw AgentError.badInput("listen \(endpoint): cannot listen there: \(error)") }
            services.append(listener)
        }
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "What this host offers the KVM backend: /dev/kvm, its API version and capabilities, cores and memory.",
        discussion: "Exit code 0 when the KVM backend can run here, 1 when it cannot (the report says why).")

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let report = KVMProbe.run()
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(KVMProbe.table(report), terminator: "")
        }
        if !report.usable { throw ExitCode(1) }
    }
}

/// The process of one LPAR of the KVM backend (started by the agent, one per LPAR).
struct LPARHost: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lpar-host",
        abstract: "Run one LPAR as its own process (the agent starts it; not for direct use).",
        shouldDisplay: false)

    @Option(help: "The LPAR's configuration (JSON).")
    var config: String

    func run() throws {
        #if os(Linux)
        guard let configuration = try? JSONDecoder().decode(LPARConfiguration.self, from: Data(config.utf8)) else {
            throw AgentError.badInput("--config is not an LPAR configuration (JSON)")
        }
        throw ExitCode(LPARHostProcess.run(configuration))
        #else
        throw AgentError.badInput("the KVM backend runs on Linux only")
        #endif
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks of the partitioner.",
        subcommands: [ShadowVMCS.self, LPARBench.self])
}

struct ShadowVMCS: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shadow-vmcs",
        abstract: "VMM on LPAR with VMCS shadowing off and on: the whitepaper's figure 10.",
        discussion: """
            Runs each workload in an L2 VM under a guest hypervisor (L1) in an LPAR, once with \
            L0's VMCS shadowing off and once on, and prints operations per second, the relative \
            performance (on/off), L2 exits per operation and L1's VMX instructions per operation \
            that trapped to L0. The sim backend is deterministic: the same seed gives the same \
            figures, bit for bit. Constants of the cost model: blade-agent cost-model.
            """)

    @Option(help: "Backend: sim (simulated, any host) or kvm.")
    var backend: BackendKind = .sim
    @Option(help: "Workload: iometer, sysbench-oltp, pio-loop, idle or all (iometer and sysbench-oltp).")
    var workload: ShadowBenchWorkload = .all
    @Flag(help: "Print one JSON object instead of a table.")
    var json = false
    @Flag(help: "Also show how the gain grows with L1's VMCS accesses per exit.")
    var sweep = false
    @Option(help: "Spec file (YAML or JSON) with the blade, the VMM LPAR and the L2 VM to use.")
    var spec: String?
    @Option(help: "Seed of the simulation.")
    var seed: UInt64 = 1
    @Option(help: "Virtual seconds measured per run.")
    var seconds: Double = 1.0
    @Option(help: "Virtual seconds of warm-up before measuring.")
    var warmup: Double = 0.02
    @Option(help: "Shadow field set: linux-kvm (default), linux-kvm-3.10, none, or a comma-separated list of fields.")
    var shadowFields: String?
    @Option(help: "Cost model of the simulated platform.")
    var platform: String = "xeon-e5-2667v3"
    @Option(help: "Scale one cost-model constant, NAME=FACTOR (repeatable), for sensitivity studies.")
    var scale: [String] = []
    @Option(help: "sysbench-oltp: share (0 to 1) of statements whose server thread runs on another vCPU than its client.")
    var crossVCPUShare: Double = 0
    @OptionGroup var common: CommonOptions

    func run() async throws {
        var options = ShadowBenchOptions()
        options.crossVCPUShare = crossVCPUShare
        options.backend = backend
        options.workload = workload
        options.json = json
        options.sweep = sweep
        options.specPath = spec
        options.seed = seed
        options.seconds = seconds
        options.warmup = warmup
        options.shadowFields = shadowFields
        options.platform = platform
        options.scale = scale
        let logger = try common.logger("nestor.blade-agent.bench")
        let output = backend == .kvm
            ? try await ShadowBench.runKVM(options, images: GuestImages.directory, logger: logger)
            : try ShadowBench.run(options, logger: logger)
        print(output, terminator: output.hasSuffix("\n") ? "" : "\n")
    }
}

struct LPARBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lpar",
        abstract: "The cost of an LPAR on KVM: an exit to L0, 4 KiB reads in an LPAR against the host, process memory.",
        discussion: """
            Boots the lpar-os guest image in real KVM LPARs: times 20,000 port writes that exit \
            to L0 (best of three), runs the disk-read workload in an LPAR process over a file in \
            the page cache and the same 4 KiB reads (and hashing) directly on the host, and \
            reads the LPAR process's resident memory beyond its guest memory.
            """)

    @Option(help: "Backend: kvm (this benchmark measures real KVM).")
    var backend: BackendKind = .kvm
    @Flag(help: "Print one JSON object.")
    var json = false
    @Option(help: "Seconds for each read measurement.")
    var seconds: Double = 3
    @Option(help: "The guest image (default: the committed lpar-os image).")
    var image: String?
    @Option(help: "MiB of the disk image the reads go over.")
    var diskMib: Int = 64

    func run() async throws {
        guard backend == .kvm else { throw AgentError.badInput("bench lpar measures the KVM backend; use --backend kvm") }
        guard seconds > 0, seconds <= 600 else { throw AgentError.badInput("--seconds \(seconds) is not between 0 and 600") }
        guard (1...4096).contains(diskMib) else { throw AgentError.badInput("--disk-mib \(diskMib) is not between 1 and 4096") }
        #if os(Linux)
        let probe = KVMProbe.run()
        guard probe.usable else { throw AgentError.failure("KVM is not usable here: \(probe.reason)") }
        let report = try await LPARBenchmark.run(image: image ?? GuestImages.path("lpar-os.bin"), executable: GuestImages.executable,
                                           seconds: seconds, diskMiB: diskMib)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(LPARBenchmark.table(report), terminator: "")
        }
        #else
        throw AgentError.failure("the KVM backend runs on Linux only")
        #endif
    }
}

/// Where the guest images and this executable are.
enum GuestImages {
    static var executable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// NESTOR_GUEST_IMAGES, else Agents/Guests/images of the source tree this binary was built in.
    static func path(_ name: String) -> String {
        if let directory = ProcessInfo.processInfo.environment["NESTOR_GUEST_IMAGES"] { return directory + "/" + name }
        var directory = URL(fileURLWithPath: executable).deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("Agents/Guests/images/" + name).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            directory.deleteLastPathComponent()
        }
        return "/usr/share/nestor/guests/" + name
    }

    /// The directory of the guest images.
    static var directory: String { URL(fileURLWithPath: path("lpar-os.bin")).deletingLastPathComponent().path }
}

struct LPARCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lpar",
        abstract: "LPAR layouts.",
        subcommands: [Check.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a blade's LPAR layout against the isolation rules and print it.")

        @Option(help: "Spec file (YAML or JSON) with the blade and its LPARs.")
        var spec: String
        @Flag(help: "Print JSON.")
        var json = false

        func run() throws {
            print(try LPARCheck.run(specPath: spec, json: json), terminator: "")
        }
    }
}

struct CostModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cost-model",
        abstract: "Print a simulated platform's cost model: every constant and its source.")

    @Option(help: "Platform.")
    var platform: String = "xeon-e5-2667v3"
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        print(try CostModelReport.run(platform: platform, json: json), terminator: "")
    }
}

exit(await CommandRunner.runAsync(BladeAgent.self) { error in
    (error as? AgentError).map { ($0.message, $0.exitCode) }
})
