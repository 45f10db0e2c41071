public import NIOCore

/// A field's number and wire type, as `WireReader.next()` returns them.
public struct FieldKey: Equatable, Sendable {
    public let number: UInt32
    public let wireType: WireType
}

/// Reads a message's tagged fields from a `ByteBuffer`, enforcing the limits (SPEC.md).
///
/// Messages loop over `next()`, read the fields they know with the typed readers (which
/// check the wire type) and `skip` the others, so an older reader passes over newer fields.
public struct WireReader {
    public private(set) var buffer: ByteBuffer
    public let limits: WireLimits
    public let depth: Int
    private var occurrences: [UInt32: Int] = [:]

    public init(buffer: ByteBuffer, limits: WireLimits = .standard, depth: Int = 0) {
        self.buffer = buffer
        self.limits = limits
        self.depth = depth
    }

    /// True when every byte was read.
    public var isAtEnd: Bool { buffer.readableBytes == 0 }

    mutating func readVarint() throws(WireError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        for index in 0..<10 {
            guard let byte = buffer.readInteger(as: UInt8.self) else { throw .truncated("varint") }
            if index == 9 && byte > 1 { throw .malformedVarint }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
        throw .malformedVarint
    }

    /// The next field's key, or nil at the end of the message.
    public mutating func next() throws(WireError) -> FieldKey? {
        guard buffer.readableBytes > 0 else { return nil }
        let raw = try readVarint()
        let number = raw >> 3
        guard number >= 1, number <= (1 << 29) - 1 else { throw .invalidFieldNumber(number) }
        let field = UInt32(number)
        guard let type = WireType(rawValue: UInt8(raw & 7)) else { throw .invalidWireType(UInt8(raw & 7), field: field) }
        let count = (occurrences[field] ?? 0) + 1
        if count > limits.maxRepeated { throw .tooManyElements(field: field, limit: limits.maxRepeated) }
        occurrences[field] = count
        return FieldKey(number: field, wireType: type)
    }

    private func expect(_ key: FieldKey, _ type: WireType) throws(WireError) {
        if key.wireType != type { throw .wrongWireType(field: key.number, expected: type, actual: key.wireType) }
    }

    public mutating func uint64(_ key: FieldKey) throws(WireError) -> UInt64 {
        try expect(key, .varint)
        return try readVarint()
    }

    public mutating func uint32(_ key: FieldKey) throws(WireError) -> UInt32 {
        let value = try uint64(key)
        guard value <= UInt64(UInt32.max) else { throw .invalidValue(field: "field \(key.number)", reason: "\(value) does not fit 32 bits") }
        return UInt32(value)
    }

    public mutating func uint16(_ key: FieldKey) throws(WireError) -> UInt16 {
        let value = try uint64(key)
        guard value <= UInt64(UInt16.max) else { throw .invalidValue(field: "field \(key.number)", reason: "\(value) does not fit 16 bits") }
        return UInt16(value)
    }

    public mutating func int64(_ key: FieldKey) throws(WireError) -> Int64 {
        let raw = try uint64(key)
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    public mutating func bool(_ key: FieldKey) throws(WireError) -> Bool {
        let value = try uint64(key)
        guard value <= 1 else { throw .invalidValue(field: "field \(key.number)", reason: "\(value) is not a boolean") }
        return value == 1
    }

    public mutating func fixed64(_ key: FieldKey) throws(WireError) -> UInt64 {
        try expect(key, .fixed64)
        guard let value = buffer.readInteger(endianness: .little, as: UInt64.self) else { throw .truncated("fixed64") }
        return value
    }

    public mutating func fixed32(_ key: FieldKey) throws(WireError) -> UInt32 {
        try expect(key, .fixed32)
        guard let value = buffer.readInteger(endianness: .little, as: UInt32.self) else { throw .truncated("fixed32") }
        return value
    }

    public mutating func double(_ key: FieldKey) throws(WireError) -> Double { Double(bitPattern: try fixed64(key)) }

    private mutating func lengthDelimited(_ key: FieldKey) throws(WireError) -> ByteBuffer {
        try expect(key, .lengthDelimited)
        let length = try readVarint()
        guard length <= UInt64(buffer.readableBytes), let slice = buffer.readSlice(length: Int(length)) else {
            throw .truncated("length-delimited field \(key.number)")
        }
        return slice
    }

    public mutating func bytes(_ key: FieldKey) throws(WireError) -> ByteBuffer { try lengthDelimited(key) }

    public mutating func byteArray(_ key: FieldKey) throws(WireError) -> [UInt8] {
        let slice = try lengthDelimited(key)
        return Array(slice.readableBytesView)
    }

    public mutating func string(_ key: FieldKey) throws(WireError) -> String {
        let slice = try lengthDelimited(key)
        if slice.readableBytes > limits.maxStringLength {
            throw .stringTooLong(length: slice.readableBytes, limit: limits.maxStringLength)
        }
        guard let text = String(validating: slice.readableBytesView, as: UTF8.self) else {
            throw .invalidUTF8(field: key.number)
        }
        return text
    }

    public mutating func message<M: WireDecodable>(_ key: FieldKey, _ type: M.Type = M.self) throws(WireError) -> M {
        let slice = try lengthDelimited(key)
        guard depth + 1 <= limits.maxDepth else { throw .tooDeep(limit: limits.maxDepth) }
        var child = WireReader(buffer: slice, limits: limits, depth: depth + 1)
        return try M(from: &child)
    }

    public mutating func enumeration<E: RawRepresentable>(_ key: FieldKey, _ type: E.Type = E.self) throws(WireError) -> E
    where E.RawValue == UInt32 {
        let raw = try uint32(key)
        guard let value = E(rawValue: raw) else {
            throw .invalidValue(field: "field \(key.number)", reason: "\(raw) is not a known \(E.self)")
        }
        return value
    }

    /// Passes over a field this reader does not know.
    public mutating func skip(_ key: FieldKey) throws(WireError) {
        switch key.wireType {
        case .varint: _ = try readVarint()
        case .fixed64: guard buffer.readSlice(length: 8) != nil else { throw .truncated("fixed64") }
        case .fixed32: guard buffer.readSlice(length: 4) != nil else { throw .truncated("fixed32") }
        case .lengthDelimited: _ = try lengthDelimited(key)
        }
    }

    /// The value of a required field, or the error that names it.
    public func required<T>(_ value: T?, _ field: String, in message: String) throws(WireError) -> T {
        guard let value else { throw .missingRequiredField(message: message, field: field) }
        return value
    }
}
