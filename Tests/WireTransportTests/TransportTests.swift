import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Protos
import Testing
import Wire
import WireBenchKit
import WireCodec

/// The transport's behaviour on real sockets over mutual TLS, with the server in this
/// process so that tests can give it handlers of their own.
@Suite
struct TransportTests {
    struct Fixture {
        let pki: TestPKI
        let server: WireServer
        let port: Int
        let logs: NIOLockedValueBox<[String]>
        let serverIdentity: PeerIdentity

        init(service: any WireService = BenchService.router(), configuration: WireConfiguration = WireConfiguration(),
             identity: PeerIdentity = TestPKI.server) async throws {
            pki = try TestPKI()
            serverIdentity = identity
            if identity != TestPKI.server { try pki.directory.issue(.init(identity: identity, days: 2)) }
            let logs = NIOLockedValueBox([String]())
            self.logs = logs
            let logger = Logger(label: "test.server") { _ in CapturingLogHandler(lines: logs) }
            server = try WireServer(port: 0, tls: try pki.tls(identity), service: service, configuration: configuration, logger: logger)
            port = try await server.start().port!
        }

        func connect(_ identity: PeerIdentity = TestPKI.admin, configuration: WireConfiguration = WireConfiguration(),
                     service: (any WireService)? = nil) async throws -> WireConnection {
            try await WireClient.connect(host: "127.0.0.1", port: port, tls: try pki.tls(identity), server: .identity(serverIdentity),
                                     configuration: configuration, service: service)
        }

        func finish() async {
            await server.shutdown()
            pki.remove()
        }
    }

    /// Holds handlers until released.
    final class Gate: Sendable {
        private let state = NIOLockedValueBox<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))
        func wait() async {
            await withCheckedContinuation { continuation in
                let resume = state.withLockedValue { state -> Bool in
                    if state.open { return true }
                    state.waiters.append(continuation)
                    return false
                }
                if resume { continuation.resume() }
            }
        }
        func open() {
            let waiters = state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
                state.open = true
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.resume() }
        }
    }

    @Test func echoPingAndUploadWithTheServersIdentity() async throws {
        let fixture = try await Fixture()
        let connection = try await fixture.connect()
        #expect(connection.peer == TestPKI.server)
        let answer = try await connection.call(EchoRequest(payload: Array(0..<200)), expecting: EchoResponse.self)
        #expect(answer.payload == Array(0..<200))
        let rtt = try await connection.ping()
        #expect(rtt < .seconds(5))

        var chunk = ByteBuffer()
        for index in 0..<100_003 { chunk.writeInteger(UInt8(truncatingIfNeeded: index * 7)) }
        var expected = StreamChecksum()
        for _ in 0..<40 { expected.update(chunk) }
        let total = UInt64(chunk.readableBytes * 40)
        let response = try await connection.upload(BulkUploadRequest(totalBytes: total), expecting: BulkUploadResponse.self) { writer in
            for _ in 0..<40 { try await writer.write(chunk) }
        }
        #expect(response.receivedBytes == total)
        #expect(response.checksum == expected.final)

        // A response type other than the one expected is a decoding error, not a crash.
        await #expect(throws: WireError.self) {
            _ = try await connection.call(EchoRequest(payload: [1]), expecting: Ack.self)
        }
        await connection.close()
        await fixture.finish()
    }

    @Test func handlersSeeThePeerIdentity() async throws {
        var router = WireRouter()
        router.on(EchoRequest.self) { _, request in EchoResponse(payload: Array(request.peer.uri.utf8)) }
        let fixture = try await Fixture(service: router)
        let tenant = try await fixture.connect(TestPKI.tenant)
        let answer = try await tenant.call(EchoRequest(payload: []), expecting: EchoResponse.self)
        #expect(String(decoding: answer.payload, as: UTF8.self) == "nestor://tenant/acme")
        await tenant.close()
        await fixture.finish()
    }

    @Test func aCallTimesOutAndTheHandlerIsCancelled() async throws {
        let cancelled = NIOLockedValueBox(false)
        let answered = NIOLockedValueBox(false)
        var router = WireRouter()
        router.on(EchoRequest.self) { request, _ in
            do {
                try await Task.sleep(for: .seconds(60))
            } catch {
                cancelled.withLockedValue { $0 = true }
                throw error
            }
            answered.withLockedValue { $0 = true }
            return EchoResponse(payload: request.payload)
        }
        let fixture = try await Fixture(service: router)
        let connection = try await fixture.connect()
        await #expect(throws: WireConnectionError.timeout(.milliseconds(200))) {
            _ = try await connection.call(EchoRequest(payload: [1]), expecting: EchoResponse.self, timeout: .milliseconds(200))
        }
        // The call ended by its timeout, not by the handler's answer.
        #expect(!answered.withLockedValue { $0 })
        // The CANCEL reached the server and cancelled the handler.
        for _ in 0..<500 where !cancelled.withLockedValue({ $0 }) { try await Task.sleep(for: .milliseconds(20)) }
        #expect(cancelled.withLockedValue { $0 })
        // The connection still works.
        #expect(try await connection.ping() < .seconds(5))
        await connection.close()
        await fixture.finish()
    }

    @Test func cancellingTheCallingTaskCancelsTheCall() async throws {
        var router = WireRouter()
        router.on(EchoRequest.self) { request, _ in
            try await Task.sleep(for: .seconds(10))
            return EchoResponse(payload: request.payload)
        }
        let fixture = try await Fixture(service: router)
        let connection = try await fixture.connect()
        let task = Task { try await connection.call(EchoRequest(payload: [1]), expecting: EchoResponse.self) }
        try await Task.sleep(for: .milliseconds(100))
        task.cancel()
        await #expect(throws: CancellationError.self) { _ = try await task.value }
        await connection.close()
        await fixture.finish()
    }

    @Test func gracefulShutdownFinishesRequestsInFlightAndRefusesNewOnes() async throws {
        let gate = Gate()
        let started = NIOLockedValueBox(0)
        var router = WireRouter()
        router.on(EchoRequest.self) { request, _ in
            started.withLockedValue { $0 += 1 }
            await gate.wait()
            return EchoResponse(payload: request.payload)
        }
        // A grace period far beyond the test's own waits: what is tested is that a request in
        // flight is finished, not how long the server waits for it (a loaded machine can
        // delay this test's tasks by seconds).
        var configuration = WireConfiguration()
        configuration.shutdownGrace = .seconds(120)
        let fixture = try await Fixture(service: router, configuration: configuration)
        let connection = try await fixture.connect()
        let inFlight = Task { try await connection.call(EchoRequest(payload: [5]), expecting: EchoResponse.self) }
        while started.withLockedValue({ $0 }) == 0 { try await Task.sleep(for: .milliseconds(10)) }
        let shutdown = Task { await fixture.server.shutdown() }
        // New connections are refused: the listener is closed.
        var refusedConnection = false
        var attempts = 0
        let loopStart = ContinuousClock.now
        for _ in 0..<100 where !refusedConnection {
            attempts += 1
            do {
                let late = try await fixture.connect()
                await late.close()
                try await Task.sleep(for: .milliseconds(50))
            } catch {
                refusedConnection = true
            }
        }
        #expect(refusedConnection)
        // The listener closes after every connection has sent its GOAWAY: a new call on this
        // connection now fails without reaching a handler (or is refused by the server).
        do {
            _ = try await connection.call(EchoRequest(payload: [6]), expecting: EchoResponse.self)
            Issue.record("a request was accepted after GOAWAY")
        } catch let error as WireConnectionError {
            guard case .goaway(let code, _) = error else { Issue.record("unexpected \(error)"); return }
            #expect(code == .shuttingDown)
        } catch let failure as WireFailure {
            // The request crossed the GOAWAY on the wire: the server refused it.
            #expect(failure.code == .shuttingDown)
        }
        let loopTime = ContinuousClock.now - loopStart
        gate.open()
        do {
            #expect(try await inFlight.value.payload == [5])
        } catch {
            Issue.record("the request in flight failed: \(error); \(attempts) connection attempts in \(loopTime)")
        }
        await shutdown.value
        await connection.closed()
        #expect(!connection.isActive)
        fixture.pki.remove()
    }

    @Test func serverPushesEventsToClients() async throws {
        let controller = PeerIdentity(role: .controller, name: "ctl")
        let fixture = try await Fixture(identity: controller)
        let connection = try await fixture.connect()
        #expect(connection.peer == controller)
        while fixture.server.connections.isEmpty { try await Task.sleep(for: .milliseconds(10)) }
        let event = EventNotice(event: ClusterEvent(sequence: 7, timeMillis: 1, kind: "blade.up", subject: "blade-1", message: "up"))
        await fixture.server.broadcast(event)
        var iterator = connection.events.makeAsyncIterator()
        let received = try #require(await iterator.next())
        #expect(received.messageType == EventNotice.messageType)
        #expect(received.peer == controller)
        #expect((received.message as? EventNotice) == event)
        await connection.close()
        await fixture.finish()
    }

    @Test func eventsFromARoleNotAllowedToSendThemAreDropped() async throws {
        // The bench server is an agent; EventNotice may only come from a controller.
        let fixture = try await Fixture()
        let connection = try await fixture.connect()
        while fixture.server.connections.isEmpty { try await Task.sleep(for: .milliseconds(10)) }
        await fixture.server.broadcast(EventNotice(event: ClusterEvent(sequence: 1, timeMillis: 1, kind: "k", subject: "s", message: "m")))
        _ = try await connection.ping()
        await connection.close()
        var count = 0
        for await _ in connection.events { count += 1 }
        #expect(count == 0)
        await fixture.finish()
    }

    @Test func aSlowConsumerHoldsTheSenderToTheStreamWindow() async throws {
        let gate = Gate()
        var router = WireRouter()
        router.on(BulkUploadRequest.self) { _, request in
            await gate.wait()
            var checksum = StreamChecksum()
            for try await chunk in request.body! { checksum.update(chunk) }
            return BulkUploadResponse(receivedBytes: checksum.count, checksum: checksum.final)
        }
        var configuration = WireConfiguration()
        configuration.streamWindow = 2 << 20
        configuration.chunkSize = 64 << 10
        let fixture = try await Fixture(service: router, configuration: configuration)
        let connection = try await fixture.connect(configuration: configuration)
        let written = NIOLockedValueBox(0)
        var chunk = ByteBuffer()
        chunk.writeRepeatingByte(0x5A, count: 64 << 10)
        let total = 32 << 20
        let upload = Task { [chunk] in
            try await connection.upload(BulkUploadRequest(totalBytes: UInt64(total)), expecting: BulkUploadResponse.self) { writer in
                for _ in 0..<(total / chunk.readableBytes) {
                    try await writer.write(chunk)
                    written.withLockedValue { $0 += chunk.readableBytes }
                }
            }
        }
        // The receiver has granted its window (2 MiB) and reads nothing: the sender fills the
        // window and then waits.
        let deadline = ContinuousClock.now + .seconds(20)
        while written.withLockedValue({ $0 }) < 2 << 20, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        try await Task.sleep(for: .milliseconds(300))
        let before = written.withLockedValue { $0 }
        #expect(before == 2 << 20)
        gate.open()
        let response = try await upload.value
        #expect(response.receivedBytes == UInt64(total))
        await connection.close()
        await fixture.finish()
    }

    @Test func requestsOverTheInFlightLimitAreRefused() async throws {
        let gate = Gate()
        var router = WireRouter()
        router.on(EchoRequest.self) { request, _ in
            await gate.wait()
            return EchoResponse(payload: request.payload)
        }
        var configuration = WireConfiguration()
        configuration.maxInFlight = 4
        let fixture = try await Fixture(service: router, configuration: configuration)
        let connection = try await fixture.connect()
        let refused = NIOLockedValueBox(0)
        let results = try await withThrowingTaskGroup(of: WireErrorCode?.self) { group in
            for index in 0..<8 {
                group.addTask {
                    do {
                        _ = try await connection.call(EchoRequest(payload: [UInt8(index)]), expecting: EchoResponse.self)
                        return nil
                    } catch let failure as WireFailure {
                        refused.withLockedValue { $0 += 1 }
                        return failure.code
                    }
                }
            }
            // Four handlers hold the gate; the other four are refused. Open it once they are.
            let deadline = ContinuousClock.now + .seconds(20)
            while refused.withLockedValue({ $0 }) < 4, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            gate.open()
            var codes: [WireErrorCode?] = []
            for try await code in group { codes.append(code) }
            return codes
        }
        #expect(results.filter { $0 == nil }.count == 4)
        #expect(results.filter { $0 == .tooManyRequests }.count == 4)
        await connection.close()
        await fixture.finish()
    }

    @Test func theServerCanCallTheClient() async throws {
        let fixture = try await Fixture()
        var clientService = WireRouter()
        clientService.on(EchoRequest.self) { request, _ in EchoResponse(payload: request.payload.reversed()) }
        let connection = try await fixture.connect(service: clientService)
        while fixture.server.connections.isEmpty { try await Task.sleep(for: .milliseconds(10)) }
        let serverSide = try #require(fixture.server.connections.first)
        #expect(serverSide.peer == TestPKI.admin)
        let answer = try await serverSide.call(EchoRequest(payload: [1, 2, 3]), expecting: EchoResponse.self)
        #expect(answer.payload == [3, 2, 1])
        await connection.close()
        await fixture.finish()
    }

    @Test func aRequestTooLargeForThePeerFailsLocally() async throws {
        let fixture = try await Fixture()
        let connection = try await fixture.connect()
        await #expect(throws: WireError.self) {
            _ = try await connection.call(EchoRequest(payload: Array(repeating: 1, count: 2 << 20)), expecting: EchoResponse.self)
        }
        #expect(try await connection.call(EchoRequest(payload: [1]), expecting: EchoResponse.self).payload == [1])
        await connection.close()
        await fixture.finish()
    }

    @Test func anUnansweringPeerIsClosedAfterAKeepAlivePingAndAnAnsweringOneIsKept() async throws {
        // Timeouts of a second: shorter ones make a loaded 2-core machine (other tests' guests
        // and simulations on both cores) look like a peer that does not answer.
        var configuration = WireConfiguration()
        configuration.idleTimeout = .seconds(1)
        configuration.pingTimeout = .seconds(1)
        // The raw client sends its preamble after connecting; the test's own task may be held
        // up between the two while other tests keep both cores busy.
        configuration.preambleTimeout = .seconds(120)
        let fixture = try await Fixture(configuration: configuration)

        // Completes the preamble, then never reads a PING or answers it.
        let silent = try await RawClient.connect(port: fixture.port, caPEM: fixture.pki.caPEM,
                                                 certificate: try fixture.pki.directory.load(TestPKI.admin))
        try await silent.send(Bytes.preamble())
        #expect(await silent.wait(timeout: 10) { $0.closed })
        #expect(silent.frames.contains { $0.kind == .ping })
        #expect(fixture.logs.withLockedValue { $0 }.contains { $0.contains("the peer did not answer a keep-alive ping") })

        // A real client answers the server's pings (and pings back): the idle connection stays.
        let connection = try await fixture.connect(configuration: configuration)
        try await Task.sleep(for: .seconds(4))
        #expect(connection.isActive)
        #expect(try await connection.call(EchoRequest(payload: [3]), expecting: EchoResponse.self).payload == [3])
        await connection.close()
        await fixture.finish()
    }
}
