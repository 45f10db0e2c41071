import Foundation
import NestorPKI
import Testing
import Wire
import WireCodec

struct HarnessFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A real cluster on loopback: a PKI directory, a `cluster-controller` process and
/// `blade-agent` processes, all talking mutual TLS; `clusterctl` runs as a process too.
final class ClusterHarness: @unchecked Sendable {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var json: Any? { try? JSONSerialization.jsonObject(with: Data(stdout.utf8)) }
    }

    let directory: String
    let pki: PKIDirectory
    private(set) var port = 0
    private var controller: Process?
    private var agents: [String: Process] = [:]
    /// The port of each agent's own listener, for agents started with one.
    private(set) var agentPorts: [String: Int] = [:]
    let controllerArguments: [String]

    static func executable(_ name: String) -> String {
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: directory.appendingPathComponent(name).path), directory.path != "/" {
            directory.deleteLastPathComponent()
        }
        return directory.appendingPathComponent(name).path
    }

    /// `heartbeatMs` is short so that leases expire within a test's patience.
    init(heartbeatMs: Int = 200, admission: String = "blade", extra: [String] = []) throws {
        directory = NSTemporaryDirectory() + "nestor-e2e-\(UUID().uuidString.prefix(8))"
        pki = PKIDirectory(path: directory + "/pki")
        controllerArguments = ["run", "--listen", "127.0.0.1:0", "--data-dir", directory + "/data", "--pki-dir", pki.path,
                               "--heartbeat-interval-ms", "\(heartbeatMs)", "--suspect-after-ms", "\(heartbeatMs * 3)",
                               "--unreachable-after-ms", "\(heartbeatMs * 5)", "--admission-level", admission,
                               "--log-level", "info"] + extra
        _ = try pki.initialize()
        for identity in ["controller/controller", "admin/ops", "tenant/acme", "tenant/globex"] {
            try issue(identity)
        }
    }

    func issue(_ identity: String) throws {
        let parts = identity.split(separator: "/")
        _ = try pki.issue(CertificateRequest(identity: PeerIdentity(role: Role(rawValue: String(parts[0]))!, name: String(parts[1]))))
    }

    /// Starts the controller (on the port it had before, when restarting) and waits for it.
    func startController() throws {
        var arguments = controllerArguments
        if port != 0, let index = arguments.firstIndex(of: "127.0.0.1:0") { arguments[index] = "127.0.0.1:\(port)" }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable("cluster-controller"))
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        let log = directory + "/controller.log"
        if !FileManager.default.fileExists(atPath: log) { FileManager.default.createFile(atPath: log, contents: nil) }
        let handle = FileHandle(forWritingAtPath: log)!
        handle.seekToEndOfFile()
        process.standardError = handle
        try process.run()
        let text = Self.firstLine(of: out)
        guard text.hasPrefix("listening on "), let bound = Int(text.split(separator: ":").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") else {
            throw HarnessFailure("the controller did not start: '\(text)'; log: \(controllerLog)")
        }
        port = bound
        controller = process
    }

    func agentLog(_ blade: String) -> String { (try? String(contentsOfFile: directory + "/\(blade).log", encoding: .utf8)) ?? "" }

    /// The first line a process writes to `pipe` (empty when it ends first).
    static func firstLine(of pipe: Pipe) -> String {
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let byte = pipe.fileHandleForReading.readData(ofLength: 1)
            if byte.isEmpty { break }
            line.append(byte)
        }
        return String(decoding: line, as: UTF8.self)
    }

    /// Runs `executable` (one of the package's) to its end: its exit status and stderr.
    static func runToEnd(_ executable: String, _ arguments: [String]) throws -> (status: Int32, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable.hasPrefix("/") ? executable : Self.executable(executable))
        process.arguments = arguments
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, stderr)
    }

    var controllerPID: Int32? { controller?.processIdentifier }

    var controllerIsRunning: Bool { controller?.isRunning ?? false }

    var controllerLog: String { (try? String(contentsOfFile: directory + "/controller.log", encoding: .utf8)) ?? "" }

    /// Starts an agent for `blade` in `chassis`; with `listen`, the agent's own listener on a
    /// free port, kept in `agentPorts`.
    func startAgent(_ blade: String, chassis: String, cores: Int = 16, memory: String = "64GiB", extra: [String] = [],
                    controllerPort: Int? = nil, listen: Bool = false) throws {
        if !FileManager.default.fileExists(atPath: pki.certificatePath(for: PeerIdentity(role: .agent, name: blade))) {
            try issue("agent/\(blade)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable("blade-agent"))
        process.arguments = ["run", "--controller", "127.0.0.1:\(controllerPort ?? port)", "--blade-id", blade, "--pki-dir", pki.path,
                             "--cores", "\(cores)", "--memory", memory, "--chassis", chassis, "--rack", "rack-1",
                             "--power-domain", "power-1", "--log-level", "info"] + extra + (listen ? ["--listen", "127.0.0.1:0"] : [])
        let out = Pipe()
        process.standardOutput = listen ? out : FileHandle.nullDevice
        let log = directory + "/\(blade).log"
        FileManager.default.createFile(atPath: log, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: log)
        try process.run()
        agents[blade] = process
        guard listen else { return }
        let text = Self.firstLine(of: out)
        guard text.hasPrefix("listening on "), let bound = Int(text.split(separator: ":").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") else {
            throw HarnessFailure("the agent of \(blade) did not listen: '\(text)'; log: \(agentLog(blade))")
        }
        agentPorts[blade] = bound
    }

    /// Four blades in two chassis, all registered and ready.
    func startFourBlades() async throws {
        try startController()
        for index in 1...4 { try startAgent("blade-\(index)", chassis: "chassis-\((index + 1) / 2)") }
        try await eventually("4 blades ready") {
            let blades = (try? await self.ctl("admin/ops", ["blade", "list", "-o", "json"]).json as? [[String: Any]]) ?? []
            return blades.count == 4 && blades.allSatisfy { $0["state"] as? String == "ready" }
        }
    }

    func kill(agent blade: String) {
        if let process = agents[blade], process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
    }

    func killController() {
        if let controller, controller.isRunning { Foundation.kill(controller.processIdentifier, SIGKILL); controller.waitUntilExit() }
    }

    /// Runs clusterctl as `identity` (ROLE/NAME) against the controller, on a thread of its
    /// own (waiting for it holds no thread of the cooperative pool).
    @discardableResult
    func ctl(_ identity: String, _ arguments: [String], port: Int? = nil) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Swift.Result { try self.ctlBlocking(identity, arguments, port: port ?? self.port) }) }.start()
        }
    }

    private func ctlBlocking(_ identity: String, _ arguments: [String], port: Int) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable("clusterctl"))
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["NESTOR_ENDPOINT"] = "127.0.0.1:\(port)"
        environment["NESTOR_PKI_DIR"] = pki.path
        environment["NESTOR_IDENTITY"] = identity
        environment["HOME"] = directory
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderr, as: UTF8.self))
    }

    /// Credentials for an in-process client.
    func tls(_ identity: PeerIdentity) throws -> TLSIdentity {
        try TLSIdentity.load(identity: identity, pkiDirectory: pki.path, certificate: nil, key: nil, ca: nil)
    }

    func eventually(_ what: String, timeout: Double = 20, _ condition: @escaping () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? await condition()) == true { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw HarnessFailure("timed out waiting for: \(what); controller log tail: \(controllerLog.suffix(2000))")
    }

    func stop() {
        for process in agents.values where process.isRunning { process.terminate(); process.waitUntilExit() }
        if let controller, controller.isRunning { controller.terminate(); controller.waitUntilExit() }
        try? FileManager.default.removeItem(atPath: directory)
    }

    deinit {
        for process in agents.values where process.isRunning { process.terminate() }
        if let controller, controller.isRunning { controller.terminate() }
    }
}
