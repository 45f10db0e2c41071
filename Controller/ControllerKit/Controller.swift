import ClusterCore
import ClusterStore
import Foundation
import InputText
import Logging
import NIOCore
import Protos
import Wire
import WireCodec

/// The cluster controller's shell: the store on disk, the agents' connections, and the pure
/// `ControllerCore` (the model, leases, reports, reconciliation) whose directives it carries
/// out. Every command is decided on the model, written to the store in one compare-and-swap
/// transaction, and only then applied to the model and acknowledged.
actor Controller {
    struct Settings: Sendable {
        var heartbeatIntervalMillis: UInt64 = 1000
        var suspectAfterMillis: UInt64 = 3000
        var unreachableAfterMillis: UInt64 = 6000
        var commandTimeout: TimeAmount = .seconds(10)
        var eventRetention = EventRetention()
    }

    let store: ClusterStore
    let commands: ClusterCommands
    let settings: Settings
    let logger: Logger
    private var core: ControllerCore
    var model: ClusterModel { core.model }
    private var agents: [String: WireConnection] = [:]
    private var watchers: [ObjectIdentifier: (connection: WireConnection, tenant: String?)] = [:]
    private let started = ContinuousClock.now
    private var audit = AuditTrail()
    /// Events written since the event log was last compacted.
    private var eventsSinceCompaction = 0

    init(store: ClusterStore, commands: ClusterCommands, settings: Settings, logger: Logger) throws(StoreError) {
        self.store = store
        self.commands = commands
        self.settings = settings
        self.logger = logger
        self.core = ControllerCore(model: try store.load(),
                                   settings: .init(suspectAfterMillis: settings.suspectAfterMillis, unreachableAfterMillis: settings.unreachableAfterMillis),
                                   now: 0, commands: commands)
    }

    // MARK: Clocks

    /// Monotonic milliseconds since the controller started (leases).
    private var monotonic: UInt64 {
        let elapsed = ContinuousClock.now - started
        return UInt64(elapsed.components.seconds) * 1000 + UInt64(elapsed.components.attoseconds / 1_000_000_000_000_000)
    }

    /// Wall-clock milliseconds since 1970 (events).
    var wallClock: UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }

    var health: [String: ClusterCore.BladeHealth] { core.health(at: monotonic) }

    // MARK: Commits

    /// Decides with `decide` on the current model and commits the result; on a CAS conflict
    /// (another writer on the same store) reloads and decides once more.
    @discardableResult
    func perform<Result>(_ decide: (ClusterModel) throws(ClusterError) -> (ops: [StoreOp], result: Result)) throws(WireFailure) -> Result {
        for attempt in 0..<2 {
            let decision: (ops: [StoreOp], result: Result)
            do { decision = try decide(model) } catch { throw WireMapping.failure(error) }
            if decision.ops.isEmpty { return decision.result }
            do {
                let written = try store.commit(decision.ops, expectedGeneration: model.generation)
                let directives = core.committed(decision.ops, generation: written.generation, lastEventSequence: written.lastEventSequence)
                publish(written.events)
                eventsSinceCompaction += written.events.count
                if eventsSinceCompaction >= settings.eventRetention.compactEvery { compactEvents() }
                carryOut(directives)
                return decision.result
            } catch StoreError.conflict(let expected, let found) where attempt == 0 {
                logger.warning("store changed underneath; reloading", metadata: ["store.expected": "\(expected)", "store.found": "\(found)"])
                do { carryOut(core.reloaded(try store.load(), now: monotonic)) } catch { throw WireFailure(.unavailable, "the store cannot be read: \(error)") }
            } catch {
                logger.error("commit failed", metadata: ["store.error": "\(error)"])
                throw WireFailure(.unavailable, "the store refused the change: \(error)")
            }
        }
        throw WireFailure(.conflict, "the cluster state kept changing underneath; retry")
    }

    private func record(_ events: [ClusterCore.ClusterEvent]) {
        guard !events.isEmpty else { return }
        do {
            try perform { _ throws(ClusterError) in (events.map { StoreOp.event($0) }, ()) }
        } catch {
            logger.error("cannot record events", metadata: ["store.error": "\(error)"])
        }
    }

    /// Commits changes the core decided on the current model; after a conflict the model is
    /// read again and the core decides anew on the next heartbeat (never the same ops twice).
    private func commitDecided(_ ops: [StoreOp]) {
        do {
            let written = try store.commit(ops, expectedGeneration: model.generation)
            let directives = core.committed(ops, generation: written.generation, lastEventSequence: written.lastEventSequence)
            publish(written.events)
            eventsSinceCompaction += written.events.count
            carryOut(directives)
        } catch StoreError.conflict {
            do { carryOut(core.reloaded(try store.load(), now: monotonic)) } catch {
                logger.error("cannot read the store again", metadata: ["store.error": "\(error)"])
            }
        } catch {
            logger.error("cannot commit a migration's next phase", metadata: ["store.error": "\(error)"])
        }
    }

    private func publish(_ events: [ClusterCore.ClusterEvent]) {
        for event in events {
            logger.info("\(event.kind) \(event.subject): \(event.message)")
            for (_, watcher) in watchers where watcher.tenant == nil || watcher.tenant == event.tenant {
                let connection = watcher.connection
                let notice = EventNotice(event: WireMapping.event(event))
                Task { try? await connection.send(event: notice) }
            }
        }
    }

    // MARK: Tenants

    func createTenant(_ request: CreateTenantRequest, by caller: Caller) throws(WireFailure) -> TenantResponse {
        let tenant = WireMapping.tenant(request)
        let now = wallClock
        try perform { model throws(ClusterError) in (try commands.createTenant(tenant, by: caller, in: model, now: now), ()) }
        return TenantResponse(tenant: WireMapping.info(model.tenants[tenant.name]!, model: model))
    }

    func listTenants(_ request: ListTenantsRequest, by caller: Caller) throws(WireFailure) -> TenantListResponse {
        var tenants = commands.visibleTenants(to: caller, in: model)
        if let name = request.name {
            tenants = tenants.filter { $0.name == name }
            if tenants.isEmpty { throw WireFailure(.notFound, "tenant \(name) does not exist") }
        }
        let infos = tenants.map { WireMapping.info($0, model: model) }
        let page = try paged { () throws(ClusterError) in
            try Paging.page(infos, key: \.name, token: request.pageToken, size: request.pageSize) { $0.encoded().readableBytes }
        }
        return TenantListResponse(tenants: page.items, nextPageToken: page.next)
    }

    func deleteTenant(_ request: DeleteTenantRequest, by caller: Caller) throws(WireFailure) -> Ack {
        let now = wallClock
        try perform { model throws(ClusterError) in (try commands.deleteTenant(request.name, by: caller, in: model, now: now), ()) }
        return Ack(detail: "tenant \(request.name) deleted")
    }

    // MARK: Partitions

    func createPartition(_ request: CreatePartitionRequest, by caller: Caller) throws(WireFailure) -> PartitionResponse {
        let spec = try WireMapping.spec(request.spec)
        let now = wallClock
        let health = self.health
        try perform { model throws(ClusterError) in
            let decision = try commands.createPartition(spec, by: caller, in: model, health: health, now: now)
            return (decision.ops, ())
        }
        return PartitionResponse(partition: info(model.partitions[spec.name]!))
    }

    func listPartitions(_ request: ListPartitionsRequest, by caller: Caller) throws(WireFailure) -> PartitionListResponse {
        do {
            let partitions = try commands.visiblePartitions(to: caller, in: model, tenant: request.tenant, name: request.name)
            let page = try Paging.page(partitions, key: \.name, token: request.pageToken, size: request.pageSize) {
                info($0).encoded().readableBytes
            }
            return PartitionListResponse(partitions: page.items.map(info), nextPageToken: page.next)
        } catch {
            throw WireMapping.failure(error)
        }
    }

    func partitionAction(_ request: PartitionActionRequest, by caller: Caller) throws(WireFailure) -> PartitionResponse {
        let action: ClusterCommands.PartitionAction
        switch request.action {
        case .start: action = .start
        case .stop: action = .stop
        case .delete: action = .delete
        }
        let before = model.partitions[request.name]
        let now = wallClock
        let health = self.health
        try perform { model throws(ClusterError) in
            (try commands.partitionAction(request.name, action, by: caller, in: model, health: health, now: now), ())
        }
        if let partition = model.partitions[request.name] { return PartitionResponse(partition: info(partition)) }
        var gone = info(before!)
        gone.state = "deleted"
        return PartitionResponse(partition: gone)
    }

    /// A partition as shown: where it runs, why there, its state and counters.
    func info(_ partition: Partition) -> PartitionInfo {
        let claim = model.claims[partition.name]
        var result = PartitionInfo(spec: WireMapping.wireSpec(partition.spec), state: "pending", generation: partition.generation)
        result.desiredState = partition.desired.rawValue
        result.vms = UInt32(clamping: model.vms(in: partition.name).count)
        if let migration = model.activeMigration(of: partition.name) {
            result.migrationID = migration.id
            result.migrationPhase = WireMapping.phase(migration.phase)
        }
        guard let claim else {
            if let reason = partition.evictedBecause { result.state = "evicted: \(reason)" }
            return result
        }
        result.blade = claim.blade
        result.placementReason = claim.reason
        result.bladeCores = WireMapping.coreList(claim.cores)
        result.memoryBase = claim.memoryBase
        let health = core.liveness.health(of: claim.blade, at: monotonic)
        if health != .ready {
            result.state = "unknown (blade \(health.rawValue))"
        } else if let migration = model.activeMigration(of: partition.name) {
            result.state = "running, migrating to \(migration.target?.blade ?? "a blade to be chosen") (\(migration.phase.rawValue))"
        } else if let report = core.actual[claim.blade]?[partition.name] {
            result.state = report.failureReason.map { "\(report.state.rawValue): \($0)" } ?? report.state.rawValue
            result.l2Exits = report.l2Exits
            result.trappedVMX = report.trappedVMX
            result.servedByShadow = report.servedByShadow
            result.l2Operations = report.vms.map(\.operations).saturatingSum()
        } else {
            result.state = "starting"
        }
        return result
    }

    // MARK: VMs

    func createVM(_ request: CreateVMRequest, by caller: Caller) throws(WireFailure) -> VMResponse {
        let vm = VM(name: request.name, partition: request.partition, vcpus: Int(request.vcpus), memoryBytes: request.memoryBytes,
                    workload: WireMapping.workload(request.workload))
        let now = wallClock
        try perform { model throws(ClusterError) in (try commands.createVM(vm, by: caller, in: model, now: now), ()) }
        return VMResponse(vm: WireMapping.vmInfo(model.vms[vm.key]!, state: vmState(vm.key)))
    }

    func listVMs(_ request: ListVMsRequest, by caller: Caller) throws(WireFailure) -> VMListResponse {
        do {
            let vms = try commands.visibleVMs(in: request.partition, to: caller, model: model).map { WireMapping.vmInfo($0, state: vmState($0.key)) }
            let page = try Paging.page(vms, key: \.name, token: request.pageToken, size: request.pageSize) { $0.encoded().readableBytes }
            return VMListResponse(vms: page.items, nextPageToken: page.next)
        } catch {
            throw WireMapping.failure(error)
        }
    }

    func deleteVM(_ request: DeleteVMRequest, by caller: Caller) throws(WireFailure) -> Ack {
        let key = VMKey(partition: request.partition, name: request.name)
        let now = wallClock
        try perform { model throws(ClusterError) in (try commands.deleteVM(key, by: caller, in: model, now: now), ()) }
        return Ack(detail: "VM \(request.name) deleted from partition \(request.partition)")
    }

    private func vmState(_ key: VMKey) -> String {
        guard let claim = model.claims[key.partition] else { return "pending" }
        let health = core.liveness.health(of: claim.blade, at: monotonic)
        if health != .ready { return "unknown (blade \(health.rawValue))" }
        guard let lpar = core.actual[claim.blade]?[key.partition] else { return "starting" }
        guard let vm = lpar.vms.first(where: { $0.name == key.name }) else {
            return lpar.state == .running ? "starting" : "pending (partition \(lpar.state.rawValue))"
        }
        switch vm.state {
        case .creating: return "starting"
        case .running: return "running"
        case .failed: return "failed: \(vm.failureReason ?? "no reason given")"
        }
    }

    // MARK: Blades

    func listBlades(_ request: ListBladesRequest, by caller: Caller) throws(WireFailure) -> BladeListResponse {
        guard caller.isAdmin else { throw WireFailure(.permissionDenied, "only an admin lists blades") }
        let blades = model.blades.values.sorted { $0.id < $1.id }
        let page = try paged { () throws(ClusterError) in
            try Paging.page(blades, key: \.id, token: request.pageToken, size: request.pageSize) { bladeInfo($0).encoded().readableBytes }
        }
        return BladeListResponse(blades: page.items.map(bladeInfo), nextPageToken: page.next)
    }

    func bladeAction(_ request: BladeActionRequest, by caller: Caller) throws(WireFailure) -> BladeResponse {
        let now = wallClock
        switch request.action {
        case .cordon, .uncordon:
            let cordon = request.action == .cordon
            try perform { model throws(ClusterError) in (try commands.cordon(request.blade, cordon, by: caller, in: model, now: now), ()) }
        case .drain:
            let health = self.health
            let outcome = try perform { model throws(ClusterError) in
                let decision = try commands.drain(request.blade, by: caller, in: model, health: health, now: now)
                return (decision.ops, decision.outcome)
            }
            return BladeResponse(blade: bladeInfo(model.blades[request.blade]!), detail: outcome.summary,
                                 migrationIDs: outcome.migrating.map(\.migration))
        }
        return BladeResponse(blade: bladeInfo(model.blades[request.blade]!))
    }

    /// The blade's actual LPARs as its agent reports them now: the request goes on to the agent
    /// over its own connection, and the answer is the agent's, not this controller's model.
    func inspectBlade(_ request: InspectBladeRequest, by caller: Caller) async throws(WireFailure) -> InspectBladeResponse {
        guard caller.isAdmin else { throw WireFailure(.permissionDenied, "only an admin inspects blades") }
        let shown = InputText.shown(request.blade)
        guard let blade = model.blades[request.blade] else { throw WireFailure(.notFound, "blade \(shown) does not exist") }
        guard let connection = agents[blade.id] else {
            let state = core.liveness.health(of: blade.id, at: monotonic).rawValue
            throw WireFailure(.unavailable, "blade \(shown) is \(state) and its agent is not connected: its actual LPARs cannot be read through the controller now")
        }
        do {
            return try await connection.call(InspectBladeRequest(blade: blade.id), expecting: InspectBladeResponse.self, timeout: settings.commandTimeout)
        } catch let failure as WireFailure {
            throw WireFailure(failure.code, "blade \(shown)'s agent answered: \(failure.message)")
        } catch {
            throw WireFailure(.unavailable, "blade \(shown)'s agent did not answer: \(error)")
        }
    }

    private func bladeInfo(_ blade: Blade) -> BladeInfo {
        let claims = model.claims(on: blade.id)
        let usedCores = claims.reduce(0) { $0 + $1.cores.count }
        let usedMemory = claims.map(\.memoryBytes).saturatingSum()
        let usedDisk = claims.map(\.diskBytes).saturatingSum()
        let now = monotonic
        let seen = core.liveness.lastSeen[blade.id] ?? 0
        return BladeInfo(
            id: blade.id, state: core.liveness.health(of: blade.id, at: now).rawValue,
            labels: Labels(chassis: blade.chassis, rack: blade.rack, powerDomain: blade.powerDomain),
            cores: UInt32(clamping: blade.cores), freeCores: UInt32(clamping: max(0, blade.cores - usedCores)),
            memoryBytes: blade.memoryBytes, freeMemoryBytes: blade.memoryBytes - min(usedMemory, blade.memoryBytes),
            partitions: claims.map(\.partition), nestedCapable: blade.nestedCapable, cordoned: blade.cordoned,
            diskBytes: blade.diskBytes, freeDiskBytes: blade.diskBytes - min(usedDisk, blade.diskBytes),
            heartbeatAgeMillis: now >= seen ? now - seen : 0, backend: blade.backend,
            disks: blade.disks.map { DiskInventory(id: $0.id, lunCount: UInt32(clamping: $0.luns), shared: $0.shared) },
            nics: blade.nics, heartbeats: core.liveness.heartbeats[blade.id] ?? 0,
            health: WireMapping.health(core.liveness.health(of: blade.id, at: now)))
    }

    // MARK: Events

    func listEvents(_ request: ListEventsRequest, by caller: Caller) throws(WireFailure) -> EventListResponse {
        let limit = Int(min(request.limit ?? 100, 10_000))
        do {
            let events: [ClusterCore.ClusterEvent]
            if let since = request.sinceSequence {
                events = try store.events(after: since, limit: limit, tenant: caller.confinedTenant)
            } else {
                events = try store.recentEvents(limit: limit, tenant: caller.confinedTenant)
            }
            // A page of the window asked for; `more` when the window goes on after it (the
            // client asks again from the last sequence with what is left of its limit).
            let wire = events.map(WireMapping.event)
            let page = try paged { () throws(ClusterError) in
                try Paging.page(wire, key: { String($0.sequence) }, token: nil, size: request.pageSize) { $0.encoded().readableBytes }
            }
            return EventListResponse(events: page.items, more: page.items.count < wire.count ? true : nil)
        } catch let failure as WireFailure {
            throw failure
        } catch {
            throw WireFailure(.unavailable, "events cannot be read: \(error)")
        }
    }

    func watch(_ connection: WireConnection, by caller: Caller) {
        watchers[ObjectIdentifier(connection)] = (connection, caller.confinedTenant)
        Task { [weak connection] in
            await connection?.closed()
            if let connection { self.unwatch(connection) }
        }
    }

    private func unwatch(_ connection: WireConnection) { watchers[ObjectIdentifier(connection)] = nil }

    // MARK: Agents

    func register(_ request: RegisterBladeRequest, by caller: Caller, connection: WireConnection) throws(WireFailure) -> RegisterBladeResponse {
        let blade = Blade(id: request.bladeID, cores: Int(request.cores), memoryBytes: request.memoryBytes,
                          diskBytes: request.diskBytes ?? 0, nestedCapable: request.nestedCapable,
                          chassis: request.labels.chassis, rack: request.labels.rack, powerDomain: request.labels.powerDomain,
                          agentVersion: request.agentVersion, backend: request.backend,
                          disks: request.disks.map { BladeDiskInfo(id: $0.id, luns: Int($0.lunCount), shared: $0.shared) },
                          nics: request.nics, migrationAddress: request.migrationAddress)
        let now = wallClock
        try perform { model throws(ClusterError) in (try commands.registerBlade(blade, by: caller, in: model, now: now), ()) }
        if let previous = agents[blade.id], previous !== connection {
            Task { await previous.close(reason: "the agent of blade \(blade.id) connected again") }
        }
        agents[blade.id] = connection
        Task { [weak connection] in
            await connection?.closed()
            if let connection { self.agentGone(blade.id, connection) }
        }
        carryOut(core.registered(blade.id, now: monotonic, wallMillis: wallClock))
        return RegisterBladeResponse(heartbeatIntervalMillis: UInt32(clamping: settings.heartbeatIntervalMillis),
                                     leaseMillis: UInt32(clamping: settings.unreachableAfterMillis))
    }

    private func agentGone(_ blade: String, _ connection: WireConnection) {
        guard agents[blade] === connection else { return }
        agents[blade] = nil
        core.disconnected(blade)
        logger.notice("agent disconnected", metadata: ["blade.id": "\(blade)"])
    }

    func heartbeat(_ request: HeartbeatRequest, by caller: Caller, connection: WireConnection) throws(WireFailure) -> HeartbeatResponse {
        guard case .agent(let name) = caller, name == request.bladeID else {
            throw WireFailure(.permissionDenied, "\(caller) cannot heartbeat for blade \(InputText.shown(request.bladeID))")
        }
        guard model.blades[request.bladeID] != nil, agents[request.bladeID] === connection else {
            throw WireFailure(.failedPrecondition, "blade \(InputText.shown(request.bladeID)) is not registered on this connection; register first")
        }
        let reported = Dictionary(request.lpars.map { ($0.name, WireMapping.report($0)) }, uniquingKeysWith: { _, last in last })
        carryOut(core.heartbeat(request.bladeID, reports: reported, now: monotonic, wallMillis: wallClock))
        return HeartbeatResponse(desiredGeneration: model.generation)
    }

    /// Deletes the events beyond the retention (the oldest first): at start, and after every
    /// `compactEvery` events written, so that the log is bounded by what writes it.
    func compactEvents() {
        let retention = settings.eventRetention
        eventsSinceCompaction = 0
        let cutoff = wallClock > retention.maxAgeMillis ? wallClock - retention.maxAgeMillis : 0
        do {
            let removed = try store.compactEvents(keepingLast: retention.count, olderThanMillis: cutoff)
            if removed > 0 { logger.info("events compacted", metadata: ["events.removed": "\(removed)"]) }
        } catch {
            logger.error("cannot compact events", metadata: ["store.error": "\(error)"])
        }
    }

    /// A page, with a bad page size or token answered as the request's error.
    private func paged<T>(_ page: () throws(ClusterError) -> T) throws(WireFailure) -> T {
        do { return try page() } catch { throw WireMapping.failure(error) }
    }

    // MARK: Audit

    /// A request refused by authorization: logged with who sent what about which object, and
    /// counted in an admin-only `request.denied` event.
    func refused(_ peer: PeerIdentity, request: String, _ failure: WireFailure) {
        let what = failure.audit ?? failure.message
        logger.warning("request refused by authorization", metadata: [
            "peer.identity": "\(peer)", "request.type": "\(request)", "refusal.reason": "\(what)", "refusal.code": "\(failure.code)"])
        if let event = audit.refused(peer: peer.uri, request: request, what: what, atMillis: monotonic, wallMillis: wallClock) {
            record([event])
        }
    }

    /// Checks the leases; records each blade that turned suspect or unreachable.
    func tick() {
        readAgainIfChanged()
        record(audit.flush(atMillis: monotonic, wallMillis: wallClock))
        carryOut(core.tick(now: monotonic, wallMillis: wallClock))
    }

    /// Another writer on the same store (a second controller under the test switch
    /// `shared-store`) committed since this one last did: the model is read again, so that
    /// what it changed is seen and carried out here too.
    private func readAgainIfChanged() {
        guard let generation = try? store.generation(), generation != model.generation else { return }
        logger.notice("the store changed underneath; reading it again", metadata: ["store.generation": "\(generation)", "model.generation": "\(model.generation)"])
        do { carryOut(core.reloaded(try store.load(), now: monotonic)) } catch {
            logger.error("cannot read the store again", metadata: ["store.error": "\(error)"])
        }
    }

    // MARK: Carrying out the core's directives

    private func carryOut(_ directives: [ControllerCore.Directive]) {
        for directive in directives {
            switch directive {
            case .record(let events):
                record(events)
            case .commit(let ops):
                commitDecided(ops)
            case .send(let blade, let id, let command, let generation):
                guard let connection = agents[blade] else {
                    carryOut(core.commandFinished(blade, id: id, .linkFailed(reason: "the agent is not connected"), wallMillis: wallClock))
                    continue
                }
                let request = Self.request(command, id: id, generation: generation)
                let timeout = settings.commandTimeout
                Task {
                    let result: ControllerCore.CommandResult
                    do {
                        let answer = try await connection.call(request, expecting: CommandResultResponse.self, timeout: timeout)
                        let status = answer.status.map(WireMapping.report)
                        result = answer.ok ? .done(status: status) : .refused(reason: answer.error ?? "refused", status: status)
                    } catch let failure as WireFailure {
                        result = .refused(reason: "\(failure)", status: nil)
                    } catch {
                        result = .linkFailed(reason: "\(error)")
                    }
                    self.finished(blade, id: id, result)
                }
            case .log(let entry):
                let metadata: Logger.Metadata = ["blade.id": "\(entry.blade)", "command": "\(entry.detail)"]
                switch entry.level {
                case .debug: logger.debug("\(entry.message)", metadata: metadata)
                case .notice: logger.notice("\(entry.message)", metadata: metadata)
                case .warning: logger.warning("\(entry.message)", metadata: metadata)
                }
            }
        }
    }

    private func finished(_ blade: String, id: String, _ result: ControllerCore.CommandResult) {
        carryOut(core.commandFinished(blade, id: id, result, wallMillis: wallClock))
    }

    /// A command of the core as the agent's wire request.
    static func request(_ command: AgentCommand, id: String, generation: UInt64) -> AgentCommandRequest {
        var request = AgentCommandRequest(commandID: id, kind: .activate, generation: generation, lparName: command.lpar)
        switch command {
        case .define(let plan): request.kind = .defineLPAR; request.lpar = WireMapping.lparDefinition(plan)
        case .activate: request.kind = .activate
        case .deactivate: request.kind = .deactivate
        case .remove: request.kind = .remove
        case .createVM(let vm): request.kind = .createVM; request.vm = WireMapping.vmInfo(vm, state: "")
        case .deleteVM(let key):
            request.kind = .deleteVM
            request.vm = VMInfo(name: key.name, partition: key.partition, vcpus: 0, memoryBytes: 0, workload: .idle, state: "")
        case .prepareIncoming(let plan, let migration, let source):
            request.kind = .prepareIncoming
            request.lpar = WireMapping.lparDefinition(plan)
            request.migration = MigrationOrder(migrationID: migration, peerBlade: source)
        case .migrateOut(_, let migration, let target, let address, let downtime):
            request.kind = .migrateOut
            request.migration = MigrationOrder(migrationID: migration, peerBlade: target, peerAddress: address, maxDowntimeMillis: downtime)
        case .cancelMigration(_, let migration):
            request.kind = .cancelMigration
            request.migration = MigrationOrder(migrationID: migration, peerBlade: "")
        }
        return request
    }
}
