public import AgentCore
import Foundation
import Logging
import NIOCore
import Partitioner
import Protos
public import Wire
import WireCodec

/// The source's half of a migration's data path: it dials the target agent's listener (the
/// target's own certificate, `nestor://agent/TARGET`), opens a stream and writes the memory
/// in pre-copy rounds while the guest runs, then pauses the guest and writes the last dirty
/// pages, the state and the commit. `PreCopyConvergence` decides each round's end.
struct MigrationSender: Sendable {
    let migration: OutgoingMigration
    let sourceBlade: String
    let driver: any LPARMigrating
    let tls: TLSIdentity
    let logger: Logger
    /// Reports each step to the agent's core.
    let report: @Sendable (MigrationUpdate) async -> Void

    /// Runs the migration to its hand-over or its failure; the guest runs on after a failure.
    func run() async {
        let lpar = migration.spec.name
        do {
            let figures = try await transfer()
            await report(.progress(.handedOver, figures))
            logger.notice("migration handed over", metadata: [
                "migration.id": "\(migration.id)", "lpar.name": "\(lpar)", "migration.target": "\(migration.target)",
                "migration.rounds": "\(figures.round)", "migration.downtime.ms": "\(figures.downtimeMillis ?? 0)"])
        } catch is CancellationError {
            // Cancelled by the migration's end, whose directive ends it on the driver too.
        } catch {
            await driver.endOutgoing(lpar, resume: true)
            await report(.failed(reason: "\(error)"))
        }
    }

    private func transfer() async throws -> MigrationFigures {
        let lpar = migration.spec.name
        guard let endpoint = Endpoint(migration.address) else {
            throw MigrationBackendError("the target's migration address '\(migration.address)' is not HOST:PORT")
        }
        let layout = try await driver.startOutgoing(lpar)
        let connection: WireConnection
        do {
            connection = try await WireClient.connect(host: endpoint.host, port: endpoint.port, tls: tls,
                                                      server: .identity(PeerIdentity(role: .agent, name: migration.target)),
                                                      logger: logger, connectTimeout: .seconds(5))
        } catch {
            throw MigrationBackendError("cannot reach the target agent \(migration.target) at \(migration.address): \(error)")
        }
        defer { Task { await connection.close(reason: "migration stream over") } }
        let begin = MigrationBeginRequest(
            migrationID: migration.id, partition: lpar, sourceBlade: sourceBlade, lpar: Self.definition(migration.spec),
            pageSize: UInt32(clamping: layout.pageSize), encoding: layout.payloadBytesPerPage == 8 ? .pageWords : .pageBytes)
        let pagesPerRecord = UInt64(max(1, (1 << 20) / layout.payloadBytesPerPage))
        let clock = ContinuousClock()
        let started = clock.now
        var figures = MigrationFigures()
        var paused: ContinuousClock.Instant?
        var committedHash: UInt64 = 0
        let driver = self.driver
        let answer = try await connection.upload(begin, expecting: MigrationReadyResponse.self, timeout: .seconds(3600)) { writer in
            var convergence = PreCopyConvergence(policy: PreCopyPolicy(maxDowntimeMillis: Double(migration.maxDowntimeMillis)))
            var dirty = try await driver.collectDirty(lpar)
            var round: UInt32 = 1
            /// Sends the pages of `ranges` as records of at most `pagesPerRecord` pages, many
            /// records to one read of the driver and one write of the stream.
            func send(_ ranges: [Range<UInt64>]) async throws -> UInt64 {
                var pages: UInt64 = 0
                var batch: [Range<UInt64>] = []
                var batchPages: UInt64 = 0
                func flush() async throws {
                    guard !batch.isEmpty else { return }
                    let payloads = try await driver.readPages(lpar, batch)
                    var bytes: [UInt8] = []
                    for (range, payload) in zip(batch, payloads) {
                        bytes += MigrationRecord.pages(round: round, firstPage: range.lowerBound, count: UInt32(range.count), payload: payload).encoded
                    }
                    try await writer.write(ByteBuffer(bytes: bytes))
                    batch.removeAll(keepingCapacity: true)
                    batchPages = 0
                }
                for range in ranges {
                    var first = range.lowerBound
                    while first < range.upperBound {
                        let end = min(range.upperBound, first + pagesPerRecord)
                        batch.append(first..<end)
                        batchPages += end - first
                        pages += end - first
                        first = end
                        if batchPages >= pagesPerRecord || batch.count >= 8192 { try await flush() }
                    }
                }
                try await flush()
                return pages * layout.pageSize
            }
            while true {
                let roundStart = clock.now
                let sent = try await send(dirty)
                let roundMillis = Self.millis(clock.now - roundStart)
                dirty = try await driver.collectDirty(lpar)
                let remaining = dirty.reduce(UInt64(0)) { $0 + UInt64($1.count) } * layout.pageSize
                figures.round = Int(round)
                figures.sentBytes += sent
                figures.remainingBytes = remaining
                figures.linkBytesPerSecond = roundMillis > 0 ? UInt64(Double(sent) / roundMillis * 1000) : figures.linkBytesPerSecond
                figures.dirtyBytesPerSecond = roundMillis > 0 ? UInt64(Double(remaining) / roundMillis * 1000) : 0
                let decision = convergence.decide(after: PreCopyRound(bytesSent: sent, millis: roundMillis, remainingBytes: remaining,
                                                                      endedAtMillis: Self.millis(clock.now - started)))
                switch decision {
                case .anotherRound(let throttle):
                    await driver.throttle(lpar, percent: throttle)
                    await report(.progress(.copying, figures))
                    round += 1
                    continue
                case .abort(let reason):
                    throw MigrationBackendError(reason)
                case .switchover:
                    break
                }
                break
            }
            // Switchover: the guest stops; what it dirtied since, and its state, go last.
            try await driver.pause(lpar)
            paused = clock.now
            await report(.progress(.switchover, figures))
            round += 1
            // What the last round left, and what the guest wrote until it stopped.
            let last = Self.union(dirty, try await driver.collectDirty(lpar))
            figures.sentBytes += try await send(last)
            figures.remainingBytes = 0
            figures.round = Int(round)
            let state = try await driver.finalState(lpar)
            try await writer.write(ByteBuffer(bytes: MigrationRecord.state(state).encoded))
            let hash = try await driver.memoryHash(lpar)
            committedHash = hash
            try await writer.write(ByteBuffer(bytes: MigrationRecord.commit(rounds: round, memoryHash: hash).encoded))
        }
        guard answer.accepted else {
            throw MigrationBackendError("the target refused the migration: \(answer.reason ?? "no reason given")")
        }
        // The guest stayed paused since the commit: its memory is what the commit hashed.
        guard answer.memoryHash == committedHash else {
            throw MigrationBackendError("the target's memory hash \(answer.memoryHash.map { String($0, radix: 16) } ?? "none") is not the source's \(String(committedHash, radix: 16))")
        }
        if let paused { figures.downtimeMillis = UInt64(Self.millis(clock.now - paused).rounded()) }
        return figures
    }

    /// The pages in either list, as sorted ranges that do not overlap.
    static func union(_ a: [Range<UInt64>], _ b: [Range<UInt64>]) -> [Range<UInt64>] {
        var merged: [Range<UInt64>] = []
        for range in (a + b).sorted(by: { $0.lowerBound < $1.lowerBound }) where !range.isEmpty {
            if let last = merged.last, range.lowerBound <= last.upperBound {
                merged[merged.count - 1] = last.lowerBound..<max(last.upperBound, range.upperBound)
            } else {
                merged.append(range)
            }
        }
        return merged
    }

    static func millis(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) * 1e-15
    }

    static func definition(_ spec: LPARSpec) -> LPARDefinition {
        var cores: [UInt32] = [], shared: UInt32?, ratio: UInt32?
        switch spec.cpu {
        case .dedicated(let list): cores = list.map { UInt32(clamping: $0) }
        case .shared(let count, let serviceRatio, _): shared = UInt32(clamping: count); ratio = UInt32(clamping: serviceRatio)
        }
        return LPARDefinition(name: spec.name, dedicatedCores: cores, sharedCPUs: shared, serviceRatio: ratio,
                              memoryBase: spec.memory.base, memoryBytes: spec.memory.size, vmm: spec.vmm, vmcsShadowing: spec.vmcsShadowing)
    }
}

/// The target's half: one announced migration's stream into its shell, every record checked
/// (`MigrationStreamReader`), the memory hash compared with the source's at the commit.
struct MigrationReceiver: Sendable {
    let expected: IncomingMigration
    let driver: any LPARMigrating
    let report: @Sendable (MigrationUpdate) async -> Void

    func receive(_ message: MigrationBeginRequest, body: WireStreamBody?) async -> MigrationReadyResponse {
        let lpar = expected.spec.name
        do {
            guard message.lpar.memoryBytes == expected.spec.memory.size else {
                throw MigrationStreamError("the stream carries \(message.lpar.memoryBytes) bytes of memory; the shell holds \(expected.spec.memory.size)")
            }
            guard let body else { throw MigrationStreamError("the request opened no stream") }
            let layout = try await driver.prepareIncoming(expected.spec)
            let encoding: MemoryEncoding = layout.payloadBytesPerPage == 8 ? .pageWords : .pageBytes
            guard (message.encoding ?? .pageBytes) == encoding, UInt64(message.pageSize) == layout.pageSize else {
                throw MigrationStreamError("the stream's pages (\(message.pageSize) bytes, \(message.encoding ?? .pageBytes)) are not this backend's (\(layout.pageSize) bytes, \(encoding))")
            }
            var reader = MigrationStreamReader(pageCount: layout.pageCount, payloadBytesPerPage: layout.payloadBytesPerPage)
            var vms: [VMRequest] = []
            var sourceHash: UInt64?
            var figures = MigrationFigures()
            await report(.progress(.receiving, figures))
            for try await chunk in body {
                var runs: [(first: UInt64, payload: [UInt8])] = []
                for record in try reader.read(chunk.readableBytesView) {
                    switch record {
                    case .pages(let round, let first, _, let payload):
                        runs.append((first, payload))
                        figures.round = Int(round)
                    case .state(let state):
                        try await driver.storePages(lpar, runs)
                        runs = []
                        vms = try await driver.loadState(lpar, state)
                    case .commit(_, let hash):
                        sourceHash = hash
                    }
                }
                if !runs.isEmpty { try await driver.storePages(lpar, runs) }
            }
            try reader.finish()
            let hash = try await driver.incomingHash(lpar)
            guard hash == sourceHash else {
                throw MigrationStreamError("the memory received hashes to \(String(hash, radix: 16)), the source's to \(String(sourceHash ?? 0, radix: 16))")
            }
            figures.sentBytes = reader.pagesReceived * layout.pageSize
            await report(.ready(vms: vms, figures))
            return MigrationReadyResponse(accepted: true, memoryHash: hash, bytesReceived: reader.bytesReceived, pagesReceived: reader.pagesReceived)
        } catch {
            await driver.discardIncoming(lpar)
            await report(.failed(reason: "\(error)"))
            return MigrationReadyResponse(accepted: false, reason: "\(error)")
        }
    }
}
