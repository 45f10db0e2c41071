public import NIOCore
public import WireCodec

/// A request that arrived, as a service sees it: the verified identity of the peer that sent
/// it, its message (already decoded and checked against the catalogue and the sender's role),
/// and, for a request that opens a stream, the stream's bytes.
public struct WireRequest: Sendable {
    public let id: UInt64
    public let messageType: MessageType
    public let peer: PeerIdentity
    public let message: any WireStruct
    /// The chunks of the stream this request opened, or nil.
    public let body: WireStreamBody?
    /// The connection it came on (to push events back, for example).
    public let connection: WireConnection

    /// The message as `M`; a `WireFailure` with `invalidArgument` when it is another type.
    public func decode<M: WireMessage>(_ type: M.Type = M.self) throws(WireFailure) -> M {
        guard let message = message as? M else {
            throw WireFailure(.invalidArgument, "expected message type \(M.messageType), got \(messageType)")
        }
        return message
    }
}

/// What a service answers: a response message.
public struct WireReply: Sendable {
    public let messageType: MessageType
    public let payload: ByteBuffer

    public init(messageType: MessageType, payload: ByteBuffer) {
        self.messageType = messageType
        self.payload = payload
    }

    public static func message<M: WireMessage>(_ message: M) -> WireReply {
        WireReply(messageType: M.messageType, payload: message.encoded())
    }
}

/// Serves requests. Throw a `WireFailure` to answer with an ERROR of that code; any other
/// error is answered with `internalError`.
public protocol WireService: Sendable {
    func handle(_ request: WireRequest) async throws -> WireReply
    /// A request of `peer` that the connection refused by its role before any handler saw it
    /// (the role may not send `messageType`); for the service's audit trail.
    func refusedByRole(_ peer: PeerIdentity, messageType: MessageType, name: String)
}

extension WireService {
    public func refusedByRole(_ peer: PeerIdentity, messageType: MessageType, name: String) {}
}

/// A service built from one closure per request type.
public struct WireRouter: WireService {
    public typealias Handler = @Sendable (WireRequest) async throws -> WireReply
    private var handlers: [MessageType: Handler] = [:]

    public init() {}

    /// Serves requests of type `M` with `handler`, which answers with a message of type `R`.
    public mutating func on<M: WireMessage, R: WireMessage>(_ type: M.Type, _ handler: @escaping @Sendable (M, WireRequest) async throws -> R) {
        handlers[M.messageType] = { request in
            let message = try request.decode(M.self)
            return .message(try await handler(message, request))
        }
    }

    public func handle(_ request: WireRequest) async throws -> WireReply {
        guard let handler = handlers[request.messageType] else {
            throw WireFailure(.unknownMessageType, "this peer does not serve message type \(request.messageType)")
        }
        return try await handler(request)
    }
}

/// A message the peer pushed without a request.
public struct WireEvent: Sendable {
    public let messageType: MessageType
    public let message: any WireStruct
    public let peer: PeerIdentity
}
