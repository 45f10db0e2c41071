public import NIOCore
public import WireCodec
import Protos

/// One open connection to a verified peer. Calls, uploads, events and pings may be made
/// from any task; the protocol runs on the connection's event loop.
public final class WireConnection: Sendable {
    /// The identity from the peer's certificate.
    public let peer: PeerIdentity
    /// Events the peer pushes (a server's cluster events, for example).
    public let events: AsyncStream<WireEvent>
    let channel: any Channel
    let handler: NIOLoopBound<WireConnectionHandler>
    let side: ConnectionSide
    let configuration: WireConfiguration

    init(channel: any Channel, handler: NIOLoopBound<WireConnectionHandler>, peer: PeerIdentity, side: ConnectionSide,
         configuration: WireConfiguration, events: AsyncStream<WireEvent>) {
        self.channel = channel
        self.handler = handler
        self.peer = peer
        self.side = side
        self.configuration = configuration
        self.events = events
    }

    public var remoteAddress: SocketAddress? { channel.remoteAddress }
    public var localAddress: SocketAddress? { channel.localAddress }
    public var isActive: Bool { channel.isActive }

    /// Sends `request` and waits for its response. Throws `WireFailure` when the peer answers
    /// with an ERROR, `WireConnectionError` when there is no answer (timeout, closed, GOAWAY),
    /// and `WireError` when the answer does not decode as `Response`.
    public func call<Request: WireMessage, Response: WireMessage>(
        _ request: Request, expecting: Response.Type = Response.self, timeout: TimeAmount? = nil
    ) async throws -> Response {
        let frame = try await callRaw(type: Request.messageType, payload: request.encoded(), timeout: timeout)
        return try frame.decode(Response.self, limits: configuration.limits)
    }

    /// Sends a request of any type with any payload and returns the RESPONSE frame.
    public func callRaw(type: MessageType, payload: ByteBuffer, timeout: TimeAmount? = nil) async throws -> Frame {
        let token = CallToken()
        let handler = self.handler
        let loop = channel.eventLoop
        let timeout = timeout ?? configuration.requestTimeout
        let frame = try await withTaskCancellationHandler {
            try await loop.flatSubmit {
                handler.value.startCall(type: type, payload: payload, opensStream: false, timeout: timeout, token: token)
                    .flatMap { $0.1 }
            }.get()
        } onCancel: {
            loop.execute { handler.value.cancelCall(token) }
        }
        return try Self.checked(frame, limits: configuration.limits)
    }

    /// Sends `request`, which opens a stream, lets `body` write the stream's bytes, ends the
    /// stream and waits for the response. If `body` throws, the request is cancelled.
    public func upload<Request: WireMessage, Response: WireMessage>(
        _ request: Request, expecting: Response.Type = Response.self, timeout: TimeAmount? = nil,
        body: (WireStreamWriter) async throws -> Void
    ) async throws -> Response {
        let token = CallToken()
        let handler = self.handler
        let loop = channel.eventLoop
        let timeout = timeout ?? configuration.requestTimeout
        let payload = request.encoded()
        let frame = try await withTaskCancellationHandler {
            let (id, answer) = try await loop.flatSubmit {
                handler.value.startCall(type: Request.messageType, payload: payload, opensStream: true, timeout: timeout, token: token)
            }.get()
            let chunkSize = max(1, min(configuration.chunkSize, Int(configuration.limits.maxFrameSize)))
            do {
                try await body(WireStreamWriter(connection: self, streamID: id, chunkSize: chunkSize))
            } catch {
                loop.execute { handler.value.cancelCall(token) }
                // The answer may have come first (the receiver failed the stream): report it.
                if let frame = try? await answer.get(), frame.kind == .error {
                    _ = try Self.checked(frame, limits: configuration.limits)
                }
                throw error
            }
            loop.execute { handler.value.endStream(id, abort: false) }
            return try await answer.get()
        } onCancel: {
            loop.execute { handler.value.cancelCall(token) }
        }
        return try Self.checked(frame, limits: configuration.limits).decode(Response.self, limits: configuration.limits)
    }

    func sendChunk(streamID: UInt64, _ chunk: ByteBuffer) async throws {
        let handler = self.handler
        try await channel.eventLoop.flatSubmit { handler.value.sendChunk(streamID: streamID, chunk) }.get()
    }

    /// Pushes an event to the peer.
    public func send<Event: WireMessage>(event: Event) async throws {
        let handler = self.handler
        let payload = event.encoded()
        try await channel.eventLoop.flatSubmit { handler.value.sendEvent(type: Event.messageType, payload: payload) }.get()
    }

    /// Sends a PING and returns how long the PONG took.
    public func ping(timeout: TimeAmount? = nil) async throws -> Duration {
        let handler = self.handler
        let start = ContinuousClock.now
        let loop = channel.eventLoop
        let timeout = timeout ?? configuration.pingTimeout
        let answered = loop.flatSubmit { handler.value.ping() }
        let expiry = loop.scheduleTask(in: timeout) {}
        let first = loop.makePromise(of: Void.self)
        answered.cascade(to: first)
        expiry.futureResult.whenSuccess { first.fail(WireConnectionError.timeout(timeout)) }
        defer { expiry.cancel() }
        try await first.futureResult.get()
        return ContinuousClock.now - start
    }

    /// Sends GOAWAY, lets the requests in flight finish, and closes.
    public func close(reason: String = "closing") async {
        let handler = self.handler
        _ = try? await channel.eventLoop.flatSubmit { handler.value.shutdown(reason: reason) }.get()
    }

    /// Sends GOAWAY (on the connection's event loop) and returns, with the future of the
    /// close that follows once the requests in flight are answered.
    func beginClose(reason: String) async -> EventLoopFuture<Void>? {
        let handler = self.handler
        return try? await channel.eventLoop.submit { handler.value.shutdown(reason: reason) }.get()
    }

    /// Waits until the connection is closed.
    public func closed() async {
        _ = try? await channel.closeFuture.get()
    }

    static func checked(_ frame: Frame, limits: WireLimits) throws -> Frame {
        guard frame.kind == .error else { return frame }
        guard let info = try? frame.decode(ErrorInfo.self, limits: limits) else {
            throw WireFailure(.malformed, "the peer answered with an ERROR that does not decode")
        }
        throw WireFailure(WireErrorCode(rawValue: info.code) ?? .internalError, info.message, field: info.field)
    }
}
