import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Protos
import Testing
import Wire
import WireCodec

/// Bad input against a real `wire-bench serve` process over mutual TLS: each case gets its
/// typed error or close, while another client is served the whole time and the server's
/// memory stays bounded.
@Suite(.serialized)
struct MalformedInputTests {
    @Test func everyMalformedInputIsConfinedToItsConnection() async throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        // The preamble timeout runs from the TCP accept, through the TLS handshake: on a loaded
        // 2-core machine a debug build's handshake and the client's first write have taken
        // over 2 s, and the server closed before the preamble of a case that needs it open.
        let server = try ServerProcess(pki: pki, arguments: ["--frame-timeout-ms", "1500", "--preamble-timeout-ms", "5000"])
        defer { server.stop() }
        let admin = try pki.tls(TestPKI.admin)
        let adminCredential = try pki.directory.load(TestPKI.admin)

        // A well-behaved client calls the server throughout.
        let witness = try await WireClient.connect(host: "127.0.0.1", port: server.port, tls: admin, server: .identity(TestPKI.server))
        let served = NIOLockedValueBox((ok: 0, failures: [String]()))
        let stop = NIOLockedValueBox(false)
        let witnessTask = Task {
            var index: UInt8 = 0
            while !stop.withLockedValue({ $0 }) {
                index &+= 1
                do {
                    let answer = try await witness.call(EchoRequest(payload: [index, 1, 2, 3]), expecting: EchoResponse.self)
                    if answer.payload == [index, 1, 2, 3] {
                        served.withLockedValue { $0.ok += 1 }
                    } else {
                        served.withLockedValue { $0.failures.append("wrong echo") }
                    }
                } catch {
                    served.withLockedValue { $0.failures.append("\(error)") }
                }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        // Warm the server up before taking its memory as the baseline.
        for _ in 0..<50 { _ = try await witness.call(EchoRequest(payload: Array(repeating: 7, count: 1024)), expecting: EchoResponse.self) }
        let baseline = server.residentKiB

        func raw() async throws -> RawClient {
            try await RawClient.connect(port: server.port, caPEM: pki.caPEM, certificate: adminCredential)
        }
        func goaway(_ client: RawClient) -> GoAway? {
            client.frames.first { $0.kind == .goaway }.flatMap { try? $0.decode(GoAway.self) }
        }
        func error(_ client: RawClient, id: UInt64) -> ErrorInfo? {
            client.frames.first { $0.kind == .error && $0.id == id }.flatMap { try? $0.decode(ErrorInfo.self) }
        }

        // Bad magic: closed, nothing answered.
        do {
            let client = try await raw()
            try await client.send(Bytes.preamble(magic: 0x4854_5450))   // "PTTH"
            #expect(await client.wait { $0.closed })
            #expect(client.items.isEmpty)
            #expect(await server.waitForLog("bad preamble magic 0x48545450"))
        }

        // Unsupported major version: the server's preamble, then GOAWAY unsupportedVersion.
        do {
            let client = try await raw()
            try await client.send(Bytes.preamble(major: 2))
            #expect(await client.wait { $0.closed })
            guard case .preamble(let preamble)? = client.items.first else {
                Issue.record("no preamble before the GOAWAY")
                return
            }
            #expect(preamble.major == 1)
            let reply = try #require(goaway(client))
            #expect(reply.code == WireErrorCode.unsupportedVersion.rawValue)
            #expect(reply.reason.contains("2.0") && reply.reason.contains("1.0"))
        }

        // A frame length over the maximum: refused from the header alone, nothing allocated.
        do {
            let client = try await raw()
            try await client.send(Bytes.preamble() + Bytes.frame(kind: 1, type: 120, id: 1, length: 0xFFFF_FFF0))
            #expect(await client.wait { $0.closed })
            let reply = try #require(goaway(client))
            #expect(reply.code == WireErrorCode.frameTooLarge.rawValue)
            #expect(reply.reason.contains("4294967280"))
        }

        // A truncated frame: the header promises 100 bytes, 10 arrive; after the frame timeout,
        // GOAWAY protocolViolation.
        do {
            let client = try await raw()
            try await client.send(Bytes.preamble() + Bytes.frame(kind: 1, type: 120, id: 1, length: 100, payload: Array(repeating: 0, count: 10)))
            #expect(await client.wait { $0.closed })
            let reply = try #require(goaway(client))
            #expect(reply.code == WireErrorCode.protocolViolation.rawValue)
            #expect(reply.reason.contains("longer than 1500 ms"))
        }

        // Garbage after a valid frame: the frame is answered, then GOAWAY.
        do {
            let client = try await raw()
            let echo = Bytes.message(.request, id: 1, EchoRequest(payload: [42]))
            try await client.send(Bytes.preamble() + echo + [4, 0, 0, 0, 0xEE] + Array(repeating: 0xA5, count: 40))
            #expect(await client.wait { $0.closed })
            let response = try #require(client.frames.first { $0.kind == .response && $0.id == 1 })
            #expect(try response.decode(EchoResponse.self).payload == [42])
            #expect(goaway(client)?.code == WireErrorCode.protocolViolation.rawValue)
            #expect(goaway(client)?.reason.contains("unknown frame kind 238") == true)
        }

        // Unknown message type, wrong wire type, deep nesting: typed ERRORs; the connection
        // stays open and then serves a valid request.
        do {
            let client = try await raw()
            var deep: [UInt8] = [0x0A, 0]
            for _ in 0..<20_000 { deep = [0x0A] + varint(UInt64(deep.count)) + deep }
            let requests = Bytes.frame(kind: 1, type: 999, id: 1, payload: [])
                + Bytes.frame(kind: 1, type: EchoRequest.messageType, id: 3, payload: [0x08, 0x01])   // field 1 as a varint
                + Bytes.frame(kind: 1, type: CreatePartitionRequest.messageType, id: 5, payload: deep)
                + Bytes.message(.request, id: 7, EchoRequest(payload: [9]))
            try await client.send(Bytes.preamble() + requests)
            #expect(await client.wait { snapshot in
                var decoder = FrameDecoder(maxFrameSize: 1 << 24)
                var buffer = ByteBuffer(bytes: snapshot.received)
                var count = 0
                while let item = try? decoder.next(from: &buffer) { if case .frame = item { count += 1 } }
                return count >= 4
            })
            #expect(error(client, id: 1)?.code == WireErrorCode.unknownMessageType.rawValue)
            let wrongType = try #require(error(client, id: 3))
            #expect(wrongType.code == WireErrorCode.malformed.rawValue)
            #expect(wrongType.message.contains("wire type"))
            let nested = try #require(error(client, id: 5))
            #expect(nested.code == WireErrorCode.malformed.rawValue)
            let answer = try #require(client.frames.first { $0.kind == .response && $0.id == 7 })
            #expect(try answer.decode(EchoResponse.self).payload == [9])
            #expect(!client.snapshot.closed)
            client.close()
        }

        // A slow client: one byte per second. The frame timeout closes it.
        do {
            let client = try await raw()
            try await client.send(Bytes.preamble())
            let frame = Bytes.message(.request, id: 1, EchoRequest(payload: Array(repeating: 1, count: 64)))
            var sent = 0
            while !client.snapshot.closed, sent < frame.count {
                try? await client.send([frame[sent]])
                sent += 1
                try await Task.sleep(for: .seconds(1))
            }
            #expect(await client.wait { $0.closed })
            #expect(sent < 10)
            #expect(goaway(client)?.code == WireErrorCode.protocolViolation.rawValue)
        }

        // A slow client that never finishes its preamble is closed after the preamble timeout.
        do {
            let client = try await raw()
            try await client.send(Array(Bytes.preamble().prefix(5)))
            #expect(await client.wait(timeout: 15) { $0.closed })
            #expect(await server.waitForLog("no preamble within the preamble timeout"))
        }

        // A flood of pings: GOAWAY tooManyPings.
        do {
            let client = try await raw()
            var flood = Bytes.preamble()
            for value in 0..<500 { flood += Bytes.message(.ping, id: 0, PingData(opaque: UInt64(value))) }
            // The server closes after 100 pings, maybe while the rest is still being written:
            // a write that fails on that close is the outcome this case expects.
            try? await client.send(flood)
            #expect(await client.wait { $0.closed })
            #expect(goaway(client)?.code == WireErrorCode.tooManyPings.rawValue)
            #expect(client.frames.filter { $0.kind == .pong }.count <= 100)
        }

        // Many connections holding nearly full frames: memory stays bounded by the frame limit.
        var holders: [RawClient] = []
        for _ in 0..<20 {
            let client = try await raw()
            // Closed by the frame timeout, maybe before all of it is written on a loaded machine:
            // the close is what is checked below.
            try? await client.send(Bytes.preamble() + Bytes.frame(kind: 1, type: 120, id: 1, length: 1 << 20, payload: Array(repeating: 0, count: (1 << 20) - 1)))
            holders.append(client)
        }
        for client in holders { #expect(await client.wait { $0.closed }) }
        let peak = server.residentKiB

        stop.withLockedValue { $0 = true }
        await witnessTask.value
        let result = served.withLockedValue { $0 }
        #expect(result.failures.isEmpty, "the witness client failed: \(result.failures.prefix(3))")
        #expect(result.ok > 100)
        #expect(server.isRunning)
        // 20 connections x 1 MiB buffered at most, plus TLS buffers; a 4 GiB allocation would show.
        #expect(peak - baseline < 96 * 1024, "server memory grew from \(baseline) KiB to \(peak) KiB")
        await witness.close()
        // SIGTERM: a graceful shutdown and a clean exit.
        #expect(server.stop() == 0)
        #expect(server.log.contains("stopped ("))
    }

    private func varint(_ value: UInt64) -> [UInt8] {
        var value = value
        var bytes: [UInt8] = []
        repeat {
            var byte = UInt8(value & 0x7F)
            value >>= 7
            if value != 0 { byte |= 0x80 }
            bytes.append(byte)
        } while value != 0
        return bytes
    }
}
