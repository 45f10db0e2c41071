public import NIOCore

/// What a frame carries (SPEC.md, "Frames").
public enum FrameKind: UInt8, Sendable, Equatable, CaseIterable {
    case request = 1
    case response = 2
    case error = 3
    case event = 4
    case streamChunk = 5
    case streamEnd = 6
    case ping = 7
    case pong = 8
    case goaway = 9
    case windowUpdate = 10
    case cancel = 11
}

/// The 16-byte frame header: payload length (u32), kind (u8), flags (u8), message type
/// (u16), request or stream id (u64), all little-endian.
public struct FrameHeader: Equatable, Sendable {
    public static let size = 16

    public var length: UInt32
    public var kind: FrameKind
    public var flags: UInt8
    public var messageType: MessageType
    public var id: UInt64

    public init(length: UInt32, kind: FrameKind, flags: UInt8 = 0, messageType: MessageType = 0, id: UInt64 = 0) {
        self.length = length
        self.kind = kind
        self.flags = flags
        self.messageType = messageType
        self.id = id
    }

    /// Flag of a request frame: the request opens a stream of chunks that follows it.
    public static let opensStream: UInt8 = 1 << 0

    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(length, endianness: .little)
        buffer.writeInteger(kind.rawValue)
        buffer.writeInteger(flags)
        buffer.writeInteger(messageType, endianness: .little)
        buffer.writeInteger(id, endianness: .little)
    }

    /// Parses a header from exactly 16 readable bytes, checking the length against
    /// `maxFrameSize` before anything else is read or buffered.
    public static func read(from buffer: inout ByteBuffer, maxFrameSize: UInt32) throws(WireError) -> FrameHeader? {
        guard buffer.readableBytes >= size else { return nil }
        let start = buffer.readerIndex
        let length = buffer.getInteger(at: start, endianness: .little, as: UInt32.self)!
        if length > maxFrameSize { throw .frameTooLarge(length: length, maximum: maxFrameSize) }
        let rawKind = buffer.getInteger(at: start + 4, as: UInt8.self)!
        guard let kind = FrameKind(rawValue: rawKind) else { throw .unknownFrameKind(rawKind) }
        let flags = buffer.getInteger(at: start + 5, as: UInt8.self)!
        if flags & ~FrameHeader.opensStream != 0 { throw .reservedBitsSet("frame flags") }
        let messageType = buffer.getInteger(at: start + 6, endianness: .little, as: UInt16.self)!
        let id = buffer.getInteger(at: start + 8, endianness: .little, as: UInt64.self)!
        buffer.moveReaderIndex(forwardBy: size)
        return FrameHeader(length: length, kind: kind, flags: flags, messageType: messageType, id: id)
    }
}

/// A frame: its header and its payload.
public struct Frame: Equatable, Sendable {
    public var header: FrameHeader
    public var payload: ByteBuffer

    public init(kind: FrameKind, flags: UInt8 = 0, messageType: MessageType = 0, id: UInt64 = 0, payload: ByteBuffer) {
        self.header = FrameHeader(length: UInt32(payload.readableBytes), kind: kind, flags: flags,
                                  messageType: messageType, id: id)
        self.payload = payload
    }

    public var kind: FrameKind { header.kind }
    public var id: UInt64 { header.id }
    public var messageType: MessageType { header.messageType }

    /// A frame carrying an encoded message.
    public static func message<M: WireMessage>(_ kind: FrameKind, id: UInt64, _ message: M, flags: UInt8 = 0) -> Frame {
        Frame(kind: kind, flags: flags, messageType: M.messageType, id: id, payload: message.encoded())
    }

    public func write(to buffer: inout ByteBuffer) {
        header.write(to: &buffer)
        var payload = self.payload
        buffer.writeBuffer(&payload)
    }

    /// Decodes the payload as `M`, checking the frame's message type.
    public func decode<M: WireMessage>(_ type: M.Type = M.self, limits: WireLimits = .standard) throws(WireError) -> M {
        guard header.messageType == M.messageType else {
            throw .wrongMessageType(expected: M.messageType, actual: header.messageType)
        }
        return try M.decode(payload, limits: limits)
    }
}

/// The connection preamble each side sends first (SPEC.md, "Preamble"): magic "NSTR",
/// major and minor version (u16 each), the largest frame the sender accepts (u32), and 4
/// reserved bytes that must be zero.
public struct Preamble: Equatable, Sendable {
    public static let size = 16
    public static let magic: UInt32 = 0x5254_534E   // "NSTR" read little-endian
    public static let currentMajor: UInt16 = 1
    public static let currentMinor: UInt16 = 0

    public var major: UInt16
    public var minor: UInt16
    public var maxFrameSize: UInt32

    public init(major: UInt16 = Preamble.currentMajor, minor: UInt16 = Preamble.currentMinor, maxFrameSize: UInt32) {
        self.major = major
        self.minor = minor
        self.maxFrameSize = maxFrameSize
    }

    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(Preamble.magic, endianness: .little)
        buffer.writeInteger(major, endianness: .little)
        buffer.writeInteger(minor, endianness: .little)
        buffer.writeInteger(maxFrameSize, endianness: .little)
        buffer.writeInteger(UInt32(0), endianness: .little)
    }

    /// Parses a preamble from 16 readable bytes, or returns nil when fewer arrived.
    /// A wrong magic or non-zero reserved bytes are errors; the version is checked by the caller.
    public static func read(from buffer: inout ByteBuffer) throws(WireError) -> Preamble? {
        guard buffer.readableBytes >= size else { return nil }
        let magic = buffer.readInteger(endianness: .little, as: UInt32.self)!
        guard magic == Preamble.magic else { throw .badMagic(magic) }
        let major = buffer.readInteger(endianness: .little, as: UInt16.self)!
        let minor = buffer.readInteger(endianness: .little, as: UInt16.self)!
        let maxFrame = buffer.readInteger(endianness: .little, as: UInt32.self)!
        let reserved = buffer.readInteger(endianness: .little, as: UInt32.self)!
        if reserved != 0 { throw .reservedBitsSet("preamble") }
        return Preamble(major: major, minor: minor, maxFrameSize: maxFrame)
    }
}

/// Splits a byte stream into a preamble and then frames, checking each frame's length
/// against the limit before buffering its payload.
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Inbound

    public enum Inbound: Sendable {
        case preamble(Preamble)
        case frame(Frame)
    }

    public var maxFrameSize: UInt32
    private var sawPreamble = false
    private var pendingHeader: FrameHeader?

    public init(maxFrameSize: UInt32) { self.maxFrameSize = maxFrameSize }

    /// True while a frame has started but its payload has not fully arrived.
    public var isMidFrame: Bool { pendingHeader != nil }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let item = try next(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(item))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }

    /// The next preamble or frame from `buffer`, or nil when more bytes are needed.
    public mutating func next(from buffer: inout ByteBuffer) throws(WireError) -> Inbound? {
        if !sawPreamble {
            guard let preamble = try Preamble.read(from: &buffer) else { return nil }
            sawPreamble = true
            return .preamble(preamble)
        }
        if pendingHeader == nil {
            guard let header = try FrameHeader.read(from: &buffer, maxFrameSize: maxFrameSize) else { return nil }
            pendingHeader = header
        }
        let header = pendingHeader!
        guard let payload = buffer.readSlice(length: Int(header.length)) else { return nil }
        pendingHeader = nil
        return .frame(Frame(kind: header.kind, flags: header.flags, messageType: header.messageType,
                            id: header.id, payload: payload))
    }
}
