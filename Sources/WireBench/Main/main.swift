import ArgumentParser
import Foundation
import Logging
import NIOCore
import NestorPKI
import ServiceLifecycle
import Supervision
import Wire
import WireBenchKit
import WireCodec

/// Measures Nestor's wire protocol, and serves it for tests.
@main
struct WireBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wire-bench",
        abstract: "Measure Nestor's wire protocol over mutual TLS 1.3 on loopback.",
        discussion: "Errors in the input are reported in one line with exit code 2.",
        version: "0.1.0",
        subcommands: [Run.self, Serve.self],
        defaultSubcommand: Run.self)

    static func main() async {
        SignalPolicy.installForSupervisor()
        do {
            var command = try parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch let error as InputError {
            FileHandle.standardError.write(Data("wire-bench: \(error.message)\n".utf8))
            Foundation.exit(2)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            let line = message(for: error).split(separator: "\n").first.map(String.init) ?? "failed"
            FileHandle.standardError.write(Data("wire-bench: \(line)\n".utf8))
            Foundation.exit(code == .validationFailure ? 2 : 1)
        }
    }
}

struct InputError: Error {
    let message: String
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Round trips per second, p50/p99 latency, 16 concurrent requests, and bulk streaming.",
        discussion: """
            A server and a client run in this process, each on its own event-loop thread, over \
            mutual TLS 1.3 on 127.0.0.1 with a throwaway CA. Figures: sequential round trips of \
            a 1 KiB request and response on one connection (per second, p50 and p99 in µs), \
            throughput with 16 concurrent requests on that connection, and one 256 MiB stream \
            in 256 KiB chunks (MiB/s). --peer grpc also runs grpc-swift 2 (unary calls and a \
            client stream, same payloads, same TLS) from bench/peers/grpc, building it when needed.
            """)

    @Flag(help: "Print one JSON object.")
    var json = false
    @Option(help: "Also measure another stack: grpc.")
    var peer: String?
    @Option(help: "Seconds for each of the round-trip measurements.")
    var seconds: Double = 3
    @Option(help: "MiB to stream in the bulk measurement.")
    var bulkMib: Int = 256

    func run() async throws {
        if let peer, peer != "grpc" { throw InputError(message: "--peer '\(peer)' is not supported (only grpc)") }
        guard seconds > 0, seconds <= 600 else { throw InputError(message: "--seconds \(seconds) is not between 0 and 600") }
        guard (1...65536).contains(bulkMib) else { throw InputError(message: "--bulk-mib \(bulkMib) is not between 1 and 65536") }
        var plan = BenchPlan()
        plan.seconds = seconds
        plan.bulkBytes = bulkMib << 20
        let credentials = try BenchCredentials.create()
        defer { credentials.remove() }
        let nestor = try await WireBenchmark.run(plan: plan, credentials: credentials)
        var grpc: BenchFigures?
        if peer == "grpc" {
            grpc = try GRPCPeer.run(plan: plan, credentials: credentials)
        }
        if json {
            print(BenchReport.json(nestor: nestor, grpc: grpc))
        } else {
            print(BenchReport.table(nestor: nestor, grpc: grpc), terminator: "")
        }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the benchmark's requests (echo, bulk upload) until SIGTERM or SIGINT.",
        discussion: """
            Prints 'listening on PORT' once the socket is bound; logs go to stderr. Used by the \
            end-to-end tests of the transport as a real server process.
            """)

    @Option(help: "The PKI directory (clusterctl pki init / issue).")
    var pki: String
    @Option(help: "The server's identity, ROLE/NAME; its certificate must be in the PKI directory.")
    var identity: String = "agent/bench-server"
    @Option(help: "The address to listen on.")
    var host: String = "127.0.0.1"
    @Option(help: "The port to listen on (0: any free port).")
    var port: Int = 0
    @Option(help: "Milliseconds a started frame may take to arrive.")
    var frameTimeoutMs: Int64 = 10_000
    @Option(help: "Milliseconds after the TLS handshake for the preamble.")
    var preambleTimeoutMs: Int64 = 10_000
    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw InputError(message: "--log-level '\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
        let parts = identity.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let role = Role(rawValue: String(parts[0])), PeerIdentity.isValidName(String(parts[1])) else {
            throw InputError(message: "--identity '\(identity)' is not ROLE/NAME")
        }
        guard (0...65535).contains(port) else { throw InputError(message: "--port \(port) is not between 0 and 65535") }
        guard frameTimeoutMs > 0, preambleTimeoutMs > 0 else { throw InputError(message: "timeouts must be positive") }
        let directory = PKIDirectory(path: pki)
        let tls: TLSIdentity
        do {
            let credential = try directory.load(PeerIdentity(role: role, name: String(parts[1])))
            tls = TLSIdentity(certificatePEM: credential.certificatePEM, privateKeyPEM: credential.privateKeyPEM,
                              caPEM: try directory.loadCA().certificatePEM)
        } catch {
            throw InputError(message: error.message)
        }
        var logger = Logger(label: "wire-bench") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = level
        var configuration = WireConfiguration()
        configuration.frameTimeout = .milliseconds(frameTimeoutMs)
        configuration.preambleTimeout = .milliseconds(preambleTimeoutMs)
        let server = try WireServer(host: host, port: port, tls: tls, service: BenchService.router(),
                                    configuration: configuration, logger: logger)
        let address = try await server.start()
        FileHandle.standardOutput.write(Data("listening on \(address.port ?? port)\n".utf8))
        let group = ServiceGroup(configuration: .init(services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
