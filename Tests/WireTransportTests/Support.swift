import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import NestorPKI
import SwiftASN1
import Wire
import WireCodec
import X509

/// A PKI directory for one test: the CA, the bench server, an admin and a tenant.
struct TestPKI {
    let directory: PKIDirectory
    static let server = PeerIdentity(role: .agent, name: "bench-server")
    static let admin = PeerIdentity(role: .admin, name: "ops")
    static let tenant = PeerIdentity(role: .tenant, name: "acme")

    init() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("nestor-wire-\(UUID().uuidString)").path
        directory = PKIDirectory(path: path)
        try directory.initialize(days: 2)
        for identity in [Self.server, Self.admin, Self.tenant] {
            try directory.issue(CertificateRequest(identity: identity, days: 2))
        }
    }

    func tls(_ identity: PeerIdentity) throws -> TLSIdentity {
        let credential = try directory.load(identity)
        return TLSIdentity(certificatePEM: credential.certificatePEM, privateKeyPEM: credential.privateKeyPEM,
                           caPEM: try directory.loadCA().certificatePEM)
    }

    var caPEM: String { (try? directory.loadCA().certificatePEM) ?? "" }

    /// A certificate signed by this CA whose SANs are exactly `uris` (none: no Nestor identity).
    func credential(uris: [String], commonName: String = "odd-one") throws -> IssuedCredential {
        let ca = try directory.loadCA()
        let caCertificate = try Certificate(pemEncoded: ca.certificatePEM)
        let caKey = try P256.Signing.PrivateKey(pemRepresentation: ca.privateKeyPEM)
        let key = P256.Signing.PrivateKey()
        let now = Date()
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage([.serverAuth, .clientAuth])
            if !uris.isEmpty { SubjectAlternativeNames(uris.map { .uniformResourceIdentifier($0) }) }
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-60), notValidAfter: now.addingTimeInterval(86_400),
            issuer: caCertificate.subject, subject: try DistinguishedName { CommonName(commonName) },
            signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions, issuerPrivateKey: .init(caKey))
        return IssuedCredential(certificatePEM: try certificate.serializeAsPEM().pemString, privateKeyPEM: key.pemRepresentation)
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory.path) }
}

/// `wire-bench serve` as a real process: its port, its log (stderr) and its memory.
final class ServerProcess: @unchecked Sendable {
    let process = Process()
    let port: Int
    let logPath: String

    static var executable: URL {
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("wire-bench").path), directory.path != "/" {
            directory.deleteLastPathComponent()
        }
        return directory.appendingPathComponent("wire-bench")
    }

    init(pki: TestPKI, arguments: [String] = []) throws {
        logPath = pki.directory.path + "/server-\(UUID().uuidString).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = Self.executable
        process.arguments = ["serve", "--pki", pki.directory.path, "--log-level", "debug"] + arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle(forWritingAtPath: logPath)
        try process.run()
        // The first line is "listening on PORT".
        var line = Data()
        let reader = out.fileHandleForReading
        while !line.contains(UInt8(ascii: "\n")) {
            let byte = reader.readData(ofLength: 1)
            if byte.isEmpty { break }
            line.append(byte)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("listening on "), let port = Int(text.dropFirst(13).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            process.terminate()
            throw TestFailure("wire-bench serve did not start: '\(text)'; log: \((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")")
        }
        self.port = port
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
    var isRunning: Bool { process.isRunning }

    /// Resident memory in KiB, from /proc.
    var residentKiB: Int {
        guard let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return -1 }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? -1
    }

    /// Waits until the log contains `text`.
    func waitForLog(_ text: String, timeout: Double = 10) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if log.contains(text) { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return log.contains(text)
    }

    /// SIGTERM, then the exit status.
    @discardableResult
    func stop() -> Int32 {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        return process.terminationStatus
    }

    deinit { if process.isRunning { process.terminate() } }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A TLS client that speaks raw bytes: it sends whatever a test wants and records what
/// comes back, to drive a server with malformed input.
final class RawClient: Sendable {
    struct State {
        var received: [UInt8] = []
        var closed = false
        var handshaken = false
        var error: String?
    }

    struct RawSendError: Error, CustomStringConvertible {
        let description: String
    }

    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let state: NIOLockedValueBox<State>
        init(state: NIOLockedValueBox<State>) { self.state = state }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            state.withLockedValue { $0.received += buffer.readableBytesView }
        }
        func channelInactive(context: ChannelHandlerContext) {
            state.withLockedValue { $0.closed = true }
            context.fireChannelInactive()
        }
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
                state.withLockedValue { $0.handshaken = true }
            }
            context.fireUserInboundEventTriggered(event)
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            state.withLockedValue { $0.error = "\(error)" }
            context.close(promise: nil)
        }
    }

    let channel: any Channel
    let state: NIOLockedValueBox<State>

    private init(channel: any Channel, state: NIOLockedValueBox<State>) {
        self.channel = channel
        self.state = state
    }

    /// Connects with `certificate` (nil: no client certificate) trusting the test CA.
    static func connect(port: Int, caPEM: String, certificate: IssuedCredential?,
                        maximumTLSVersion: TLSVersion = .tlsv13) async throws -> RawClient {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8)))
        configuration.certificateVerification = .noHostnameVerification
        configuration.maximumTLSVersion = maximumTLSVersion
        if let certificate {
            configuration.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificate.certificatePEM.utf8)).map { .certificate($0) }
            configuration.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(certificate.privateKeyPEM.utf8), format: .pem))
        }
        let context = try NIOSSLContext(configuration: configuration)
        let state = NIOLockedValueBox(State())
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                    try channel.pipeline.syncOperations.addHandler(Collector(state: state))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawClient(channel: channel, state: state)
    }

    func send(_ bytes: [UInt8]) async throws {
        do {
            try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
        } catch {
            let now = snapshot
            throw RawSendError(description: "a write of \(bytes.count) bytes failed (TLS handshake done: \(now.handshaken), closed: \(now.closed), \(now.received.count) bytes received, error seen: \(now.error ?? "none")): \(error)")
        }
    }

    var snapshot: State { state.withLockedValue { $0 } }

    /// Waits until `condition` holds (polling), or the timeout passes.
    @discardableResult
    func wait(timeout: Double = 10, until condition: (State) -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition(snapshot) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return condition(snapshot)
    }

    /// What the server sent, as a preamble and frames.
    var items: [FrameDecoder.Inbound] {
        var decoder = FrameDecoder(maxFrameSize: 1 << 24)
        var buffer = ByteBuffer(bytes: snapshot.received)
        var items: [FrameDecoder.Inbound] = []
        while let item = try? decoder.next(from: &buffer) { items.append(item) }
        return items
    }

    var frames: [Frame] {
        items.compactMap { if case .frame(let frame) = $0 { return frame } else { return nil } }
    }

    func close() { channel.close(promise: nil) }
}

/// Bytes on the wire, built by hand.
enum Bytes {
    static func preamble(major: UInt16 = 1, minor: UInt16 = 0, maxFrame: UInt32 = 1 << 20, magic: UInt32 = Preamble.magic) -> [UInt8] {
        var buffer = ByteBuffer()
        buffer.writeInteger(magic, endianness: .little)
        buffer.writeInteger(major, endianness: .little)
        buffer.writeInteger(minor, endianness: .little)
        buffer.writeInteger(maxFrame, endianness: .little)
        buffer.writeInteger(UInt32(0), endianness: .little)
        return Array(buffer.readableBytesView)
    }

    static func frame(kind: UInt8, flags: UInt8 = 0, type: UInt16 = 0, id: UInt64 = 0, length: UInt32? = nil, payload: [UInt8] = []) -> [UInt8] {
        var buffer = ByteBuffer()
        buffer.writeInteger(length ?? UInt32(payload.count), endianness: .little)
        buffer.writeInteger(kind)
        buffer.writeInteger(flags)
        buffer.writeInteger(type, endianness: .little)
        buffer.writeInteger(id, endianness: .little)
        buffer.writeBytes(payload)
        return Array(buffer.readableBytesView)
    }

    static func message<M: WireMessage>(_ kind: FrameKind, id: UInt64, _ message: M) -> [UInt8] {
        frame(kind: kind.rawValue, type: M.messageType, id: id, payload: Array(message.encoded().readableBytesView))
    }
}

/// A log handler that keeps the lines, for checks on what a component logged.
struct CapturingLogHandler: LogHandler {
    let lines: NIOLockedValueBox<[String]>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let meta = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        lines.withLockedValue { $0.append("\(event.level) \(meta) \(event.message)") }
    }
}
