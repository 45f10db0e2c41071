/// Refusals by authorization, counted per peer and summarized in admin-only events: at most
/// one event per peer per `interval`, so that a client repeating a refused request cannot
/// flood the event log, while no refusal goes uncounted. Pure: time comes in.
public struct AuditTrail: Sendable {
    struct Pending: Sendable {
        var count = 0
        var last = ""
        var reportedAt: UInt64?
    }

    public let intervalMillis: UInt64
    private var pending: [String: Pending] = [:]

    public init(intervalMillis: UInt64 = 10_000) { self.intervalMillis = intervalMillis }

    /// Counts one refusal of `peer`'s `request` (`what`: the object and why); returns the
    /// event to record now, or nil when this peer was reported within the interval.
    public mutating func refused(peer: String, request: String, what: String, atMillis now: UInt64, wallMillis: UInt64) -> ClusterEvent? {
        var entry = pending[peer] ?? Pending()
        entry.count += 1
        entry.last = "\(request): \(what)"
        defer { pending[peer] = entry }
        if let reported = entry.reportedAt, now >= reported, now - reported < intervalMillis { return nil }
        return report(peer, &entry, at: now, wallMillis: wallMillis)
    }

    /// The events for refusals counted but not yet reported whose interval has passed.
    public mutating func flush(atMillis now: UInt64, wallMillis: UInt64) -> [ClusterEvent] {
        var events: [ClusterEvent] = []
        for peer in pending.keys.sorted() {
            guard var entry = pending[peer], entry.count > 0 else { continue }
            if let reported = entry.reportedAt, now >= reported, now - reported < intervalMillis { continue }
            events.append(report(peer, &entry, at: now, wallMillis: wallMillis))
            pending[peer] = entry
        }
        return events
    }

    private func report(_ peer: String, _ entry: inout Pending, at now: UInt64, wallMillis: UInt64) -> ClusterEvent {
        let text = entry.count == 1 ? "1 request refused" : "\(entry.count) requests refused"
        let event = ClusterEvent(timeMillis: wallMillis, kind: "request.denied", subject: peer,
                                 message: "\(text) by authorization; last: \(entry.last)")
        entry.count = 0
        entry.reportedAt = now
        return event
    }
}
