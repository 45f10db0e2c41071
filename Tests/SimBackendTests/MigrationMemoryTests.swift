import Partitioner
import SimBackend
import Testing

/// The sim backend's migration memory and the stream's records: what a pre-copy moves is the
/// memory the source holds at its pause, byte for byte; the reader refuses a bad stream.
@Suite struct MigrationMemoryTests {
    /// Pre-copy with a guest writing between rounds, then a paused last round: the copy hashes
    /// like the source.
    @Test(arguments: [0, 64 << 20, 1 << 30] as [UInt64])
    func preCopyRoundsThenAPausedLastRoundCopyEveryByte(dirtyRate: UInt64) throws {
        var source = SimMemoryImage(bytes: 64 << 20, seed: 7, dirtyBytesPerSecond: dirtyRate)
        var target = SimMemoryImage(empty: 64 << 20)
        var reader = MigrationStreamReader(pageCount: target.pageCount, payloadBytesPerPage: 8, maxPayload: 1 << 20)
        source.startTracking()
        var round: UInt32 = 1
        var dirty = source.collectDirty()
        func send(_ ranges: [Range<UInt64>]) throws {
            for range in ranges {
                var first = range.lowerBound
                while first < range.upperBound {
                    let end = min(range.upperBound, first + 1000)
                    let bytes = MigrationRecord.pages(round: round, firstPage: first, count: UInt32(end - first), payload: source.payload(first..<end)).encoded
                    // Delivered in uneven slices, as a stream may cut them.
                    for slice in stride(from: 0, to: bytes.count, by: 777) {
                        for case .pages(_, let at, _, let payload) in try reader.read(bytes[slice..<min(bytes.count, slice + 777)]) {
                            target.store(payload, from: at)
                        }
                    }
                    first = end
                }
            }
        }
        for _ in 0..<3 {
            try send(dirty)
            source.run(seconds: 0.05)
            dirty = source.collectDirty()
            round += 1
        }
        if dirtyRate > 0 { #expect(!dirty.isEmpty) }
        try send(dirty)   // paused: nothing runs any more
        _ = try reader.read(MigrationRecord.state([1, 2, 3]).encoded)
        _ = try reader.read(MigrationRecord.commit(rounds: round, memoryHash: source.hash).encoded)
        try reader.finish()
        #expect(target.hash == source.hash)
        #expect(target.words == source.words)
    }

    @Test func theReaderRefusesWhatTheAnnouncementDoesNotAllow() throws {
        let page = [UInt8](repeating: 1, count: 8)
        func refusal(_ records: [[UInt8]], pages: UInt64 = 16) -> String? {
            var reader = MigrationStreamReader(pageCount: pages, payloadBytesPerPage: 8, maxPayload: 64)
            do {
                for record in records { _ = try reader.read(record) }
                try reader.finish()
                return nil
            } catch { return error.reason }
        }
        var corrupted = MigrationRecord.pages(round: 1, firstPage: 0, count: 1, payload: page).encoded
        corrupted[22] ^= 0xff
        var lengthLie = MigrationRecord.pages(round: 1, firstPage: 0, count: 1, payload: page).encoded
        lengthLie[17] = 9
        let state = MigrationRecord.state([]).encoded
        let commit = MigrationRecord.commit(rounds: 1, memoryHash: 0).encoded
        #expect(refusal([corrupted])?.contains("checksum") == true)
        #expect(refusal([lengthLie])?.contains("carries 9 bytes") == true)
        #expect(refusal([MigrationRecord.pages(round: 1, firstPage: 15, count: 2, payload: page + page).encoded])?.contains("beyond") == true)
        #expect(refusal([MigrationRecord.pages(round: 1, firstPage: 0, count: 9, payload: Array(repeating: 0, count: 72)).encoded])?.contains("exceeds") == true)
        #expect(refusal([MigrationRecord.pages(round: 2, firstPage: 0, count: 1, payload: page).encoded,
                         MigrationRecord.pages(round: 1, firstPage: 0, count: 1, payload: page).encoded])?.contains("round 1 after round 2") == true)
        #expect(refusal([commit])?.contains("before the state") == true)
        #expect(refusal([state, state])?.contains("second state") == true)
        #expect(refusal([state, commit, [1]])?.contains("after the commit") == true)
        #expect(refusal([state])?.contains("without a commit") == true)
        #expect(refusal([[7]])?.contains("unknown record kind 7") == true)
        #expect(refusal([state, MigrationRecord.pages(round: 1, firstPage: 0, count: 1, payload: page).encoded])?.contains("after the state") == true)
        #expect(refusal([MigrationRecord.pages(round: 1, firstPage: 0, count: 1, payload: page).encoded, state, commit]) == nil)
    }
}

