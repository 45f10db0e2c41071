import SeededRandom
import FaultHarness
import FaultProxy
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// One end of a TCP connection in a test: what it has read, and whether it has closed.
final class Peer: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    private let state = NIOLockedValueBox((bytes: [UInt8](), closed: false))
    /// The connection, known from the moment the handler is added (before it is active).
    let channel: any Channel

    init(channel: any Channel) { self.channel = channel }

    var bytes: [UInt8] { state.withLockedValue { $0.bytes } }
    var closed: Bool { state.withLockedValue { $0.closed } }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        state.withLockedValue { $0.bytes += buffer.readableBytesView }
    }

    func channelInactive(context: ChannelHandlerContext) { state.withLockedValue { $0.closed = true } }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }

    func send(_ bytes: [UInt8]) {
        channel.writeAndFlush(ByteBuffer(bytes: bytes), promise: nil)
    }
}

/// A server that keeps a `Peer` for every connection, and a proxy in front of it.
final class ProxiedServer: Sendable {
    let proxy: FaultProxy
    let proxyPort: Int
    private let listener: any Channel
    private let accepted = NIOLockedValueBox([Peer]())

    init(faults: LinkFaults = .healthy) async throws {
        let accepted = self.accepted
        listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let peer = Peer(channel: channel)
                    accepted.withLockedValue { $0.append(peer) }
                    try channel.pipeline.syncOperations.addHandler(peer)
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        proxy = FaultProxy(name: "test", upstreamHost: "127.0.0.1", upstreamPort: listener.localAddress!.port!, seed: 42)
        await proxy.set(faults)
        proxyPort = try await proxy.start()
    }

    var servers: [Peer] { accepted.withLockedValue { $0 } }

    /// A client connected through the proxy, once the server has its end.
    func connect() async throws -> (client: Peer, server: Peer) {
        let before = servers.count
        let made = NIOLockedValueBox(Peer?.none)
        _ = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let peer = Peer(channel: channel)
                    made.withLockedValue { $0 = peer }
                    try channel.pipeline.syncOperations.addHandler(peer)
                }
            }
            .connect(host: "127.0.0.1", port: proxyPort).get()
        let client = try #require(made.withLockedValue { $0 })
        try await until("the server accepted the proxied connection") { self.servers.count > before }
        return (client, servers[before])
    }

    func stop() async {
        await proxy.stop()
        try? await listener.close()
    }
}

/// Waits until `condition` holds (checked every 10 ms), at most `seconds`.
func until(_ what: String, seconds: Double = 20, _ condition: @escaping @Sendable () -> Bool) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() {
        guard Date() < deadline else { throw ProxyTestFailure("timed out waiting for: \(what)") }
        try await Task.sleep(for: .milliseconds(10))
    }
}

struct ProxyTestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var random = SplitMix64(seed: seed)
    return (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
}

/// The fault proxy on real loopback sockets: what it injects, and that it loses nothing it
/// was not told to.
@Suite(.serialized) struct FaultProxyTests {
    @Test(arguments: [DirectionFaults.healthy, DirectionFaults(sliceBytes: 7), DirectionFaults(latencyMillis: 2, jitterMillis: 2, sliceBytes: 1000)])
    func everyByteArrivesInOrderBothWays(_ faults: DirectionFaults) async throws {
        let proxied = try await ProxiedServer(faults: LinkFaults(both: faults))
        let (client, server) = try await proxied.connect()
        let up = randomBytes(faults.sliceBytes == 7 ? 64 << 10 : 1 << 20, seed: 1), down = randomBytes(200_000, seed: 2)
        client.send(up)
        server.send(down)
        try await until("both ways delivered") { server.bytes.count >= up.count && client.bytes.count >= down.count }
        #expect(server.bytes == up)
        #expect(client.bytes == down)
        #expect(proxied.proxy.counters.bytesToServer == UInt64(up.count))
        await proxied.stop()
    }

    @Test func latencyDelaysEveryCrossing() async throws {
        let proxied = try await ProxiedServer(faults: LinkFaults(both: .init(latencyMillis: 150)))
        let (client, server) = try await proxied.connect()
        let start = Date()
        client.send([1])
        try await until("the ping crossed") { server.bytes.count == 1 }
        server.send([2])
        try await until("the pong crossed") { client.bytes.count == 1 }
        // Two crossings of at least 150 ms each: a lower bound, whatever the machine's load.
        #expect(Date().timeIntervalSince(start) >= 0.3)
        await proxied.stop()
    }

    @Test func theBandwidthLimitPacesTheTransfer() async throws {
        let proxied = try await ProxiedServer(faults: LinkFaults(toServer: .init(bytesPerSecond: 400_000)))
        let (client, server) = try await proxied.connect()
        let start = Date()
        client.send(randomBytes(200_000, seed: 3))
        try await until("the transfer arrived") { server.bytes.count == 200_000 }
        #expect(Date().timeIntervalSince(start) >= 0.5, "200 kB at 400 kB/s takes half a second at least")
        await proxied.stop()
    }

    @Test func aOneWayBlackholeHoldsOneDirectionAndLosesNothing() async throws {
        let proxied = try await ProxiedServer()
        let (client, server) = try await proxied.connect()
        await proxied.proxy.set(LinkFaults(toServer: .init(blackholed: true)))
        client.send(Array("held".utf8))
        // The other way still flows: the server is heard, the client is not.
        server.send(Array("heard".utf8))
        try await until("the client heard the server") { client.bytes.count == 5 }
        #expect(server.bytes.isEmpty, "nothing crossed the blackhole")
        #expect(!client.closed && !server.closed)
        await proxied.proxy.set(.healthy)
        try await until("what was held arrived after healing") { server.bytes.count == 4 }
        #expect(server.bytes == Array("held".utf8))
        await proxied.stop()
    }

    @Test func closeAfterBytesLetsThroughTheLimitThenCloses() async throws {
        let proxied = try await ProxiedServer(faults: LinkFaults(toServer: .init(closeAfterBytes: 10)))
        let (client, server) = try await proxied.connect()
        client.send(randomBytes(100, seed: 4))
        try await until("both ends closed") { server.closed && client.closed }
        #expect(server.bytes.count == 10)
        #expect(proxied.proxy.counters.closedByLimit == 1)
        await proxied.stop()
    }

    @Test func resetEndsTheConnectionsAndNewOnesWork() async throws {
        let proxied = try await ProxiedServer()
        let (client, server) = try await proxied.connect()
        client.send([1, 2, 3])
        try await until("the bytes crossed") { server.bytes.count == 3 }
        proxied.proxy.reset()
        try await until("both ends saw the reset") { server.closed && client.closed }
        #expect(proxied.proxy.counters.resets == 1)
        let (again, serverAgain) = try await proxied.connect()
        again.send([4])
        try await until("a new connection works") { serverAgain.bytes == [4] }
        await proxied.stop()
    }
}
