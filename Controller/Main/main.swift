import ArgumentParser
import ClusterCore
import CommandLineSupport
import ControllerKit
import Foundation
import Logging
import Placement
import ServiceLifecycle
import Wire
import WireCodec
import Sizes

/// Nestor's cluster controller.
struct ClusterController: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster-controller",
        abstract: "Nestor's cluster controller: tenants, blades, placement, and the agents' desired state.",
        discussion: "Errors in the input (flags, config file) are reported in one line with exit code 2.",
        version: "0.1.0",
        subcommands: [Run.self])
}

/// An input error: one line on stderr, exit code 2.
struct InputError: Error {
    let message: String
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the controller until SIGTERM or SIGINT.",
        discussion: """
            Every option can also be set in the config file (YAML), under the flag's name without \
            the dashes in front, e.g. 'listen: 0.0.0.0:7400'; a flag overrides the file. An \
            unknown key in the file is an error. Prints 'listening on HOST:PORT' once the socket \
            is bound. State lives in DATA-DIR/cluster.sqlite (SQLite, WAL); every acknowledged \
            change is on disk before the answer is sent.
            """)

    static let keys = ["listen", "data-dir", "pki-dir", "name", "cert", "key", "ca", "heartbeat-interval-ms",
                       "suspect-after-ms", "unreachable-after-ms", "admission-level", "memory-block", "log-level",
                       "event-retention-count", "event-retention-days", "event-compact-every"]

    @Option(help: "Config file (YAML) with any of the options below.")
    var config: String?
    @Option(help: "Address to listen on, HOST:PORT (default 127.0.0.1:7400; port 0 picks a free one).")
    var listen: String?
    @Option(help: "Directory of the durable state (default /var/lib/nestor/controller).")
    var dataDir: String?
    @Option(help: "PKI directory with ca.pem and controller-NAME.pem / controller-NAME-key.pem.")
    var pkiDir: String?
    @Option(help: "The controller's name: its identity is nestor://controller/NAME (default controller).")
    var name: String?
    @Option(help: "Certificate file (PEM); overrides the one from --pki-dir.")
    var cert: String?
    @Option(help: "Private key file (PEM); overrides the one from --pki-dir.")
    var key: String?
    @Option(help: "Cluster CA certificate file (PEM); overrides the one from --pki-dir.")
    var ca: String?
    @Option(help: "How often agents heartbeat, in ms (default 1000).")
    var heartbeatIntervalMs: String?
    @Option(help: "A blade is suspect after this long without a heartbeat, in ms (default 3 heartbeats).")
    var suspectAfterMs: String?
    @Option(help: "A blade is unreachable after this long without a heartbeat, in ms (default 6 heartbeats).")
    var unreachableAfterMs: String?
    @Option(help: "N+1 admission level: blade, chassis, rack, power or none (default chassis).")
    var admissionLevel: String?
    @Option(help: "Memory is handed out in blocks of this size (default 256MiB).")
    var memoryBlock: String?
    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical (default info).")
    var logLevel: String?
    @Option(help: "Events kept: at most this many, the oldest compacted away (default 100000).")
    var eventRetentionCount: String?
    @Option(help: "Events kept: none older than this many days (default 30).")
    var eventRetentionDays: String?
    @Option(help: "Events beyond the retention are compacted at start and after this many events written (default 1000).")
    var eventCompactEvery: String?

    func run() async throws {
        let file: ConfigFile?
        do { file = try config.map { path throws(ConfigFileError) in try ConfigFile(path: path, known: Self.keys) } }
        catch { throw InputError(message: error.message) }
        func value(_ flag: String?, _ key: String) -> String? { file?.merged(flag, key) ?? flag }

        let levelText = value(logLevel, "log-level") ?? "info"
        guard let level = Logger.Level(rawValue: levelText) else {
            throw InputError(message: "log-level '\(levelText)' is not one of trace, debug, info, notice, warning, error, critical")
        }
        let listenText = value(listen, "listen") ?? "127.0.0.1:7400"
        guard let endpoint = Endpoint(listenText) else { throw InputError(message: "listen '\(listenText)' is not HOST:PORT") }
        let controllerName = value(name, "name") ?? "controller"
        guard PeerIdentity.isValidName(controllerName) else {
            throw InputError(message: "name '\(controllerName)' must be 1-63 of a-z, 0-9, '-', '_', '.'")
        }
        func millis(_ flag: String?, _ key: String, default fallback: UInt64) throws -> UInt64 {
            guard let text = value(flag, key) else { return fallback }
            guard let number = UInt64(text), number >= 10, number <= 3_600_000 else {
                throw InputError(message: "\(key) '\(text)' is not a number of milliseconds between 10 and 3600000")
            }
            return number
        }
        let heartbeat = try millis(heartbeatIntervalMs, "heartbeat-interval-ms", default: 1000)
        let suspect = try millis(suspectAfterMs, "suspect-after-ms", default: heartbeat * 3)
        let unreachable = try millis(unreachableAfterMs, "unreachable-after-ms", default: heartbeat * 6)
        guard suspect > heartbeat, unreachable >= suspect else {
            throw InputError(message: "leases must grow: heartbeat-interval-ms \(heartbeat) < suspect-after-ms \(suspect) <= unreachable-after-ms \(unreachable)")
        }
        func whole(_ flag: String?, _ key: String, default fallback: Int, in range: ClosedRange<Int>) throws -> Int {
            guard let text = value(flag, key) else { return fallback }
            guard let number = Int(text), range.contains(number) else {
                throw InputError(message: "\(key) '\(text)' is not a whole number between \(range.lowerBound) and \(range.upperBound)")
            }
            return number
        }
        let retainCount = try whole(eventRetentionCount, "event-retention-count", default: 100_000, in: 100...100_000_000)
        let retainDays = try whole(eventRetentionDays, "event-retention-days", default: 30, in: 1...36_500)
        let compactEvery = try whole(eventCompactEvery, "event-compact-every", default: 1_000, in: 10...1_000_000)
        let admissionText = value(admissionLevel, "admission-level") ?? "chassis"
        let admission: DomainLevel?
        if admissionText == "none" { admission = nil } else {
            guard let parsed = DomainLevel(rawValue: admissionText) else {
                throw InputError(message: "admission-level '\(admissionText)' is not one of blade, chassis, rack, power, none")
            }
            admission = parsed
        }
        var block: UInt64 = 256 << 20
        if let text = value(memoryBlock, "memory-block") {
            switch ByteSize.parse(text) {
            case .success(let bytes) where bytes >= 2 << 20 && bytes % (2 << 20) == 0: block = bytes
            case .success: throw InputError(message: "memory-block '\(text)' must be a multiple of 2MiB")
            case .failure(let error): throw InputError(message: "memory-block \(error)")
            }
        }
        let tls: TLSIdentity
        do {
            tls = try TLSIdentity.load(identity: PeerIdentity(role: .controller, name: controllerName),
                                       pkiDirectory: value(pkiDir, "pki-dir"), certificate: value(cert, "cert"),
                                       key: value(key, "key"), ca: value(ca, "ca"))
            _ = try tls.verifiedIdentity(.role(.controller), usage: .server)
        } catch { throw InputError(message: "the controller cannot start with these credentials: \(error.message)") }

        var settings = ControllerSettings(tls: tls)
        settings.listen = endpoint
        settings.dataDirectory = value(dataDir, "data-dir") ?? "/var/lib/nestor/controller"
        settings.eventRetention = EventRetention(count: retainCount, maxAgeMillis: UInt64(retainDays) * 86_400_000,
                                                  compactEvery: compactEvery)
        settings.heartbeatIntervalMillis = heartbeat
        settings.suspectAfterMillis = suspect
        settings.unreachableAfterMillis = unreachable
        switch TestSwitch.parse(ProcessInfo.processInfo.environment[TestSwitch.environmentVariable] ?? "") {
        case .success(let switches): settings.testSwitches = switches
        case .failure(let error): throw InputError(message: error.message)
        }
        settings.commands = ClusterCommands(placementPolicy: PlacementPolicy(
            memoryBlockBytes: block, admissionLevel: admission,
            testSkipsHardAntiAffinity: settings.testSwitches.contains(.skipHardAntiAffinity)))

        var logger = Logger(label: "nestor.controller") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = level
        let service: ControllerService
        do {
            service = try ControllerService(settings: settings, logger: logger)
        } catch {
            throw InputError(message: "\(error)")
        }
        let port = try await service.start()
        FileHandle.standardOutput.write(Data("listening on \(Endpoint(host: endpoint.host, port: port))\n".utf8))
        logger.info("controller up", metadata: ["listen.port": "\(port)", "store.path": "\(settings.dataDirectory)/cluster.sqlite",
                                                "admission.level": "\(admissionText)"])
        let group = ServiceGroup(configuration: .init(services: service.services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

exit(await CommandRunner.runAsync(ClusterController.self) { error in
    (error as? InputError).map { ($0.message, 2) }
})
