import Foundation
import Logging
import NIOCore
import NIOPosix
public import NestorPKI
import Protos
public import Wire
public import WireCodec

/// The figures `wire-bench` reports for one protocol stack.
public struct BenchFigures: Codable, Sendable, Equatable {
    public var rttPerSecond: Double
    public var p50Micros: Double
    public var p99Micros: Double
    public var concurrentPerSecond: Double
    public var bulkMiBPerSecond: Double

    public init(rttPerSecond: Double, p50Micros: Double, p99Micros: Double, concurrentPerSecond: Double, bulkMiBPerSecond: Double) {
        self.rttPerSecond = rttPerSecond
        self.p50Micros = p50Micros
        self.p99Micros = p99Micros
        self.concurrentPerSecond = concurrentPerSecond
        self.bulkMiBPerSecond = bulkMiBPerSecond
    }
}

/// How long and how much to measure.
public struct BenchPlan: Sendable, Equatable {
    /// Bytes of the echo request and response payloads.
    public var payloadBytes = 1024
    /// Seconds of sequential round trips, and of concurrent ones.
    public var seconds = 3.0
    /// Round trips before measuring.
    public var warmup = 1000
    public var concurrency = 16
    /// Bytes uploaded by the bulk stream, and the chunk size.
    public var bulkBytes = 256 << 20
    public var chunkBytes = 256 << 10

    public init() {}
}

public struct BenchError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A throwaway PKI for a benchmark run: a CA, a server (`agent/bench-server`) and a client
/// (`admin/bench-client`) credential, written to a temporary directory so that another
/// process (the gRPC peer) can use the same files.
public struct BenchCredentials: Sendable {
    public let directory: PKIDirectory
    public static let server = PeerIdentity(role: .agent, name: "bench-server")
    public static let client = PeerIdentity(role: .admin, name: "bench-client")

    public static func create() throws -> BenchCredentials {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("nestor-wire-bench-\(UUID().uuidString)").path
        let directory = PKIDirectory(path: path)
        try directory.initialize(days: 2)
        try directory.issue(CertificateRequest(identity: server, dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], days: 2))
        try directory.issue(CertificateRequest(identity: client, days: 2))
        return BenchCredentials(directory: directory)
    }

    public func tls(_ identity: PeerIdentity) throws -> TLSIdentity {
        let credential = try directory.load(identity)
        let ca = try directory.loadCA()
        return TLSIdentity(certificatePEM: credential.certificatePEM, privateKeyPEM: credential.privateKeyPEM, caPEM: ca.certificatePEM)
    }

    public func remove() { try? FileManager.default.removeItem(atPath: directory.path) }
}

/// Measures Nestor's protocol on loopback: a server and a client in this process, each on
/// its own event-loop thread, over mutual TLS 1.3.
public enum WireBenchmark {
    public static func run(plan: BenchPlan, credentials: BenchCredentials) async throws -> BenchFigures {
        var logger = Logger(label: "wire-bench")
        logger.logLevel = .warning
        let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var configuration = WireConfiguration()
        configuration.chunkSize = plan.chunkBytes
        let server = try WireServer(port: 0, tls: try credentials.tls(BenchCredentials.server), service: BenchService.router(),
                                    configuration: configuration, logger: logger, group: serverGroup)
        let address = try await server.start()
        let connection = try await WireClient.connect(host: "127.0.0.1", port: address.port!, tls: try credentials.tls(BenchCredentials.client),
                                                      server: .identity(BenchCredentials.server),
                                                      configuration: configuration, logger: logger, group: clientGroup)
        let payload = (0..<plan.payloadBytes).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let request = EchoRequest(payload: payload)
        for _ in 0..<plan.warmup {
            _ = try await connection.call(request, expecting: EchoResponse.self)
        }

        // Sequential round trips, one connection.
        var latencies: [Double] = []
        latencies.reserveCapacity(200_000)
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(plan.seconds)
        let start = clock.now
        while clock.now < deadline {
            let before = clock.now
            let response = try await connection.call(request, expecting: EchoResponse.self)
            latencies.append(Self.micros(clock.now - before))
            guard response.payload.count == payload.count else { throw BenchError("echo returned \(response.payload.count) bytes") }
        }
        let sequentialSeconds = Self.seconds(clock.now - start)
        latencies.sort()

        // Concurrent round trips on the same connection.
        let concurrentStart = clock.now
        let concurrentDeadline = concurrentStart + .seconds(plan.seconds)
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<plan.concurrency {
                group.addTask {
                    var count = 0
                    while clock.now < concurrentDeadline {
                        _ = try await connection.call(request, expecting: EchoResponse.self)
                        count += 1
                    }
                    return count
                }
            }
            return try await group.reduce(0, +)
        }
        let concurrentSeconds = Self.seconds(clock.now - concurrentStart)

        // Bulk: one stream of plan.bulkBytes in chunks, checksummed by the server.
        var chunk = ByteBufferAllocator().buffer(capacity: plan.chunkBytes)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<(plan.chunkBytes / 8) { chunk.writeInteger(generator.next() as UInt64) }
        let chunks = plan.bulkBytes / plan.chunkBytes
        var expected = StreamChecksum()
        for _ in 0..<chunks { expected.update(chunk) }
        let bulkStart = clock.now
        let answer = try await connection.upload(BulkUploadRequest(totalBytes: UInt64(chunks * plan.chunkBytes)),
                                                 expecting: BulkUploadResponse.self, timeout: .seconds(600)) { writer in
            for _ in 0..<chunks { try await writer.write(chunk) }
        }
        let bulkSeconds = Self.seconds(clock.now - bulkStart)
        guard answer.receivedBytes == UInt64(chunks * plan.chunkBytes), answer.checksum == expected.final else {
            throw BenchError("bulk upload arrived damaged: \(answer.receivedBytes) bytes, checksum \(answer.checksum) != \(expected.final)")
        }
        await connection.close()
        await server.shutdown()
        try? await serverGroup.shutdownGracefully()
        try? await clientGroup.shutdownGracefully()

        return BenchFigures(
            rttPerSecond: Double(latencies.count) / sequentialSeconds,
            p50Micros: Self.percentile(latencies, 0.50),
            p99Micros: Self.percentile(latencies, 0.99),
            concurrentPerSecond: Double(total) / concurrentSeconds,
            bulkMiBPerSecond: Double(chunks * plan.chunkBytes) / Double(1 << 20) / bulkSeconds)
    }

    static func micros(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1e6 + Double(duration.components.attoseconds) / 1e12
    }

    static func seconds(_ duration: Duration) -> Double { micros(duration) / 1e6 }

    /// The value below which `fraction` of the sorted samples fall (nearest rank).
    static func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let rank = Int((fraction * Double(sorted.count)).rounded(.up)) - 1
        return sorted[min(max(rank, 0), sorted.count - 1)]
    }
}
