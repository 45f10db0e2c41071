public import SeededRandom

/// The memory of an LPAR on the simulated backend, as migration sees it: one 8-byte content
/// word per 4 KiB page (a page's content changes when the guest writes it), a dirty bitmap
/// like KVM's dirty log, and writes at a modelled rate. The words stand in for the bytes, so
/// that a simulated blade can hold and move many GiB; what moves, what is checked and when a
/// page is dirty follow the real path.
public struct SimMemoryImage: Sendable, Equatable {
    public static let pageSize: UInt64 = 4096
    public private(set) var words: [UInt64]
    private var dirty: [UInt64]
    public private(set) var tracking = false
    private var rng: SplitMix64
    private var writes: UInt64 = 0
    /// Bytes the guest writes per second (distinct pages touched at random).
    public var dirtyBytesPerSecond: UInt64
    /// Whole vCPU throttling applied by the migration (percent of time the guest may run).
    public var throttlePercent = 0
    /// Writes owed from fractions of pages in earlier intervals.
    private var carry: Double = 0

    public init(bytes: UInt64, seed: UInt64, dirtyBytesPerSecond: UInt64 = 0) {
        let pages = Int(bytes / Self.pageSize)
        var rng = SplitMix64(seed: seed)
        words = (0..<pages).map { _ in rng.next() }
        dirty = Array(repeating: 0, count: (pages + 63) / 64)
        self.rng = rng
        self.dirtyBytesPerSecond = dirtyBytesPerSecond
    }

    /// An empty image of `bytes` (a migration's target fills it).
    public init(empty bytes: UInt64) {
        let pages = Int(bytes / Self.pageSize)
        words = Array(repeating: 0, count: pages)
        dirty = Array(repeating: 0, count: (pages + 63) / 64)
        rng = SplitMix64(seed: 0)
        dirtyBytesPerSecond = 0
    }

    public var pageCount: UInt64 { UInt64(words.count) }

    /// The guest ran for `seconds`: it wrote its rate's worth of pages (fewer when throttled).
    public mutating func run(seconds: Double) {
        guard dirtyBytesPerSecond > 0, !words.isEmpty, seconds > 0 else { return }
        let share = Double(100 - throttlePercent) / 100
        carry += Double(dirtyBytesPerSecond) * seconds * share / Double(Self.pageSize)
        let pages = Int(carry)
        carry -= Double(pages)
        for _ in 0..<pages {
            let page = Int(rng.next() % UInt64(words.count))
            writes += 1
            words[page] = rng.next() ^ writes
            if tracking { dirty[page / 64] |= 1 << UInt64(page % 64) }
        }
    }

    /// Starts the dirty log with every page dirty (the first round sends them all).
    public mutating func startTracking() {
        tracking = true
        for index in dirty.indices { dirty[index] = ~0 }
        let tail = words.count % 64
        if tail != 0, !dirty.isEmpty { dirty[dirty.count - 1] = (1 << UInt64(tail)) - 1 }
    }

    public mutating func stopTracking() {
        tracking = false
        for index in dirty.indices { dirty[index] = 0 }
    }

    /// The dirty pages as ranges, and the log cleared (KVM_GET_DIRTY_LOG's semantics).
    public mutating func collectDirty() -> [Range<UInt64>] {
        var ranges: [Range<UInt64>] = []
        var start: UInt64?
        for index in dirty.indices {
            var bits = dirty[index]
            let base = UInt64(index) * 64
            if bits == 0 {
                if let first = start { ranges.append(first..<base); start = nil }
                continue
            }
            if bits == ~0 {
                if start == nil { start = base }
                continue
            }
            var offset: UInt64 = 0
            while offset < 64 {
                if start == nil {
                    guard bits != 0 else { break }
                    let skip = UInt64(bits.trailingZeroBitCount)
                    offset += skip
                    bits >>= skip
                    start = base + offset
                } else {
                    let run = UInt64((~bits).trailingZeroBitCount)
                    offset += run
                    bits = run == 64 ? 0 : bits >> run
                    if offset < 64 { ranges.append(start!..<(base + offset)); start = nil }
                }
            }
            dirty[index] = 0
        }
        if let first = start { ranges.append(first..<UInt64(words.count)) }
        for index in dirty.indices { dirty[index] = 0 }
        return ranges
    }

    /// The content words of `pages`, little-endian, 8 bytes each.
    public func payload(_ pages: Range<UInt64>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(pages.count * 8)
        for page in pages {
            let word = words[Int(page)]
            for byte in 0..<8 { out.append(UInt8(truncatingIfNeeded: word >> (8 * UInt64(byte)))) }
        }
        return out
    }

    /// Writes received content words (8 bytes per page) from `first` on.
    public mutating func store(_ payload: [UInt8], from first: UInt64) {
        for index in 0..<(payload.count / 8) {
            var word: UInt64 = 0
            for byte in 0..<8 { word |= UInt64(payload[index * 8 + byte]) << (8 * UInt64(byte)) }
            words[Int(first) + index] = word
        }
    }

    /// A hash of the whole memory (every page's word in order).
    public var hash: UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for word in words {
            hash = (hash ^ word) &* 0x0000_0100_0000_01b3
            hash ^= hash >> 29
        }
        return hash ^ UInt64(words.count)
    }
}
