import NIOCore
import Testing
import WireCodec
@testable import Protos

func buffer(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

/// A message that nests itself, for depth tests.
struct Nest: WireStruct, Equatable {
    var inner: [Nest]
    init(depth: Int) { inner = depth == 0 ? [] : [Nest(depth: depth - 1)] }
    init(inner: [Nest]) { self.inner = inner }
    func encode(to writer: inout WireWriter) { for n in inner { writer.message(1, n) } }
    init(from reader: inout WireReader) throws(WireError) {
        var inner: [Nest] = []
        while let key = try reader.next() {
            if key.number == 1 { inner.append(try reader.message(key, Nest.self)) } else { try reader.skip(key) }
        }
        self.inner = inner
    }
}

@Suite struct CodecErrorTests {
    @Test func varintsAreChecked() throws {
        #expect(throws: WireError.truncated("varint")) { try Ack.decode(buffer([0x0A, 0x80])) }
        #expect(throws: WireError.malformedVarint) {
            try WindowUpdate.decode(buffer([0x08] + Array(repeating: 0xFF, count: 9) + [0x02]))
        }
        #expect(throws: WireError.malformedVarint) {
            try WindowUpdate.decode(buffer([0x08] + Array(repeating: 0x80, count: 10) + [0x01]))
        }
        #expect(try WindowUpdate.decode(buffer([0x08] + Array(repeating: 0xFF, count: 9) + [0x01])).credit == .max)
    }

    @Test func keysAreChecked() {
        #expect(throws: WireError.invalidFieldNumber(0)) { try Ack.decode(buffer([0x02, 0x00])) }
        #expect(throws: WireError.invalidWireType(3, field: 1)) { try Ack.decode(buffer([0x0B])) }
        #expect(throws: WireError.invalidWireType(7, field: 2)) { try Ack.decode(buffer([0x17])) }
    }

    @Test func wireTypesMustMatch() {
        // DeleteTenantRequest.name (1) is a string; send a varint.
        #expect(throws: WireError.wrongWireType(field: 1, expected: .lengthDelimited, actual: .varint)) {
            try DeleteTenantRequest.decode(buffer([0x08, 0x01]))
        }
        // WindowUpdate.credit (1) is a varint; send fixed64.
        #expect(throws: WireError.wrongWireType(field: 1, expected: .varint, actual: .fixed64)) {
            try WindowUpdate.decode(buffer([0x09] + Array(repeating: 0, count: 8)))
        }
    }

    @Test func lengthsMayNotRunPastTheMessage() {
        #expect(throws: WireError.truncated("length-delimited field 1")) { try DeleteTenantRequest.decode(buffer([0x0A, 0x05, 0x61])) }
        #expect(throws: WireError.truncated("fixed64")) { try PingData.decode(buffer([0x09, 1, 2, 3])) }
        #expect(throws: WireError.truncated("fixed32")) { try Ack.decode(buffer([0x15, 1, 2])) }
    }

    @Test func stringsAreCheckedForUTF8AndLength() throws {
        #expect(throws: WireError.invalidUTF8(field: 1)) { try DeleteTenantRequest.decode(buffer([0x0A, 0x02, 0xC3, 0x28])) }
        var writer = WireWriter()
        writer.string(1, String(repeating: "x", count: 70_000))
        #expect(throws: WireError.stringTooLong(length: 70_000, limit: 65_536)) { try DeleteTenantRequest.decode(writer.buffer) }
        let relaxed = WireLimits(maxStringLength: 100_000)
        #expect(try DeleteTenantRequest.decode(writer.buffer, limits: relaxed).name.count == 70_000)
    }

    @Test func valuesAreCheckedForTheirField() {
        #expect(throws: WireError.invalidValue(field: "field 3", reason: "2 is not a boolean")) {
            try DiskInventory.decode(buffer([0x0A, 0x01, 0x61, 0x10, 0x01, 0x18, 0x02]))
        }
        #expect(throws: WireError.invalidValue(field: "field 2", reason: "9 is not a known PartitionAction")) {
            try PartitionActionRequest.decode(buffer([0x0A, 0x01, 0x61, 0x10, 0x09]))
        }
        var writer = WireWriter()
        writer.string(1, "b")
        writer.uint(2, UInt64(1) << 33)
        #expect(throws: WireError.invalidValue(field: "field 2", reason: "8589934592 does not fit 32 bits")) {
            try RegisterBladeRequest.decode(writer.buffer)
        }
    }

    @Test func nestingIsLimited() throws {
        let deep = Nest(depth: 20)
        #expect(throws: WireError.tooDeep(limit: 16)) { try Nest.decode(deep.encoded()) }
        #expect(try Nest.decode(Nest(depth: 16).encoded()) == Nest(depth: 16))
    }

    @Test func repetitionIsLimited() throws {
        var writer = WireWriter()
        for _ in 0..<70_000 { writer.string(5, "eth") }
        #expect(throws: WireError.tooManyElements(field: 5, limit: 65_536)) { try RegisterBladeRequest.decode(writer.buffer) }
    }
}

@Suite struct FramingTests {
    @Test func framesRoundTripThroughTheDecoder() throws {
        var stream = ByteBuffer()
        Preamble(maxFrameSize: 1 << 20).write(to: &stream)
        let request = Frame.message(.request, id: 7, DeleteTenantRequest(name: "acme"))
        request.write(to: &stream)
        Frame(kind: .ping, messageType: PingData.messageType, payload: PingData(opaque: 42).encoded()).write(to: &stream)
        var decoder = FrameDecoder(maxFrameSize: 1 << 20)
        guard case .preamble(let preamble) = try decoder.next(from: &stream) else { Issue.record("no preamble"); return }
        #expect(preamble.major == 1 && preamble.maxFrameSize == 1 << 20)
        guard case .frame(let frame) = try decoder.next(from: &stream) else { Issue.record("no frame"); return }
        #expect(frame.kind == .request && frame.id == 7)
        #expect(try frame.decode(DeleteTenantRequest.self) == DeleteTenantRequest(name: "acme"))
        #expect(throws: WireError.wrongMessageType(expected: Ack.messageType, actual: DeleteTenantRequest.messageType)) {
            try frame.decode(Ack.self)
        }
        guard case .frame(let ping) = try decoder.next(from: &stream) else { Issue.record("no ping"); return }
        #expect(try ping.decode(PingData.self).opaque == 42)
        #expect(try decoder.next(from: &stream) == nil)
    }

    @Test func aFrameIsDeliveredOnlyWhenComplete() throws {
        var whole = ByteBuffer()
        Preamble(maxFrameSize: 1024).write(to: &whole)
        Frame.message(.request, id: 1, EchoRequest(payload: Array(repeating: 7, count: 100))).write(to: &whole)
        var decoder = FrameDecoder(maxFrameSize: 1024)
        var partial = ByteBuffer()
        var frames = 0
        for byte in whole.readableBytesView {
            partial.writeInteger(byte)
            while let item = try decoder.next(from: &partial) {
                if case .frame = item { frames += 1 }
            }
        }
        #expect(frames == 1)
        #expect(!decoder.isMidFrame)
    }

    @Test func anOversizeLengthIsRefusedBeforeThePayloadArrives() {
        var stream = ByteBuffer()
        Preamble(maxFrameSize: 1024).write(to: &stream)
        FrameHeader(length: 0xFFFF_FFF0, kind: .request, messageType: 120, id: 1).write(to: &stream)
        var decoder = FrameDecoder(maxFrameSize: 1024)
        _ = try? decoder.next(from: &stream)
        #expect(throws: WireError.frameTooLarge(length: 0xFFFF_FFF0, maximum: 1024)) { try decoder.next(from: &stream) }
    }

    @Test func headersAndPreamblesAreChecked() {
        var bad = ByteBuffer(bytes: Array("GET / HTTP/1.1\r\n".utf8))
        #expect(throws: WireError.badMagic(0x2054_4547)) { try Preamble.read(from: &bad) }
        var reserved = ByteBuffer()
        Preamble(maxFrameSize: 1).write(to: &reserved)
        reserved.setInteger(UInt8(1), at: 12)
        #expect(throws: WireError.reservedBitsSet("preamble")) { try Preamble.read(from: &reserved) }
        var kind = ByteBuffer()
        FrameHeader(length: 0, kind: .ping).write(to: &kind)
        kind.setInteger(UInt8(99), at: 4)
        #expect(throws: WireError.unknownFrameKind(99)) { try FrameHeader.read(from: &kind, maxFrameSize: 10) }
        var flags = ByteBuffer()
        FrameHeader(length: 0, kind: .request, flags: 0x80).write(to: &flags)
        #expect(throws: WireError.reservedBitsSet("frame flags")) { try FrameHeader.read(from: &flags, maxFrameSize: 10) }
    }

    @Test func identitiesParseOnlyTheNestorForm() {
        #expect(PeerIdentity(uri: "nestor://agent/blade-07") == PeerIdentity(role: .agent, name: "blade-07"))
        #expect(PeerIdentity(uri: "nestor://admin/ops.team_1")?.role == .admin)
        for bad in ["https://agent/x", "nestor://root/x", "nestor://agent/", "nestor://agent/X", "nestor://agent/a/b",
                    "nestor://agent/" + String(repeating: "a", count: 64), "nestor://tenant/ä"] {
            #expect(PeerIdentity(uri: bad) == nil, "\(bad)")
        }
    }
}
