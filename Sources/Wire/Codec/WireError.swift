/// A wire type: how a field's value is laid out (SPEC.md, "Payload encoding").
public enum WireType: UInt8, Sendable, Equatable, CustomStringConvertible {
    case varint = 0
    case fixed64 = 1
    case lengthDelimited = 2
    case fixed32 = 5

    public var description: String {
        switch self {
        case .varint: return "varint"
        case .fixed64: return "fixed64"
        case .lengthDelimited: return "length-delimited"
        case .fixed32: return "fixed32"
        }
    }
}

/// Error codes carried by ERROR and GOAWAY frames (SPEC.md, "Errors").
public enum WireErrorCode: UInt32, Sendable, Equatable, CaseIterable {
    case protocolViolation = 1
    case frameTooLarge = 2
    case malformed = 3
    case unknownMessageType = 4
    case permissionDenied = 5
    case notFound = 6
    case invalidArgument = 7
    case unavailable = 8
    case timeout = 9
    case internalError = 10
    case unsupportedVersion = 11
    case cancelled = 12
    case tooManyRequests = 13
    case tooManyPings = 14
    case conflict = 15
    case alreadyExists = 16
    case failedPrecondition = 17
    case shuttingDown = 18
}

/// Everything that can be wrong with bytes on the wire. Each case says what failed.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated(String)
    case frameTooLarge(length: UInt32, maximum: UInt32)
    case badMagic(UInt32)
    case unsupportedVersion(major: UInt16, supported: UInt16)
    case reservedBitsSet(String)
    case unknownFrameKind(UInt8)
    case malformedVarint
    case invalidWireType(UInt8, field: UInt32)
    case invalidFieldNumber(UInt64)
    case wrongWireType(field: UInt32, expected: WireType, actual: WireType)
    case missingRequiredField(message: String, field: String)
    case unknownMessageType(UInt16)
    case tooDeep(limit: Int)
    case tooManyElements(field: UInt32, limit: Int)
    case stringTooLong(length: Int, limit: Int)
    case invalidUTF8(field: UInt32)
    case invalidValue(field: String, reason: String)
    case wrongMessageType(expected: UInt16, actual: UInt16)

    public var description: String {
        switch self {
        case .truncated(let what): return "truncated \(what)"
        case .frameTooLarge(let length, let maximum): return "frame of \(length) bytes exceeds the maximum of \(maximum)"
        case .badMagic(let magic): return "bad preamble magic 0x\(String(magic, radix: 16))"
        case .unsupportedVersion(let major, let supported): return "protocol major version \(major) is not supported (this peer speaks \(supported))"
        case .reservedBitsSet(let what): return "reserved bits set in \(what)"
        case .unknownFrameKind(let kind): return "unknown frame kind \(kind)"
        case .malformedVarint: return "malformed varint (longer than 10 bytes or above 64 bits)"
        case .invalidWireType(let type, let field): return "invalid wire type \(type) for field \(field)"
        case .invalidFieldNumber(let number): return "invalid field number \(number)"
        case .wrongWireType(let field, let expected, let actual): return "field \(field) has wire type \(actual), expected \(expected)"
        case .missingRequiredField(let message, let field): return "\(message) lacks its required field \(field)"
        case .unknownMessageType(let type): return "unknown message type \(type)"
        case .tooDeep(let limit): return "messages nested deeper than \(limit)"
        case .tooManyElements(let field, let limit): return "field \(field) repeats more than \(limit) times"
        case .stringTooLong(let length, let limit): return "a string of \(length) bytes exceeds the limit of \(limit)"
        case .invalidUTF8(let field): return "field \(field) is not valid UTF-8"
        case .invalidValue(let field, let reason): return "\(field): \(reason)"
        case .wrongMessageType(let expected, let actual): return "expected message type \(expected), got \(actual)"
        }
    }

    /// The code a peer reports this error with.
    public var code: WireErrorCode {
        switch self {
        case .frameTooLarge: return .frameTooLarge
        case .unsupportedVersion: return .unsupportedVersion
        case .unknownMessageType: return .unknownMessageType
        case .badMagic, .unknownFrameKind, .reservedBitsSet: return .protocolViolation
        default: return .malformed
        }
    }
}

/// The limits a decoder enforces (SPEC.md, "Limits").
public struct WireLimits: Equatable, Sendable {
    /// The largest frame payload accepted, in bytes.
    public var maxFrameSize: UInt32
    /// How deep messages may nest.
    public var maxDepth: Int
    /// How many times one field may occur in one message.
    public var maxRepeated: Int
    /// The longest string, in bytes.
    public var maxStringLength: Int

    public init(maxFrameSize: UInt32 = 1 << 20, maxDepth: Int = 16, maxRepeated: Int = 65_536,
                maxStringLength: Int = 65_536) {
        self.maxFrameSize = maxFrameSize
        self.maxDepth = maxDepth
        self.maxRepeated = maxRepeated
        self.maxStringLength = maxStringLength
    }

    public static let standard = WireLimits()
}
