import FaultHarness
import Foundation
import Logging
import NIOCore
import Protos
import Wire
import WireCodec

/// One identity's connection to one server, opened when first needed and again after it
/// breaks. Every call has a deadline; the caller learns whether the request was answered,
/// refused, failed before it was sent, or lost on the way (unknown).
actor PeerLink {
    let identity: PeerIdentity
    let tls: TLSIdentity
    let expected: ExpectedPeer
    private var port: Int
    private var connection: WireConnection?
    /// Bumped whenever the connection is dropped, so a connection opened for an older
    /// generation is closed instead of used.
    private var generation = 0
    private let logger: Logger

    init(identity: PeerIdentity, pkiDirectory: String, port: Int, expected: ExpectedPeer) throws {
        self.init(identity: identity, tls: try Self.credentials(identity, pkiDirectory: pkiDirectory), port: port, expected: expected)
    }

    init(identity: PeerIdentity, tls: TLSIdentity, port: Int, expected: ExpectedPeer) {
        self.identity = identity
        self.tls = tls
        self.port = port
        self.expected = expected
        var logger = Logger(label: "nestor.harness.client")
        logger.logLevel = .critical
        self.logger = logger
    }

    static func credentials(_ identity: PeerIdentity, pkiDirectory: String) throws -> TLSIdentity {
        do {
            return try TLSIdentity.load(identity: identity, pkiDirectory: pkiDirectory, certificate: nil, key: nil, ca: nil)
        } catch {
            throw HarnessError("cannot load the credentials of \(identity): \(error)")
        }
    }

    /// Points the link at another port (a restarted agent listens on a new one).
    func retarget(_ port: Int) async {
        guard port != self.port else { return }
        self.port = port
        await drop()
    }

    func drop() async {
        let old = connection
        connection = nil
        generation += 1
        if let old { Task { await old.close(reason: "harness link dropped") } }
    }

    /// Sends `request` and waits at most `timeout` for its answer, whatever the peer does (a
    /// paused peer accepts TCP connections and then says nothing).
    func call<Request: WireMessage, Response: WireMessage>(_ request: Request, expecting: Response.Type,
                                                           timeout: Duration) async -> CallOutcome<Response> {
        let attempt = Task { await self.attempt(request, expecting: Response.self, timeout: timeout) }
        let outcome = await FirstOf.run(within: timeout + .milliseconds(100), { await attempt.value }) { () -> CallOutcome<Response> in
            .lost("no answer within \(timeout.milliseconds) ms")
        }
        if case .lost = outcome { await drop() }
        return outcome
    }

    private func attempt<Request: WireMessage, Response: WireMessage>(_ request: Request, expecting: Response.Type,
                                                                      timeout: Duration) async -> CallOutcome<Response> {
        let link: WireConnection
        if let connection, connection.isActive {
            link = connection
        } else {
            connection = nil
            generation += 1
            let mine = generation
            do {
                var configuration = WireConfiguration()
                configuration.preambleTimeout = .milliseconds(timeout.milliseconds)
                let opened = try await WireClient.connect(host: "127.0.0.1", port: port, tls: tls, server: expected, configuration: configuration,
                                                          logger: logger, connectTimeout: .milliseconds(timeout.milliseconds))
                guard mine == generation else {
                    // Superseded while it was being opened (dropped or retargeted): not used.
                    Task { await opened.close(reason: "superseded") }
                    return .lost("the link was dropped while it was being opened")
                }
                connection = opened
                link = opened
            } catch {
                return .notSent("cannot reach 127.0.0.1:\(port): \(error)")
            }
        }
        do {
            let answer = try await link.call(request, expecting: Response.self, timeout: .milliseconds(timeout.milliseconds))
            return .answered(answer)
        } catch let failure as WireFailure {
            return .refused(failure)
        } catch {
            await drop()
            return .lost("\(error)")
        }
    }
}

/// The first of a piece of work and a deadline: the work's result when it comes in time, else
/// the fallback's (the work goes on by itself and its result is dropped).
enum FirstOf {
    static func run<T: Sendable>(within timeout: Duration, _ work: @escaping @Sendable () async -> T,
                                 orElse fallback: @escaping @Sendable () -> T) async -> T {
        let gate = Gate<T>()
        return await withCheckedContinuation { continuation in
            gate.arm(continuation)
            Task { gate.open(await work()) }
            Task {
                try? await Task.sleep(for: timeout)
                gate.open(fallback())
            }
        }
    }

    /// Resumes its continuation once, with the first value it is given.
    final class Gate<T: Sendable>: @unchecked Sendable {
        private let lock = NSLock()
        private var continuation: CheckedContinuation<T, Never>?
        private var early: T?

        func arm(_ continuation: CheckedContinuation<T, Never>) {
            lock.lock()
            if let early {
                self.early = nil
                lock.unlock()
                continuation.resume(returning: early)
            } else {
                self.continuation = continuation
                lock.unlock()
            }
        }

        func open(_ value: T) {
            lock.lock()
            if let continuation {
                self.continuation = nil
                lock.unlock()
                continuation.resume(returning: value)
            } else {
                if early == nil { early = value }
                lock.unlock()
            }
        }
    }
}

/// How a call ended, as a client can know it.
enum CallOutcome<Response: Sendable>: Sendable {
    case answered(Response)
    /// The server answered with an error.
    case refused(WireFailure)
    /// The request never left: no connection could be opened.
    case notSent(String)
    /// Sent, and no answer came (timeout, connection lost): it may or may not have happened.
    case lost(String)

    var answer: Response? { if case .answered(let response) = self { response } else { nil } }

    /// The outcome in the history's terms. The server's decisions (bad input, not found,
    /// already exists, a failed precondition such as a quota or placement, denied) are
    /// refusals; an error that says the server could not decide (unavailable, conflict,
    /// shutting down) is a failure: the change was not made; a lost request is unknown.
    var historyOutcome: HistoryEntry.Outcome {
        switch self {
        case .answered: return .ok
        case .notSent(let reason): return .failed(reason)
        case .lost: return .unknown
        case .refused(let failure):
            switch failure.code {
            case .invalidArgument, .notFound, .alreadyExists, .failedPrecondition, .permissionDenied, .tooManyRequests:
                return .refused(failure.message)
            case .unavailable, .conflict, .shuttingDown:
                return .failed(failure.message)
            default:
                return .unknown
            }
        }
    }
}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1_000 + components.attoseconds / 1_000_000_000_000_000 }
}
