public import NIOCore
import NIOSSL
public import WireCodec
import NestorPKI
import Protos

/// A peer's TLS credentials: its certificate and key, and the cluster CA it trusts, in PEM.
public struct TLSIdentity: Sendable, Equatable {
    public var certificatePEM: String
    public var privateKeyPEM: String
    public var caPEM: String

    public init(certificatePEM: String, privateKeyPEM: String, caPEM: String) {
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
        self.caPEM = caPEM
    }

    /// TLS 1.3 only, mutual: the peer must present a certificate chaining to the CA.
    /// Hostnames are not checked: identities come from the URI SAN.
    func tlsConfiguration(server: Bool) throws -> TLSConfiguration {
        let chain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8)).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(bytes: Array(privateKeyPEM.utf8), format: .pem)
        let roots = try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8))
        var configuration = server
            ? TLSConfiguration.makeServerConfigurationWithMTLS(certificateChain: chain, privateKey: .privateKey(key),
                                                               trustRoots: .certificates(roots))
            : TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv13
        configuration.maximumTLSVersion = .tlsv13
        configuration.certificateVerification = .noHostnameVerification
        configuration.trustRoots = .certificates(roots)
        if !server {
            configuration.certificateChain = chain
            configuration.privateKey = .privateKey(key)
        }
        return configuration
    }
}

/// The limits and timers of connections (SPEC.md, sections 6 to 9).
public struct WireConfiguration: Sendable, Equatable {
    public var limits: WireLimits
    /// How long a caller waits for a response.
    public var requestTimeout: TimeAmount
    /// The preamble must arrive this soon after the TLS handshake.
    public var preambleTimeout: TimeAmount
    /// A frame that started must be complete this soon.
    public var frameTimeout: TimeAmount
    /// After this long without a frame, send a PING...
    public var idleTimeout: TimeAmount
    /// ...and close if nothing arrives this long after it.
    public var pingTimeout: TimeAmount
    public var maxInFlight: Int
    public var maxPingsPerSecond: Int
    /// Credit a stream's receiver grants up front.
    public var streamWindow: UInt64
    /// Size of the chunks an upload is cut into.
    public var chunkSize: Int
    /// How long a graceful shutdown waits for requests in flight.
    public var shutdownGrace: TimeAmount
    /// Events received and not yet consumed that are kept; newer ones are dropped and logged.
    public var eventBuffer: Int

    public init(limits: WireLimits = .standard, requestTimeout: TimeAmount = .seconds(30),
                preambleTimeout: TimeAmount = .seconds(10), frameTimeout: TimeAmount = .seconds(10),
                idleTimeout: TimeAmount = .seconds(30), pingTimeout: TimeAmount = .seconds(10),
                maxInFlight: Int = 1024, maxPingsPerSecond: Int = 100, streamWindow: UInt64 = 8 << 20,
                chunkSize: Int = 256 << 10, shutdownGrace: TimeAmount = .seconds(10), eventBuffer: Int = 4096) {
        self.limits = limits
        self.requestTimeout = requestTimeout
        self.preambleTimeout = preambleTimeout
        self.frameTimeout = frameTimeout
        self.idleTimeout = idleTimeout
        self.pingTimeout = pingTimeout
        self.maxInFlight = maxInFlight
        self.maxPingsPerSecond = maxPingsPerSecond
        self.streamWindow = streamWindow
        self.chunkSize = chunkSize
        self.shutdownGrace = shutdownGrace
        self.eventBuffer = eventBuffer
    }
}

/// Who may send which message type: the catalogue's roles.
public struct RolePolicy: Sendable {
    private let entries: [MessageType: CatalogEntry]

    public init(entries: [CatalogEntry]) {
        self.entries = Dictionary(uniqueKeysWithValues: entries.map { ($0.type, $0) })
    }

    /// Nestor's catalogue (Protos/SPEC.md, section 11).
    public static let nestor = RolePolicy(entries: NestorCatalog.entries)

    public enum Decision: Equatable, Sendable {
        case allowed
        case unknownType
        case notARequest
        case denied(allowed: Set<Role>)
    }

    public func decide(_ type: MessageType, from role: Role, kind: MessageKind = .request) -> Decision {
        guard let entry = entries[type] else { return .unknownType }
        guard entry.kind == kind else { return .notARequest }
        return entry.roles.contains(role) ? .allowed : .denied(allowed: entry.roles)
    }

    public func entry(_ type: MessageType) -> CatalogEntry? { entries[type] }
}

/// A failure the remote peer reported for a request (an ERROR frame), or that a handler
/// throws to produce one.
public struct WireFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public var code: WireErrorCode
    public var message: String
    public var field: String?
    /// For a refusal by authorization, what was refused: for the server's own log and audit
    /// trail, never sent to the peer.
    public var audit: String?

    public init(_ code: WireErrorCode, _ message: String, field: String? = nil, audit: String? = nil) {
        self.code = code
        self.message = message
        self.field = field
        self.audit = audit
    }

    public var description: String { "\(code) (\(code.rawValue)): \(message)" }
}

/// Why a connection or a call failed locally.
public enum WireConnectionError: Error, Equatable, Sendable, CustomStringConvertible {
    case timeout(TimeAmount)
    case closed(String)
    case goaway(code: WireErrorCode, reason: String)
    case handshake(String)
    case notOpen

    public var description: String {
        switch self {
        case .timeout(let amount): return "no answer within \(amount.nanoseconds / 1_000_000) ms"
        case .closed(let reason): return "connection closed: \(reason)"
        case .goaway(let code, let reason): return "peer is going away (\(code)): \(reason)"
        case .handshake(let reason): return "handshake failed: \(reason)"
        case .notOpen: return "connection is not open"
        }
    }
}
