/// The records a migration's source writes into the stream it opened on the target
/// (Protos/SPEC.md section 12), and the target's checks of them. Pure: bytes in, records or
/// a refusal out; the receiver treats the stream as hostile.
///
///     pages   1, round u32, first page u64, page count u32, payload length u32, payload, checksum u64
///     state   2, payload length u32, payload, checksum u64
///     commit  3, rounds u32, memory hash u64
///
/// Integers are little-endian. A page's payload is its bytes (`pageBytes`) or, on the
/// simulated backend, its 8-byte content word (`pageWords`).
public enum MigrationRecord: Equatable, Sendable {
    case pages(round: UInt32, firstPage: UInt64, count: UInt32, payload: [UInt8])
    case state([UInt8])
    case commit(rounds: UInt32, memoryHash: UInt64)

    /// The record's bytes, checksums included.
    public var encoded: [UInt8] {
        var out: [UInt8] = []
        switch self {
        case .pages(let round, let first, let count, let payload):
            out.reserveCapacity(payload.count + 32)
            out.append(1)
            Self.put(UInt64(round), 4, &out)
            Self.put(first, 8, &out)
            Self.put(UInt64(count), 4, &out)
            Self.put(UInt64(payload.count), 4, &out)
            out += payload
            Self.put(MigrationChecksum.of(payload), 8, &out)
        case .state(let payload):
            out.append(2)
            Self.put(UInt64(payload.count), 4, &out)
            out += payload
            Self.put(MigrationChecksum.of(payload), 8, &out)
        case .commit(let rounds, let hash):
            out.append(3)
            Self.put(UInt64(rounds), 4, &out)
            Self.put(hash, 8, &out)
        }
        return out
    }

    static func put(_ value: UInt64, _ width: Int, _ out: inout [UInt8]) {
        for index in 0..<width { out.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(index)))) }
    }
}

/// A 64-bit checksum of a byte string (FNV-1a over 8-byte little-endian words, then the tail
/// bytes); it detects a changed or shifted chunk, not a forger (TLS keeps those out).
public enum MigrationChecksum {
    public static func of(_ bytes: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        let words = bytes.count / 8
        bytes.withUnsafeBytes { raw in
            for index in 0..<words {
                let word = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self))
                hash = (hash ^ word) &* 0x0000_0100_0000_01b3
                hash ^= hash >> 29
            }
            for index in (words * 8)..<bytes.count {
                hash = (hash ^ UInt64(raw[index])) &* 0x0000_0100_0000_01b3
            }
        }
        return hash ^ UInt64(bytes.count)
    }
}

/// Why the target refused a migration stream.
public struct MigrationStreamError: Error, Equatable, Sendable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// The target's reader of a migration stream: bytes go in as they arrive, complete records
/// come out, each checked against what the controller announced (the page count, the
/// payload size per page) and against the stream so far (rounds only go forward, one state,
/// the commit last). Nothing is buffered beyond one record, and a record's length is checked
/// before its payload is buffered.
public struct MigrationStreamReader: Sendable {
    public let pageCount: UInt64
    public let payloadBytesPerPage: Int
    /// The largest payload one record may carry.
    public let maxPayload: Int
    private var buffer: [UInt8] = []
    private var round: UInt32 = 0
    private var sawState = false
    public private(set) var committed = false
    public private(set) var pagesReceived: UInt64 = 0
    public private(set) var bytesReceived: UInt64 = 0

    public init(pageCount: UInt64, payloadBytesPerPage: Int, maxPayload: Int = 8 << 20) {
        self.pageCount = pageCount
        self.payloadBytesPerPage = payloadBytesPerPage
        self.maxPayload = maxPayload
    }

    /// The records `bytes` complete, in order; a refusal ends the stream.
    public mutating func read(_ bytes: some Collection<UInt8>) throws(MigrationStreamError) -> [MigrationRecord] {
        bytesReceived += UInt64(bytes.count)
        if committed && !bytes.isEmpty { throw MigrationStreamError("bytes after the commit record") }
        buffer.append(contentsOf: bytes)
        var records: [MigrationRecord] = []
        var offset = 0
        while let (record, length) = try next(at: offset) {
            records.append(record)
            offset += length
            if committed && offset < buffer.count { throw MigrationStreamError("bytes after the commit record") }
        }
        buffer.removeFirst(offset)
        return records
    }

    /// The stream ended: it must have ended with the commit record.
    public func finish() throws(MigrationStreamError) {
        guard committed else {
            throw MigrationStreamError(buffer.isEmpty ? "the stream ended without a commit record" : "the stream ended inside a record")
        }
    }

    private func integer(_ at: Int, _ width: Int) -> UInt64 {
        var value: UInt64 = 0
        for index in 0..<width { value |= UInt64(buffer[at + index]) << (8 * UInt64(index)) }
        return value
    }

    private mutating func next(at start: Int) throws(MigrationStreamError) -> (MigrationRecord, Int)? {
        let available = buffer.count - start
        guard available >= 1 else { return nil }
        switch buffer[start] {
        case 1:
            guard available >= 21 else { return nil }
            let round = UInt32(integer(start + 1, 4)), first = integer(start + 5, 8)
            let count = UInt32(integer(start + 13, 4)), length = Int(integer(start + 17, 4))
            guard length <= maxPayload else { throw MigrationStreamError("a pages record of \(length) bytes exceeds \(maxPayload)") }
            guard count > 0, UInt64(count) * UInt64(payloadBytesPerPage) == UInt64(length) else {
                throw MigrationStreamError("a pages record of \(count) pages carries \(length) bytes, not \(UInt64(count) * UInt64(payloadBytesPerPage))")
            }
            guard first < pageCount, UInt64(count) <= pageCount - first else {
                throw MigrationStreamError("pages \(first)..<\(first &+ UInt64(count)) lie beyond the LPAR's \(pageCount) pages")
            }
            guard round >= self.round else { throw MigrationStreamError("round \(round) after round \(self.round)") }
            guard !sawState else { throw MigrationStreamError("pages after the state record") }
            guard available >= 21 + length + 8 else { return nil }
            let payload = Array(buffer[(start + 21)..<(start + 21 + length)])
            guard integer(start + 21 + length, 8) == MigrationChecksum.of(payload) else {
                throw MigrationStreamError("the checksum of pages \(first)..<\(first + UInt64(count)) (round \(round)) does not match")
            }
            self.round = round
            pagesReceived += UInt64(count)
            return (.pages(round: round, firstPage: first, count: count, payload: payload), 21 + length + 8)
        case 2:
            guard available >= 5 else { return nil }
            let length = Int(integer(start + 1, 4))
            guard length <= maxPayload else { throw MigrationStreamError("a state record of \(length) bytes exceeds \(maxPayload)") }
            guard !sawState else { throw MigrationStreamError("a second state record") }
            guard available >= 5 + length + 8 else { return nil }
            let payload = Array(buffer[(start + 5)..<(start + 5 + length)])
            guard integer(start + 5 + length, 8) == MigrationChecksum.of(payload) else {
                throw MigrationStreamError("the checksum of the state record does not match")
            }
            sawState = true
            return (.state(payload), 5 + length + 8)
        case 3:
            guard available >= 13 else { return nil }
            guard sawState else { throw MigrationStreamError("a commit record before the state record") }
            committed = true
            return (.commit(rounds: UInt32(integer(start + 1, 4)), memoryHash: integer(start + 5, 8)), 13)
        case let kind:
            throw MigrationStreamError("unknown record kind \(kind)")
        }
    }
}
