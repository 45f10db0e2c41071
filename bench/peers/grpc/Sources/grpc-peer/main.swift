import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOPosix

// Measures grpc-swift 2 the way wire-bench measures Nestor's protocol: a server and a client
// in one process, each on its own event-loop thread, over mutual TLS (both sides negotiate
// TLS 1.3) on 127.0.0.1, with the certificates wire-bench made. Unary calls with a raw-bytes
// payload, 16 concurrent calls, and a client stream of chunks for the bulk figure. Prints one
// JSON object with wire-bench's keys.

struct Options {
    var pki = ""
    var seconds = 3.0
    var payloadBytes = 1024
    var concurrency = 16
    var bulkBytes = 256 << 20
    var chunkBytes = 256 << 10
    var warmup = 1000

    static func parse(_ arguments: [String]) -> Options {
        var options = Options()
        var index = 0
        func value() -> String {
            index += 1
            guard index < arguments.count else { fail("\(arguments[index - 1]) needs a value") }
            return arguments[index]
        }
        while index < arguments.count {
            switch arguments[index] {
            case "--pki": options.pki = value()
            case "--seconds": options.seconds = Double(value()) ?? { fail("bad --seconds") }()
            case "--payload-bytes": options.payloadBytes = Int(value()) ?? { fail("bad --payload-bytes") }()
            case "--concurrency": options.concurrency = Int(value()) ?? { fail("bad --concurrency") }()
            case "--bulk-bytes": options.bulkBytes = Int(value()) ?? { fail("bad --bulk-bytes") }()
            case "--chunk-bytes": options.chunkBytes = Int(value()) ?? { fail("bad --chunk-bytes") }()
            case "--warmup": options.warmup = Int(value()) ?? { fail("bad --warmup") }()
            default: fail("unknown argument \(arguments[index])")
            }
            index += 1
        }
        if options.pki.isEmpty { fail("--pki DIR is required") }
        return options
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("grpc-peer: \(message)\n".utf8))
    exit(2)
}

struct RawSerializer: MessageSerializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
}

struct RawDeserializer: MessageDeserializer {
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
        serializedMessageBytes.withUnsafeBytes { Array($0) }
    }
}

let echoMethod = MethodDescriptor(fullyQualifiedService: "nestor.bench.Bench", method: "Echo")
let uploadMethod = MethodDescriptor(fullyQualifiedService: "nestor.bench.Bench", method: "Upload")

/// Echo returns its payload; Upload counts the bytes of a client stream.
struct BenchService: RegistrableRPCService {
    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerHandler(forMethod: echoMethod, deserializer: RawDeserializer(), serializer: RawSerializer()) { request, _ in
            var payload: [UInt8] = []
            for try await message in request.messages { payload = message }
            return StreamingServerResponse(single: ServerResponse(message: payload))
        }
        router.registerHandler(forMethod: uploadMethod, deserializer: RawDeserializer(), serializer: RawSerializer()) { request, _ in
            var total: UInt64 = 0
            for try await chunk in request.messages { total += UInt64(chunk.count) }
            var reply: [UInt8] = []
            withUnsafeBytes(of: total.littleEndian) { reply.append(contentsOf: $0) }
            return StreamingServerResponse(single: ServerResponse(message: reply))
        }
    }
}

func pem(_ path: String) -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else { fail("cannot read \(path)") }
    return Array(data)
}

func micros(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1e6 + Double(duration.components.attoseconds) / 1e12
}

/// HTTP/2 frames up to 1 MiB and an 8 MiB window: what Nestor's protocol uses for streams.
let maxFrameSize = 1 << 20
let windowSize = 8 << 20

let options = Options.parse(Array(CommandLine.arguments.dropFirst()))
let figures = try await measure(options)
let json = try JSONSerialization.data(withJSONObject: figures, options: [.sortedKeys])
print(String(decoding: json, as: UTF8.self))

/// Runs off the main actor, as wire-bench's measurement does.
nonisolated func measure(_ options: Options) async throws -> [String: Double] {
let ca = pem(options.pki + "/ca.pem")
let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)

let serverTransport = HTTP2ServerTransport.Posix(
    address: .ipv4(host: "127.0.0.1", port: 0),
    transportSecurity: .mTLS(
        certificateChain: [.bytes(pem(options.pki + "/agent-bench-server.pem"), format: .pem)],
        privateKey: .bytes(pem(options.pki + "/agent-bench-server-key.pem"), format: .pem)
    ) { config in
        config.trustRoots = .certificates([.bytes(ca, format: .pem)])
        config.clientCertificateVerification = .noHostnameVerification
    },
    config: .defaults { config in
        config.http2.maxFrameSize = maxFrameSize
        config.http2.targetWindowSize = windowSize
    },
    eventLoopGroup: serverGroup)
let server = GRPCServer(transport: serverTransport, services: [BenchService()])

return try await withThrowingDiscardingTaskGroup { group in
    group.addTask { try await server.serve() }
    guard let address = try await server.listeningAddress?.ipv4 else { fail("the gRPC server did not bind") }
    let clientTransport = try HTTP2ClientTransport.Posix(
        target: .ipv4(address: "127.0.0.1", port: address.port),
        transportSecurity: .mTLS(
            certificateChain: [.bytes(pem(options.pki + "/admin-bench-client.pem"), format: .pem)],
            privateKey: .bytes(pem(options.pki + "/admin-bench-client-key.pem"), format: .pem)
        ) { config in
            config.trustRoots = .certificates([.bytes(ca, format: .pem)])
            config.serverCertificateVerification = .noHostnameVerification
        },
        config: .defaults { config in
            config.http2.maxFrameSize = maxFrameSize
            config.http2.targetWindowSize = windowSize
        },
        eventLoopGroup: clientGroup)
    let client = GRPCClient(transport: clientTransport)
    group.addTask { try await client.runConnections() }

    let payload = (0..<options.payloadBytes).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
    @Sendable func echo() async throws -> [UInt8] {
        try await client.unary(request: ClientRequest(message: payload), descriptor: echoMethod, serializer: RawSerializer(),
                               deserializer: RawDeserializer(), options: .defaults) { try $0.message }
    }
    for _ in 0..<options.warmup { _ = try await echo() }

    let clock = ContinuousClock()
    var latencies: [Double] = []
    let start = clock.now
    let deadline = start + .seconds(options.seconds)
    while clock.now < deadline {
        let before = clock.now
        let answer = try await echo()
        latencies.append(micros(clock.now - before))
        if answer.count != payload.count { fail("echo returned \(answer.count) bytes") }
    }
    let sequentialSeconds = micros(clock.now - start) / 1e6
    latencies.sort()
    func percentile(_ fraction: Double) -> Double {
        let rank = Int((fraction * Double(latencies.count)).rounded(.up)) - 1
        return latencies[min(max(rank, 0), latencies.count - 1)]
    }

    let concurrentStart = clock.now
    let concurrentDeadline = concurrentStart + .seconds(options.seconds)
    let total = try await withThrowingTaskGroup(of: Int.self) { tasks in
        for _ in 0..<options.concurrency {
            tasks.addTask {
                var count = 0
                while clock.now < concurrentDeadline {
                    _ = try await echo()
                    count += 1
                }
                return count
            }
        }
        var sum = 0
        for try await count in tasks { sum += count }
        return sum
    }
    let concurrentSeconds = micros(clock.now - concurrentStart) / 1e6

    var generator = SystemRandomNumberGenerator()
    let chunk = (0..<options.chunkBytes).map { _ in UInt8.random(in: 0...255, using: &generator) }
    let chunks = options.bulkBytes / options.chunkBytes
    let bulkStart = clock.now
    let received = try await client.clientStreaming(
        request: StreamingClientRequest(of: [UInt8].self) { writer in
            for _ in 0..<chunks { try await writer.write(chunk) }
        },
        descriptor: uploadMethod, serializer: RawSerializer(), deserializer: RawDeserializer(),
        options: .defaults
    ) { response in
        let bytes = try response.message
        return bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
    }
    let bulkSeconds = micros(clock.now - bulkStart) / 1e6
    if received != UInt64(chunks * options.chunkBytes) { fail("the stream arrived with \(received) bytes") }

    client.beginGracefulShutdown()
    server.beginGracefulShutdown()
    return [
        "rttPerSecond": Double(latencies.count) / sequentialSeconds,
        "p50Micros": percentile(0.5), "p99Micros": percentile(0.99),
        "concurrentPerSecond": Double(total) / concurrentSeconds,
        "bulkMiBPerSecond": Double(chunks * options.chunkBytes) / Double(1 << 20) / bulkSeconds,
    ]
}
}
