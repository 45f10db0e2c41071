/// What a link does to the bytes going one way, as Toxiproxy's toxics do: delay them (with
/// jitter), limit their rate, cut them into small segments, hold them all (a blackhole), or let
/// through only so many and then close.
public struct DirectionFaults: Sendable, Equatable, Codable, CustomStringConvertible {
    public var latencyMillis: Double
    /// Each chunk's latency varies by up to this much either way (never below zero).
    public var jitterMillis: Double
    /// The rate the bytes leave at; nil: as fast as they come.
    public var bytesPerSecond: Double?
    /// Nothing goes through and nothing is lost: the bytes (and a close) wait until the
    /// blackhole is lifted, as a network partition holds TCP's retransmissions.
    public var blackholed: Bool
    /// Chunks are cut into segments of at most this many bytes; nil: not cut.
    public var sliceBytes: Int?
    /// The pause between two segments of one chunk.
    public var sliceDelayMillis: Double
    /// After this many bytes have gone this way on a connection, the connection is closed
    /// and the rest dropped; nil: no limit.
    public var closeAfterBytes: UInt64?

    public init(latencyMillis: Double = 0, jitterMillis: Double = 0, bytesPerSecond: Double? = nil, blackholed: Bool = false,
                sliceBytes: Int? = nil, sliceDelayMillis: Double = 0, closeAfterBytes: UInt64? = nil) {
        self.latencyMillis = latencyMillis
        self.jitterMillis = jitterMillis
        self.bytesPerSecond = bytesPerSecond
        self.blackholed = blackholed
        self.sliceBytes = sliceBytes
        self.sliceDelayMillis = sliceDelayMillis
        self.closeAfterBytes = closeAfterBytes
    }

    public static let healthy = DirectionFaults()

    public var isHealthy: Bool { self == .healthy }

    /// Why these values describe no link, or nil when they are good.
    public var problem: String? {
        if !(latencyMillis >= 0 && latencyMillis <= 600_000) { return "latency \(latencyMillis) ms is not between 0 and 600000" }
        if !(jitterMillis >= 0 && jitterMillis <= 600_000) { return "jitter \(jitterMillis) ms is not between 0 and 600000" }
        if let rate = bytesPerSecond, !(rate >= 1 && rate <= 1e12) { return "bandwidth \(rate) bytes/s is not between 1 and 1e12" }
        if let slice = sliceBytes, !(1...1_048_576).contains(slice) { return "slice \(slice) bytes is not between 1 and 1048576" }
        if !(sliceDelayMillis >= 0 && sliceDelayMillis <= 10_000) { return "slice delay \(sliceDelayMillis) ms is not between 0 and 10000" }
        return nil
    }

    public var description: String {
        var parts: [String] = []
        if blackholed { parts.append("blackholed") }
        if latencyMillis > 0 || jitterMillis > 0 { parts.append("latency \(Self.number(latencyMillis))±\(Self.number(jitterMillis)) ms") }
        if let rate = bytesPerSecond { parts.append("\(Self.number(rate * 8 / 1000)) kbit/s") }
        if let slice = sliceBytes { parts.append("sliced \(slice) B/\(Self.number(sliceDelayMillis)) ms") }
        if let limit = closeAfterBytes { parts.append("closed after \(limit) B") }
        return parts.isEmpty ? "healthy" : parts.joined(separator: ", ")
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }
}

/// A link's faults both ways: toward the server (the controller) and toward the client (the
/// agent). A one-way cut blackholes one direction only: A hears B, B does not hear A.
public struct LinkFaults: Sendable, Equatable, Codable, CustomStringConvertible {
    public var toServer: DirectionFaults
    public var toClient: DirectionFaults

    public init(toServer: DirectionFaults = .healthy, toClient: DirectionFaults = .healthy) {
        self.toServer = toServer
        self.toClient = toClient
    }

    /// The same faults both ways.
    public init(both: DirectionFaults) { self.init(toServer: both, toClient: both) }

    public static let healthy = LinkFaults()

    public var description: String {
        toServer == toClient ? "both ways \(toServer)" : "to server \(toServer); to client \(toClient)"
    }
}
