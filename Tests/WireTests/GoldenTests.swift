import Foundation
import NIOCore
import Testing
import WireCodec
@testable import Protos

struct GoldenCase: CustomStringConvertible, Sendable {
    let name: String
    let type: MessageType
    let message: any WireStruct
    var description: String { name }
}

func goldenBytes(_ name: String) throws -> [UInt8] {
    let url = try #require(Bundle.module.url(forResource: name, withExtension: "hex", subdirectory: "Golden"))
    let text = try String(contentsOf: url, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    var bytes: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        bytes.append(try #require(UInt8(text[index..<next], radix: 16)))
        index = next
    }
    return bytes
}

func equal(_ a: any WireStruct, _ b: any WireStruct) -> Bool {
    func open<T: Equatable>(_ x: T, _ y: Any) -> Bool { (y as? T) == x }
    guard let a = a as? any Equatable else { return false }
    return open(a, b)
}

@Suite struct GoldenTests {
    static let cases = GoldenSamples.all.map { GoldenCase(name: $0.name, type: $0.type, message: $0.message) }

    @Test func everyCataloguedTypeHasAGoldenVector() {
        let golden = Set(Self.cases.map(\.type))
        #expect(golden == Set(NestorCatalog.entries.map(\.type)))
        #expect(golden.count == 54)
    }

    @Test(arguments: cases)
    func theGoldenBytesDecodeAndReEncodeIdentically(_ golden: GoldenCase) throws {
        let expected = try goldenBytes(golden.name)
        // The Swift encoder produces the bytes the generator's independent encoder wrote.
        #expect(Array(golden.message.encoded().readableBytesView) == expected)
        // Decoding them gives the sample back, and re-encoding gives the same bytes.
        let decoded = try NestorCatalog.decode(type: golden.type, payload: ByteBuffer(bytes: expected))
        #expect(equal(decoded, golden.message))
        #expect(Array(decoded.encoded().readableBytesView) == expected)
    }

    @Test func everyRequestNamesARoleAndAResponse() {
        for entry in NestorCatalog.entries where entry.kind == .request {
            #expect(!entry.roles.isEmpty, "\(entry.name)")
            let response = NestorCatalog.entries.first { $0.type == entry.response }
            #expect(response?.kind == .response, "\(entry.name)")
        }
    }
}

@Suite struct CompatibilityTests {
    @Test func anOlderReaderSkipsANewerField() throws {
        let current = CreateTenantRequest(name: "acme", quota: TenantQuota(maxCores: 8, maxMemoryBytes: 1 << 34, maxDiskBytes: 1 << 40))
        var writer = WireWriter()
        current.encode(to: &writer)
        // A newer peer added fields 3 (string), 4 (nested message), 5 (fixed64), 6 (fixed32).
        writer.string(3, "added in a newer minor version")
        writer.message(4, TenantQuota(maxCores: 1, maxMemoryBytes: 2, maxDiskBytes: 3))
        writer.fixed64(5, 42)
        writer.fixed32(6, 7)
        writer.uint(1_000_000, UInt64(9))
        #expect(try CreateTenantRequest.decode(writer.buffer) == current)
    }

    @Test func aNewerFieldInsideANestedMessageIsSkippedToo() throws {
        var quota = WireWriter()
        TenantQuota(maxCores: 2, maxMemoryBytes: 3, maxDiskBytes: 4).encode(to: &quota)
        quota.bool(9, true)
        var outer = WireWriter()
        outer.string(1, "t")
        outer.bytes(2, quota.buffer)
        let decoded = try CreateTenantRequest.decode(outer.buffer)
        #expect(decoded.quota == TenantQuota(maxCores: 2, maxMemoryBytes: 3, maxDiskBytes: 4))
    }

    @Test func aMissingRequiredFieldIsNamed() {
        var writer = WireWriter()
        writer.string(1, "acme")
        #expect(throws: WireError.missingRequiredField(message: "CreateTenantRequest", field: "quota")) {
            try CreateTenantRequest.decode(writer.buffer)
        }
    }
}
