public import NIOCore

/// Writes a message's fields as tagged values into a `ByteBuffer` (SPEC.md, "Payload
/// encoding"). Fields are written in the order given; messages write them in ascending
/// field-number order so that an encoding is canonical.
public struct WireWriter {
    public var buffer: ByteBuffer

    public init(buffer: ByteBuffer) { self.buffer = buffer }
    public init(capacity: Int = 256) { self.buffer = ByteBufferAllocator().buffer(capacity: capacity) }

    public mutating func writeVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            buffer.writeInteger(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        buffer.writeInteger(UInt8(v))
    }

    mutating func key(_ field: UInt32, _ type: WireType) {
        writeVarint(UInt64(field) << 3 | UInt64(type.rawValue))
    }

    public mutating func uint(_ field: UInt32, _ value: UInt64) {
        key(field, .varint)
        writeVarint(value)
    }

    public mutating func uint(_ field: UInt32, _ value: UInt32) { uint(field, UInt64(value)) }
    public mutating func uint(_ field: UInt32, _ value: UInt16) { uint(field, UInt64(value)) }

    /// A signed integer, zigzag-encoded so small negative values stay short.
    public mutating func int(_ field: UInt32, _ value: Int64) {
        key(field, .varint)
        writeVarint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    public mutating func bool(_ field: UInt32, _ value: Bool) {
        key(field, .varint)
        writeVarint(value ? 1 : 0)
    }

    public mutating func fixed64(_ field: UInt32, _ value: UInt64) {
        key(field, .fixed64)
        buffer.writeInteger(value, endianness: .little)
    }

    public mutating func fixed32(_ field: UInt32, _ value: UInt32) {
        key(field, .fixed32)
        buffer.writeInteger(value, endianness: .little)
    }

    public mutating func double(_ field: UInt32, _ value: Double) { fixed64(field, value.bitPattern) }

    public mutating func string(_ field: UInt32, _ value: String) {
        key(field, .lengthDelimited)
        let utf8 = value.utf8
        writeVarint(UInt64(utf8.count))
        buffer.writeBytes(utf8)
    }

    public mutating func bytes(_ field: UInt32, _ value: ByteBuffer) {
        key(field, .lengthDelimited)
        writeVarint(UInt64(value.readableBytes))
        buffer.writeImmutableBuffer(value)
    }

    public mutating func bytes(_ field: UInt32, _ value: [UInt8]) {
        key(field, .lengthDelimited)
        writeVarint(UInt64(value.count))
        buffer.writeBytes(value)
    }

    public mutating func message<M: WireEncodable>(_ field: UInt32, _ value: M) {
        var child = WireWriter(buffer: buffer.allocatorForChild())
        value.encode(to: &child)
        key(field, .lengthDelimited)
        writeVarint(UInt64(child.buffer.readableBytes))
        buffer.writeImmutableBuffer(child.buffer)
    }

    // Optional and repeated helpers: absent optionals write nothing.
    public mutating func uint(_ field: UInt32, _ value: UInt64?) { if let value { uint(field, value) } }
    public mutating func uint(_ field: UInt32, _ value: UInt32?) { if let value { uint(field, UInt64(value)) } }
    public mutating func int(_ field: UInt32, _ value: Int64?) { if let value { int(field, value) } }
    public mutating func bool(_ field: UInt32, _ value: Bool?) { if let value { bool(field, value) } }
    public mutating func string(_ field: UInt32, _ value: String?) { if let value { string(field, value) } }
    public mutating func double(_ field: UInt32, _ value: Double?) { if let value { double(field, value) } }
    public mutating func message<M: WireEncodable>(_ field: UInt32, _ value: M?) { if let value { message(field, value) } }
    public mutating func strings(_ field: UInt32, _ values: [String]) { for value in values { string(field, value) } }
    public mutating func uints(_ field: UInt32, _ values: [UInt64]) { for value in values { uint(field, value) } }
    public mutating func uints(_ field: UInt32, _ values: [UInt32]) { for value in values { uint(field, UInt64(value)) } }
    public mutating func messages<M: WireEncodable>(_ field: UInt32, _ values: [M]) { for value in values { message(field, value) } }
    public mutating func enumeration<E: RawRepresentable>(_ field: UInt32, _ value: E) where E.RawValue == UInt32 {
        uint(field, UInt64(value.rawValue))
    }
    public mutating func enumeration<E: RawRepresentable>(_ field: UInt32, _ value: E?) where E.RawValue == UInt32 {
        if let value { uint(field, UInt64(value.rawValue)) }
    }
}

extension ByteBuffer {
    /// An empty buffer for a nested message.
    func allocatorForChild() -> ByteBuffer { ByteBufferAllocator().buffer(capacity: 64) }
}

/// A value that writes itself as tagged fields.
public protocol WireEncodable: Sendable {
    func encode(to writer: inout WireWriter)
}

/// A value that reads itself from tagged fields.
public protocol WireDecodable: Sendable {
    init(from reader: inout WireReader) throws(WireError)
}

/// A nested message (or a top-level one).
public typealias WireStruct = WireEncodable & WireDecodable

/// The 16-bit type number of a top-level message (SPEC.md, "Message catalogue").
public typealias MessageType = UInt16

/// A top-level message: a frame's payload.
public protocol WireMessage: WireStruct, Equatable {
    static var messageType: MessageType { get }
}

extension WireEncodable {
    /// The message's encoding in a fresh buffer.
    public func encoded() -> ByteBuffer {
        var writer = WireWriter()
        encode(to: &writer)
        return writer.buffer
    }
}

extension WireDecodable {
    /// Decodes a whole buffer as this message.
    public static func decode(_ buffer: ByteBuffer, limits: WireLimits = .standard) throws(WireError) -> Self {
        var reader = WireReader(buffer: buffer, limits: limits)
        return try Self(from: &reader)
    }
}
