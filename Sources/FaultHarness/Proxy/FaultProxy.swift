import SeededRandom
public import FaultHarness
import NIOConcurrencyHelpers
public import NIOCore
import NIOPosix

/// A TCP proxy that makes one link faulty, as Toxiproxy does: every connection accepted on
/// its port is joined to a connection to the upstream server, and the bytes each way are
/// delayed, rate-limited, sliced, held or cut by the link's current `LinkFaults`. It works on
/// bytes, so mutual TLS passes through it end to end. Faults change at any time and apply to
/// the connections already open; `reset()` ends those connections with a TCP reset.
public final class FaultProxy: Sendable {
    /// What the proxy has carried, for the harness's report.
    public struct Counters: Sendable, Equatable {
        public var connections = 0
        public var open = 0
        public var bytesToServer: UInt64 = 0
        public var bytesToClient: UInt64 = 0
        public var resets = 0
        public var closedByLimit = 0
    }

    struct State {
        var faults: LinkFaults = .healthy
        var links: [ObjectIdentifier: ProxyLink] = [:]
        var listener: (any Channel)?
        var counters = Counters()
        var nextIndex: UInt64 = 0
    }

    public let name: String
    public let upstreamHost: String
    public let upstreamPort: Int
    private let group: any EventLoopGroup
    private let random: SplitMix64
    let state = NIOLockedValueBox(State())

    /// A proxy to `upstreamHost:upstreamPort`; `seed` decides the jitter of every connection.
    public init(name: String, upstreamHost: String, upstreamPort: Int, seed: UInt64, group: (any EventLoopGroup)? = nil) {
        self.name = name
        self.upstreamHost = upstreamHost
        self.upstreamPort = upstreamPort
        self.random = SplitMix64(seed: seed)
        self.group = group ?? MultiThreadedEventLoopGroup.singleton
    }

    /// Listens on `host:port` (0: any free port) and returns the port bound.
    public func start(host: String = "127.0.0.1", port: Int = 0) async throws -> Int {
        let listener = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.autoRead, value: false)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { self.accepted(channel) }
            }
            .bind(host: host, port: port).get()
        state.withLockedValue { $0.listener = listener }
        return listener.localAddress?.port ?? 0
    }

    /// The faults now.
    public var faults: LinkFaults { state.withLockedValue { $0.faults } }

    /// Changes the faults, for the connections open now and those to come; returns when
    /// every open connection has them.
    public func set(_ faults: LinkFaults) async {
        let links = state.withLockedValue { state -> [ProxyLink] in
            state.faults = faults
            return Array(state.links.values)
        }
        for link in links { try? await link.loop.submit { link.refresh(faults) }.get() }
    }

    /// Ends every open connection with a TCP reset, both ways; new ones are accepted.
    public func reset() {
        let links = state.withLockedValue { state -> [ProxyLink] in
            state.counters.resets += state.links.count
            return Array(state.links.values)
        }
        for link in links { link.loop.execute { link.reset() } }
    }

    public var counters: Counters { state.withLockedValue { $0.counters } }

    /// Stops listening and closes every connection.
    public func stop() async {
        let (listener, links) = state.withLockedValue { state in (state.listener, Array(state.links.values)) }
        try? await listener?.close()
        for link in links { link.loop.execute { link.close() } }
    }

    // MARK: Connections

    /// A client connected: dial the upstream on the same event loop and join the two.
    private func accepted(_ client: any Channel) {
        let (faults, index) = state.withLockedValue { state -> (LinkFaults, UInt64) in
            state.nextIndex += 1
            state.counters.connections += 1
            state.counters.open += 1
            return (state.faults, state.nextIndex)
        }
        let link = ProxyLink(proxy: self, client: client, faults: faults, random: random.fork(index))
        let key = ObjectIdentifier(link)
        state.withLockedValue { $0.links[key] = link }
        client.closeFuture.whenComplete { [self] _ in
            state.withLockedValue { state in
                if state.links.removeValue(forKey: key) != nil { state.counters.open -= 1 }
            }
        }
        try? client.pipeline.syncOperations.addHandler(ForwardHandler(link: link, side: .client))
        ClientBootstrap(group: client.eventLoop)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.autoRead, value: false)
            .connectTimeout(.seconds(5))
            .channelInitializer { server in
                server.eventLoop.makeCompletedFuture {
                    try server.pipeline.syncOperations.addHandler(ForwardHandler(link: link, side: .server))
                }
            }
            .connect(host: upstreamHost, port: upstreamPort)
            .whenComplete { result in
                switch result {
                case .success(let server): link.joined(server)
                case .failure: link.close()
                }
            }
    }

    func delivered(_ bytes: Int, to side: ProxyLink.Side) {
        state.withLockedValue { state in
            if side == .server { state.counters.bytesToServer += UInt64(bytes) } else { state.counters.bytesToClient += UInt64(bytes) }
        }
    }

    func closedByLimit() { state.withLockedValue { $0.counters.closedByLimit += 1 } }
}

/// One proxied connection: the client's channel, the upstream's, and what is on the way each
/// way. Everything runs on the client channel's event loop (the upstream is dialled on it).
final class ProxyLink: @unchecked Sendable {
    enum Side { case client, server }

    /// One direction: the bytes read from `from` and not yet written to the other side.
    struct Direction {
        var planner: DeliveryPlanner
        var faults: DirectionFaults
        /// Delivered in order when their time comes.
        var queue = CircularBuffer<(buffer: ByteBuffer, time: Double, closeAfter: Bool)>()
        /// Read while blackholed; planned when the blackhole is lifted.
        var held: [ByteBuffer] = []
        var queuedBytes = 0
        /// The sender closed its side; passed on after what is queued and held.
        var senderClosed = false
        var timer: Scheduled<Void>?
    }

    let loop: any EventLoop
    private weak var proxy: FaultProxy?
    private let client: any Channel
    private var server: (any Channel)?
    private var toServer: Direction
    private var toClient: Direction
    private var closed = false
    /// Reading stops while this many bytes wait one way (backpressure, as a full TCP window).
    private static let highWater = 4 << 20

    init(proxy: FaultProxy, client: any Channel, faults: LinkFaults, random: SplitMix64) {
        self.proxy = proxy
        self.client = client
        self.loop = client.eventLoop
        toServer = Direction(planner: DeliveryPlanner(random: random.fork(1)), faults: faults.toServer)
        toClient = Direction(planner: DeliveryPlanner(random: random.fork(2)), faults: faults.toClient)
    }

    private static func now() -> Double { Double(NIODeadline.now().uptimeNanoseconds) / 1e9 }

    /// The upstream connection is up: start reading both sides.
    func joined(_ server: any Channel) {
        loop.preconditionInEventLoop()
        guard !closed else { server.close(promise: nil); return }
        self.server = server
        pump(from: .client)
        pump(from: .server)
        updateReading()
    }

    /// `bytes` were read from `side`.
    func read(_ bytes: ByteBuffer, from side: Side) {
        loop.preconditionInEventLoop()
        guard !closed else { return }
        withDirection(from: side) { direction in
            if direction.faults.blackholed {
                direction.held.append(bytes)
                direction.queuedBytes += bytes.readableBytes
            } else {
                plan(bytes, into: &direction)
            }
        }
        pump(from: side)
        updateReading()
    }

    /// `side` closed its connection (or it failed).
    func sideClosed(_ side: Side) {
        guard !closed else { return }
        withDirection(from: side) { $0.senderClosed = true }
        pump(from: side)
    }

    func refresh(_ faults: LinkFaults) {
        guard !closed else { return }
        for side in [Side.client, .server] {
            withDirection(from: side) { direction in
                direction.faults = side == .client ? faults.toServer : faults.toClient
                if !direction.faults.blackholed, !direction.held.isEmpty {
                    let held = direction.held
                    direction.held = []
                    direction.queuedBytes -= held.reduce(0) { $0 + $1.readableBytes }
                    for buffer in held { plan(buffer, into: &direction) }
                }
            }
            pump(from: side)
        }
        updateReading()
    }

    /// Both ends see a TCP reset: linger 0, then close.
    func reset() {
        guard !closed else { return }
        for channel in [client, server].compactMap({ $0 }) {
            _ = (channel as? any SocketOptionProvider)?.setSoLinger(linger(l_onoff: 1, l_linger: 0))
        }
        close()
    }

    func close() {
        guard !closed else { return }
        closed = true
        toServer.timer?.cancel()
        toClient.timer?.cancel()
        client.close(promise: nil)
        server?.close(promise: nil)
    }

    // MARK: Delivery

    private func withDirection(from side: Side, _ body: (inout Direction) -> Void) {
        if side == .client { body(&toServer) } else { body(&toClient) }
    }

    private func plan(_ bytes: ByteBuffer, into direction: inout Direction) {
        let plan = direction.planner.plan(size: bytes.readableBytes, at: Self.now(), faults: direction.faults)
        for (index, segment) in plan.segments.enumerated() {
            guard let slice = bytes.getSlice(at: bytes.readerIndex + segment.offset, length: segment.length) else { continue }
            direction.queue.append((slice, segment.time, plan.closeAfter && index == plan.segments.count - 1))
            direction.queuedBytes += segment.length
        }
        if plan.segments.isEmpty, plan.closeAfter { direction.queue.append((ByteBuffer(), Self.now(), true)) }
    }

    /// Writes what is due from `side` to the other side, and arms a timer for the rest. The
    /// writes come after the direction is updated: a write may call back into the link.
    private func pump(from side: Side) {
        guard !closed else { return }
        let target: (any Channel)? = side == .client ? server : client
        var due: [ByteBuffer] = []
        var closeNow = false, limitReached = false
        var next: Double?
        let now = Self.now()
        withDirection(from: side) { direction in
            direction.timer?.cancel()
            direction.timer = nil
            guard target != nil else { return }
            while let head = direction.queue.first, head.time <= now {
                direction.queue.removeFirst()
                direction.queuedBytes -= head.buffer.readableBytes
                if head.buffer.readableBytes > 0 { due.append(head.buffer) }
                if head.closeAfter { limitReached = true; break }
            }
            if limitReached { return }
            if let head = direction.queue.first {
                next = head.time
            } else if direction.senderClosed, direction.held.isEmpty, !direction.faults.blackholed {
                closeNow = true
            }
        }
        if let next {
            let delay = TimeAmount.nanoseconds(Int64(max(0, (next - now) * 1e9)))
            let timer = loop.scheduleTask(in: delay) { [self] in pump(from: side) }
            withDirection(from: side) { $0.timer = timer }
        }
        if let target, !due.isEmpty {
            for buffer in due { target.write(buffer, promise: nil) }
            target.flush()
            proxy?.delivered(due.reduce(0) { $0 + $1.readableBytes }, to: side == .client ? .server : .client)
        }
        if limitReached {
            proxy?.closedByLimit()
            close()
        } else if closeNow {
            close()
        } else {
            updateReading()
        }
    }

    /// Reads a side only while the other can take more and the way is not full.
    func updateReading() {
        guard !closed, let server else { return }
        // A blackholed way is not read either: the sender's own buffers fill, as behind a cut.
        let readClient = toServer.queuedBytes < Self.highWater && server.isWritable && !toServer.faults.blackholed
        let readServer = toClient.queuedBytes < Self.highWater && client.isWritable && !toClient.faults.blackholed
        client.setOption(ChannelOptions.autoRead, value: readClient).whenFailure { _ in }
        server.setOption(ChannelOptions.autoRead, value: readServer).whenFailure { _ in }
    }
}

/// Passes what one side reads to the link, and the side's end and writability.
final class ForwardHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    let link: ProxyLink
    let side: ProxyLink.Side

    init(link: ProxyLink, side: ProxyLink.Side) {
        self.link = link
        self.side = side
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        link.read(unwrapInboundIn(data), from: side)
    }

    func channelInactive(context: ChannelHandlerContext) {
        link.sideClosed(side)
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        link.updateReading()
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        link.sideClosed(side)
        context.close(promise: nil)
    }
}
