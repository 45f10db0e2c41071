public import Logging
public import NIOCore
import NIOConcurrencyHelpers
import NIOPosix
public import ServiceLifecycle
public import WireCodec

/// Listens for Nestor connections and serves their requests. As a swift-service-lifecycle
/// `Service`, it shuts down gracefully: it stops accepting, sends GOAWAY on every connection,
/// lets the requests in flight finish (up to the grace period) and closes.
public final class WireServer: Service, Sendable {
    private struct State {
        var listener: (any Channel)?
        var connections: [ObjectIdentifier: WireConnection] = [:]
        var shuttingDown = false
    }

    /// The server's state, shared with the listener's channel initializer.
    private final class Registry: Sendable {
        let state = NIOLockedValueBox(State())

        func register(_ connection: WireConnection) {
            let key = ObjectIdentifier(connection)
            let refuse = state.withLockedValue { state -> Bool in
                if state.shuttingDown { return true }
                state.connections[key] = connection
                return false
            }
            if refuse {
                Task { await connection.close(reason: "the server is shutting down") }
                return
            }
            connection.channel.closeFuture.whenComplete { [state] _ in
                _ = state.withLockedValue { $0.connections.removeValue(forKey: key) }
            }
        }
    }

    public let host: String
    public let port: Int
    private let endpoint: WireEndpoint
    private let group: any EventLoopGroup
    private let registry = Registry()
    private var state: NIOLockedValueBox<State> { registry.state }

    /// - Parameters:
    ///   - port: 0 picks a free port; `start()` returns the address bound.
    public init(host: String = "127.0.0.1", port: Int, tls: TLSIdentity, service: any WireService,
                configuration: WireConfiguration = WireConfiguration(), policy: RolePolicy = .nestor,
                logger: Logger = Logger(label: "nestor.wire.server"),
                group: (any EventLoopGroup)? = nil) throws {
        self.host = host
        self.port = port
        self.endpoint = try WireEndpoint(tls: tls, server: true, configuration: configuration, policy: policy,
                                         service: service, logger: logger)
        self.group = group ?? MultiThreadedEventLoopGroup.singleton
    }

    /// Binds the listening socket (once) and returns its address.
    @discardableResult
    public func start() async throws -> SocketAddress {
        if let listener = state.withLockedValue({ $0.listener }), let address = listener.localAddress { return address }
        let endpoint = self.endpoint
        let listener = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: ChannelOptions.Types.WriteBufferWaterMark(low: 256 << 10, high: 1 << 20))
            .childChannelInitializer { [registry] channel in
                channel.eventLoop.makeCompletedFuture {
                    let ready = try endpoint.configure(channel, side: .server)
                    ready.whenSuccess { connection in registry.register(connection) }
                }
            }
            .bind(host: host, port: port).get()
        state.withLockedValue { $0.listener = listener }
        let address = listener.localAddress!
        endpoint.logger.info("listening on \(address)")
        return address
    }

    /// The connections open now.
    public var connections: [WireConnection] { state.withLockedValue { Array($0.connections.values) } }

    /// Pushes `event` to every open connection whose peer has one of `roles` (all when nil).
    public func broadcast<Event: WireMessage>(_ event: Event, to roles: Set<Role>? = nil) async {
        for connection in connections where roles?.contains(connection.peer.role) ?? true {
            try? await connection.send(event: event)
        }
    }

    /// Runs until a graceful shutdown is requested (or the task is cancelled), then shuts down.
    public func run() async throws {
        try await start()
        try? await gracefulShutdown()
        await shutdown(reason: "the server is shutting down")
    }

    /// Stops accepting connections, sends GOAWAY on each, and waits until all are closed.
    public func shutdown(reason: String = "the server is shutting down") async {
        let (listener, connections) = state.withLockedValue { state in
            state.shuttingDown = true
            let listener = state.listener
            return (listener, Array(state.connections.values))
        }
        // Every connection has sent its GOAWAY before the listener closes: once no new
        // connection is accepted, no open one takes a new request either.
        var closing: [EventLoopFuture<Void>] = []
        for connection in connections {
            if let closed = await connection.beginClose(reason: reason) { closing.append(closed) }
        }
        try? await listener?.close()
        for closed in closing { _ = try? await closed.get() }
        endpoint.logger.info("stopped (\(connections.count) connections closed)")
    }
}

/// Opens connections to Nestor servers.
public enum WireClient {
    /// Connects, completes the TLS handshake and the preamble exchange, and returns the open
    /// connection. The server's verified identity must be `server` (else the handshake fails
    /// with a message naming what it presented). `service`, when given, serves requests the
    /// server sends back.
    public static func connect(host: String, port: Int, tls: TLSIdentity, server: ExpectedPeer,
                               configuration: WireConfiguration = WireConfiguration(), policy: RolePolicy = .nestor,
                               service: (any WireService)? = nil,
                               logger: Logger = Logger(label: "nestor.wire.client"),
                               connectTimeout: TimeAmount = .seconds(10),
                               group: (any EventLoopGroup)? = nil) async throws -> WireConnection {
        let endpoint = try WireEndpoint(tls: tls, server: false, configuration: configuration, policy: policy,
                                        service: service, logger: logger, expectedPeer: server)
        let ready = try await ClientBootstrap(group: group ?? MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(connectTimeout)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.writeBufferWaterMark, value: ChannelOptions.Types.WriteBufferWaterMark(low: 256 << 10, high: 1 << 20))
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try endpoint.configure(channel, side: .client)
                }
            }
        let loop = ready.eventLoop
        let timeout = loop.scheduleTask(in: connectTimeout + configuration.preambleTimeout) {}
        let first = loop.makePromise(of: WireConnection.self)
        ready.cascade(to: first)
        timeout.futureResult.whenSuccess {
            first.fail(WireConnectionError.handshake("no handshake and preamble from \(host):\(port) in time"))
        }
        defer { timeout.cancel() }
        return try await first.futureResult.get()
    }
}
