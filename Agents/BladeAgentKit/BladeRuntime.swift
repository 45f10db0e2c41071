public import AgentCore
import Foundation
#if os(Linux)
public import KVMBackend
#endif
public import Logging
public import Partitioner
public import Protos
import InputText
import Supervision
public import Wire
import WireCodec

/// The agent's shell around `AgentCore`: it feeds the core the controller's commands, the
/// driver's reports and the heartbeat timer, and carries out the directives the core returns
/// through the blade's `LPARDriver`. It decides nothing itself, and nothing it does blocks:
/// driver operations run as tasks of their own whose results come back as inputs, so that
/// heartbeats are answered while an LPAR boots, stops or has its disk zeroed.
public actor BladeRuntime {
    public let bladeID: String
    public let driver: any LPARDriver
    private var core: AgentCore
    private let logger: Logger
    /// Where the shared disk's LUN ranges are kept across restarts; nil without a shared disk.
    private let lunFile: String?
    private var lunGeneration: UInt64 = 0
    private let lunWriter = LUNFileWriter()
    /// The commands waiting for their answer, by id.
    private var waiting: [String: [CheckedContinuation<CommandResultResponse, Never>]] = [:]
    /// Driver operations in flight, so that shutdown can wait for them.
    private var operations: [UInt64: Task<Void, Never>] = [:]
    private var nextOperation: UInt64 = 0
    private var eventsTask: Task<Void, Never>?
    /// The driver's measurements at the last heartbeat (for the status that goes with an answer).
    private var lastObservations: [String: LPARObservation] = [:]
    /// The agent's identity for migration streams to other agents; nil: it sends none.
    private var migrationTLS: TLSIdentity?
    /// Outgoing migrations' senders, by LPAR.
    private var senders: [String: Task<Void, Never>] = [:]
    /// Incoming migrations the controller announced, by migration id, and those whose stream
    /// has started (one stream per migration).
    private var expected: [String: IncomingMigration] = [:]
    private var streaming: Set<String> = []
    /// Signals that the controller should hear from this blade before the next heartbeat is
    /// due: a migration moved on, and its next step waits on the controller.
    private let soon: AsyncStream<Void>
    private let soonContinuation: AsyncStream<Void>.Continuation

    /// A runtime on the simulated backend, or on KVM when `kvm` is given.
    public init(bladeID: String, resources: BladeResources, sliceSeconds: Double, simDirtyBytesPerSecond: UInt64 = 0,
                kvm: KVMRuntimeSettings? = nil, logger: Logger = Logger(label: "nestor.agent")) throws(PartitionerError) {
        let driver: any LPARDriver
        let sim = SimLPARDriver(sliceSeconds: sliceSeconds, dirtyBytesPerSecond: simDirtyBytesPerSecond)
        #if os(Linux)
        if let kvm { driver = KVMLPARDriver(bladeID: bladeID, settings: kvm) } else { driver = sim }
        #else
        driver = sim
        #endif
        try self.init(bladeID: bladeID, resources: resources, driver: driver, sharedDisk: kvm?.sharedDisk,
                      lunFile: kvm?.sharedDisk == nil ? nil : kvm?.lunFile, logger: logger)
    }

    /// A runtime on `driver`; `lunFile` keeps the LUN ranges of `sharedDisk`.
    public init(bladeID: String, resources: BladeResources, driver: any LPARDriver, sharedDisk: SharedDiskImage? = nil,
                lunFile: String? = nil, logger: Logger = Logger(label: "nestor.agent")) throws(PartitionerError) {
        self.bladeID = bladeID
        self.driver = driver
        self.logger = logger
        (soon, soonContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.lunFile = lunFile
        let kept = lunFile.map(LUNFileWriter.load) ?? [:]
        self.core = try AgentCore(resources: resources,
                                  configuration: .init(l0ReservedBytes: resources.l0ReservedBytes, sharedDisk: sharedDisk?.layout,
                                                       vmSlots: driver.vmSlots),
                                  keptLUNs: kept)
    }

    /// Carries out one command of the controller and answers when the core does.
    public func execute(_ request: AgentCommandRequest) async -> CommandResultResponse {
        followDriverEvents()
        let command: BladeCommand
        switch AgentWireMapping.command(request) {
        case .success(let mapped): command = mapped
        case .failure(let error):
            let name = request.lparName ?? request.lpar?.name ?? ""
            return CommandResultResponse(commandID: request.commandID, ok: false, error: error.message, status: status(of: name))
        }
        return await withCheckedContinuation { continuation in
            waiting[request.commandID, default: []].append(continuation)
            perform(core.handle(.command(id: request.commandID, command)))
        }
    }

    /// Where this agent takes incoming migrations (its listener), as it registers it.
    public private(set) var migrationAddress: String?

    /// Takes part in migrations: `tls` is the identity it presents to other agents when it
    /// sends one, `address` its listener, where it receives them.
    public func enableMigrations(tls: TLSIdentity, address: String) {
        migrationTLS = tls
        migrationAddress = address
    }

    /// Admits the stream of an announced migration from the agent `peer`; the receiver then
    /// runs in the caller's task, off this actor.
    func admitMigration(_ message: MigrationBeginRequest, from peer: PeerIdentity) throws(WireFailure) -> MigrationReceiver {
        guard let incoming = expected[message.migrationID] else {
            throw WireFailure(.failedPrecondition, "blade \(bladeID) expects no migration \(InputText.shown(message.migrationID)); the controller announced none")
        }
        guard peer.role == .agent, peer.name == incoming.source, message.sourceBlade == incoming.source else {
            throw WireFailure(.permissionDenied, "migration \(incoming.id) comes from blade \(incoming.source), not \(peer.uri)")
        }
        guard message.partition == incoming.spec.name else {
            throw WireFailure(.invalidArgument, "migration \(incoming.id) moves \(incoming.spec.name), not \(InputText.shown(message.partition))")
        }
        guard let driver = driver as? any LPARMigrating else {
            throw WireFailure(.unavailable, "this blade's backend does not take migrations")
        }
        guard streaming.insert(incoming.id).inserted else {
            throw WireFailure(.alreadyExists, "the stream of migration \(incoming.id) has started already")
        }
        let lpar = incoming.spec.name, id = incoming.id
        return MigrationReceiver(expected: incoming, driver: driver) { [weak self] update in
            await self?.input(.driver(lpar: lpar, .migration(id: id, update)))
        }
    }

    /// The link to the controller is up or down.
    public func link(_ event: LinkEvent) {
        perform(core.handle(.link(event)))
    }

    /// The heartbeat timer fired: the heartbeat to send, if the core sends one now.
    public func tick() async -> HeartbeatRequest? {
        followDriverEvents()
        var sequence: UInt64?
        for directive in core.handle(.tick) {
            if case .sendHeartbeat(let number) = directive { sequence = number } else { perform([directive]) }
        }
        guard let sequence else { return nil }
        return HeartbeatRequest(bladeID: bladeID, sequence: sequence, lpars: await statuses())
    }

    /// The actual state of every LPAR, as the heartbeat carries it (the sim backend's VMs run
    /// one slice further first).
    public func statuses() async -> [LPARStatus] {
        followDriverEvents()
        lastObservations = await driver.heartbeatObservations()
        return core.reports(observations: lastObservations).map(AgentWireMapping.status)
    }

    /// What the blade actually holds: every LPAR with the cores and memory L0 gave it, its
    /// state and its host process, read from the partitioner and the driver, not the controller.
    public func inspect() async -> InspectBladeResponse {
        followDriverEvents()
        let processes = await driver.processIDs()
        let resources = core.partitioner.resources
        let lpars = core.actualLPARs().map { lpar in
            var dedicated: [UInt32] = [], sharedCPUs: UInt32?
            switch lpar.cpu {
            case .dedicated(let cores): dedicated = cores.map { UInt32(clamping: $0) }
            case .shared(let count, _, _): sharedCPUs = UInt32(clamping: count)
            }
            return ActualLPAR(name: lpar.name, state: AgentWireMapping.lparState(lpar.state), dedicatedCores: dedicated,
                              sharedCPUs: sharedCPUs, memoryStart: lpar.memory.base, memoryBytes: lpar.memory.size,
                              tenant: lpar.tenant, failureReason: lpar.failureReason, vms: UInt32(clamping: lpar.vms),
                              processID: processes[lpar.name].map { UInt32(clamping: $0) },
                              poolCores: lpar.poolCores.map { UInt32(clamping: $0) },
                              migration: lpar.migration.map(AgentWireMapping.migration))
        }
        return InspectBladeResponse(blade: bladeID, cores: UInt32(clamping: resources.coreCount), memoryBytes: resources.memoryBytes,
                                    l0ReservedBytes: resources.l0ReservedBytes, lpars: lpars,
                                    sharedPool: resources.sharedPool.map { UInt32(clamping: $0) },
                                    controllerLinkUp: core.linkUp, heartbeatSequence: core.heartbeatSequence)
    }

    /// The blade's shared pool now (the cores its shared LPARs' claims brought).
    public var sharedPool: [Int] { core.partitioner.resources.sharedPool }

    /// The core's state, for tests and diagnostics.
    public var state: AgentCore { core }

    /// Stops every LPAR and waits for the operations in flight (the agent is shutting down).
    public func shutdown() async {
        for sender in senders.values { sender.cancel() }
        senders = [:]
        while let operation = operations.values.first { await operation.value }
        await driver.shutdown()
        eventsTask?.cancel()
        eventsTask = nil
    }

    // MARK: Carrying out directives

    private func input(_ input: AgentInput) {
        perform(core.handle(input))
        if case .driver(_, .migration) = input { soonContinuation.yield() }
    }

    /// Waits until the next heartbeat is due: after `interval`, or at once when a migration
    /// moved on since the last one.
    public nonisolated func nextHeartbeat(after interval: Duration) async {
        let soon = self.soon
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: interval) }
            group.addTask {
                var iterator = soon.makeAsyncIterator()
                _ = await iterator.next()
            }
            await group.next()
            group.cancelAll()
        }
    }

    /// Carries out `directives` in order. What follows keeping the LUN ranges waits until
    /// they are on disk, so that no command is answered before its range is durable.
    private func perform(_ directives: [AgentDirective]) {
        for (index, directive) in directives.enumerated() {
            switch directive {
            case .start(let launch):
                operation { driver in .driver(lpar: launch.spec.name, await driver.start(launch)) }
            case .stop(let lpar):
                operation { driver in .driver(lpar: lpar, await driver.stop(lpar)) }
            case .releaseDisk(let lpar, let luns):
                operation { driver in .driver(lpar: lpar, await driver.releaseDisk(lpar, luns: luns)) }
            case .setPool(let cores):
                operation { driver in await driver.setPool(cores); return nil }
            case .createVM(let vm, let slot):
                operation { driver in await driver.createVM(vm, slot: slot); return nil }
            case .deleteVM(let partition, let name, let slot):
                operation { driver in await driver.deleteVM(partition: partition, name: name, slot: slot); return nil }
            case .reply(let id, let outcome, let lpar):
                let response: CommandResultResponse
                switch outcome {
                case .ok: response = CommandResultResponse(commandID: id, ok: true, status: lpar.flatMap(status(of:)))
                case .refused(let message):
                    response = CommandResultResponse(commandID: id, ok: false, error: message, status: lpar.flatMap(status(of:)))
                }
                for continuation in waiting.removeValue(forKey: id) ?? [] { continuation.resume(returning: response) }
            case .saveLUNs(let ranges):
                guard let lunFile else { continue }
                lunGeneration += 1
                let generation = lunGeneration, writer = lunWriter
                let rest = Array(directives[(index + 1)...])
                operation(then: rest) { _ in await writer.write(ranges, generation: generation, to: lunFile); return nil }
                return
            case .sendHeartbeat:
                break   // only `tick` asks for one, and sends it itself
            case .sendMigration(let migration):
                startSender(migration)
            case .expectMigration(let migration):
                expected[migration.id] = migration
            case .endMigration(let lpar, let id, let resumeSource):
                senders.removeValue(forKey: lpar)?.cancel()
                expected[id] = nil
                streaming.remove(id)
                operation { driver in
                    guard let migrating = driver as? any LPARMigrating else { return nil }
                    await migrating.endOutgoing(lpar, resume: resumeSource)
                    if !resumeSource { await migrating.discardIncoming(lpar) }
                    return nil
                }
            case .resumeIncoming(let launch, let id):
                expected[id] = nil
                streaming.remove(id)
                operation { driver in
                    guard let migrating = driver as? any LPARMigrating else {
                        return .driver(lpar: launch.spec.name, .startFailed(reason: "this blade's backend does not take migrations"))
                    }
                    return .driver(lpar: launch.spec.name, await migrating.resumeIncoming(launch))
                }
            case .log(let entry):
                var metadata: Logger.Metadata = [:]
                if let lpar = entry.lpar { metadata["lpar.name"] = "\(lpar)" }
                switch entry.level {
                case .info: logger.info("\(entry.message)", metadata: metadata)
                case .notice: logger.notice("\(entry.message)", metadata: metadata)
                case .warning: logger.warning("\(entry.message)", metadata: metadata)
                }
            }
        }
    }

    /// Starts the sender of an outgoing migration as a task of its own.
    private func startSender(_ migration: OutgoingMigration) {
        let lpar = migration.spec.name, id = migration.id
        guard let tls = migrationTLS, let migrating = driver as? any LPARMigrating else {
            let reason = migrationTLS == nil ? "this agent sends no migrations (it has no listener)" : "this blade's backend does not migrate LPARs"
            input(.driver(lpar: lpar, .migration(id: id, .failed(reason: reason))))
            return
        }
        let sender = MigrationSender(migration: migration, sourceBlade: bladeID, driver: migrating, tls: tls, logger: logger) { [weak self] update in
            await self?.input(.driver(lpar: lpar, .migration(id: id, update)))
        }
        senders[lpar] = Task { await sender.run() }
    }

    /// Runs one driver operation as a task of its own; its result, if any, is the next input,
    /// and `then` is carried out after it.
    private func operation(then: [AgentDirective] = [], _ work: @escaping @Sendable (any LPARDriver) async -> AgentInput?) {
        nextOperation += 1
        let id = nextOperation
        let driver = self.driver
        operations[id] = Task {
            let result = await work(driver)
            await self.finish(id, result, then: then)
        }
    }

    private func finish(_ id: UInt64, _ result: AgentInput?, then: [AgentDirective]) {
        operations[id] = nil
        if let result { input(result) }
        if !then.isEmpty { perform(then) }
    }

    /// Feeds the driver's unsolicited reports to the core, from the first use on.
    private func followDriverEvents() {
        guard eventsTask == nil else { return }
        let events = driver.events
        eventsTask = Task { [weak self] in
            for await event in events {
                await self?.input(.driver(lpar: event.lpar, event.report))
            }
        }
    }

    private func status(of name: String) -> LPARStatus? {
        core.report(of: name, observation: lastObservations[name]).map(AgentWireMapping.status)
    }

    #if os(Linux)
    /// The last report of a running LPAR's process (kvm backend), for diagnostics.
    public func guestStatus(of name: String) async -> LPARHostStatus? {
        await (driver as? KVMLPARDriver)?.guestStatus(of: name)
    }

    /// Passes a command to a running LPAR's process (kvm backend); false when none runs.
    @discardableResult
    public func sendToGuest(_ command: LPARHostCommand, lpar name: String) async -> Bool {
        await (driver as? KVMLPARDriver)?.send(command, to: name) ?? false
    }
    #endif
}

/// Keeps the shared disk's LUN ranges in a file, written atomically on a thread of its own;
/// writes happen one at a time, and a newer generation is never overwritten by an older one.
final class LUNFileWriter: @unchecked Sendable {
    private let lock = NSLock()
    private var written: UInt64 = 0

    func write(_ ranges: [String: Range<Int>], generation: UInt64, to path: String) async {
        let entries = ranges.mapValues { [$0.lowerBound, $0.upperBound] }
        guard let data = try? JSONEncoder().encode(entries) else { return }
        await OffThread.run("luns") { [self] in
            lock.lock()
            defer { lock.unlock() }
            guard generation > written else { return }
            let url = URL(fileURLWithPath: path)
            try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try? data.write(to: url, options: .atomic)
            written = generation
        }
    }

    static func load(_ path: String) -> [String: Range<Int>] {
        guard let data = FileManager.default.contents(atPath: path),
              let entries = try? JSONDecoder().decode([String: [Int]].self, from: data) else { return [:] }
        return entries.compactMapValues { $0.count == 2 && $0[0] < $0[1] ? $0[0]..<$0[1] : nil }
    }
}
