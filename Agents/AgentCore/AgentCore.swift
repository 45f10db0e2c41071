public import Partitioner
import Sizes

/// The blade agent's decisions as a value: inputs (a command of the controller, a report of
/// an LPAR driver, the heartbeat timer, the link's state) go in, directives come out for the
/// shell to carry out. It does no I/O, reads no clock and never blocks, so that every
/// sequence of inputs can be replayed in a test or a simulation.
///
/// An LPAR moves by `LPARLifecycle`'s table and an L2 VM by `VMLifecycle`'s. A command that
/// takes time (activate, deactivate, remove of a running LPAR) is answered when the driver
/// reports that it is done; a command that does not apply in the LPAR's current state is
/// refused with that state named; repeating a command that already took effect answers `ok`
/// and changes nothing.
public struct AgentCore: Sendable, Equatable {
    public struct Configuration: Sendable, Equatable {
        public var l0ReservedBytes: UInt64
        /// The shared disk image's layout, when the blade's first shared disk is one image
        /// cut into LUNs; nil: every LPAR gets its own image.
        public var sharedDisk: SharedDiskLayout?
        /// The most L2 VMs one guest hypervisor runs; nil: no limit.
        public var vmSlots: Int?

        public init(l0ReservedBytes: UInt64, sharedDisk: SharedDiskLayout? = nil, vmSlots: Int? = nil) {
            self.l0ReservedBytes = l0ReservedBytes
            self.sharedDisk = sharedDisk
            self.vmSlots = vmSlots
        }
    }

    /// What the agent keeps about one defined LPAR beyond the partitioner's own record.
    struct LPARRecord: Sendable, Equatable {
        var diskBytes: UInt64
        var poolCores: [Int]
        var tenant: String?
        var vms: [String: VMRecord] = [:]
        /// Remove the LPAR once it has stopped (a remove arrived while it ran).
        var removeWhenStopped = false
        var awaiting: [Awaiting] = []
        /// The migration the LPAR takes part in, as source or as the target's shell.
        var migration: AgentMigration?
    }

    struct VMRecord: Sendable, Equatable {
        var request: VMRequest
        var slot: Int
        var state: VMState
    }

    /// A command answered when the LPAR gets where it asked.
    enum Awaiting: Sendable, Equatable {
        case up(String)
        case stopped(String)
        case removed(String)
    }

    public let configuration: Configuration
    public private(set) var partitioner: BladePartitioner
    private(set) var records: [String: LPARRecord] = [:]
    /// The LUN ranges of the shared disk, by LPAR, including those being released.
    public private(set) var lunRanges: [String: Range<Int>]
    /// LPARs removed whose disk is being released (their LUN range is not given away yet).
    public private(set) var releasing: Set<String> = []
    public private(set) var linkUp = false
    public private(set) var heartbeatSequence: UInt64 = 0

    /// A core for a blade with `resources`; `keptLUNs` are the LUN ranges a former run of the
    /// agent gave its LPARs (a partition defined again finds its own data).
    public init(resources: BladeResources, configuration: Configuration, keptLUNs: [String: Range<Int>] = [:]) throws(PartitionerError) {
        self.configuration = configuration
        self.partitioner = try BladePartitioner(resources: resources)
        self.lunRanges = configuration.sharedDisk == nil ? [:] : keptLUNs
    }

    /// The state of an LPAR, nil when it is not defined.
    public func state(of lpar: String) -> LPARState? { partitioner.lpars[lpar]?.state }

    /// The state of an L2 VM, nil when the agent has none of that name.
    public func vmState(_ name: String, in lpar: String) -> VMState? { records[lpar]?.vms[name]?.state }

    /// The migration an LPAR takes part in, nil when none.
    public func migration(of lpar: String) -> AgentMigration? { records[lpar]?.migration }

    /// The L2 VMs of an LPAR with their guest hypervisor slots, by name.
    public func vmSlots(in lpar: String) -> [String: Int] { records[lpar]?.vms.mapValues(\.slot) ?? [:] }

    /// Moves the core by one input and returns what the shell must do.
    public mutating func handle(_ input: AgentInput) -> [AgentDirective] {
        switch input {
        case .command(let id, let command): return handle(command, id: id)
        case .driver(let lpar, let report): return handle(report, lpar: lpar)
        case .tick:
            guard linkUp else { return [] }
            heartbeatSequence += 1
            return [.sendHeartbeat(sequence: heartbeatSequence)]
        case .link(let event):
            linkUp = event == .up
            return []
        }
    }

    // MARK: Commands

    private mutating func handle(_ command: BladeCommand, id: String) -> [AgentDirective] {
        let name = command.lpar
        func reply(_ outcome: CommandOutcome) -> [AgentDirective] { [.reply(id: id, outcome, lpar: name)] }
        func refuse(_ message: String) -> [AgentDirective] { reply(.refused(message)) }
        switch command {
        case .define(let definition):
            return define(definition, id: id)
        case .activate:
            guard let lpar = partitioner.lpars[name] else { return refuse("LPAR \(name) is not defined") }
            switch lpar.state {
            case .running: return reply(.ok)
            case .activating:
                records[name]?.awaiting.append(.up(id))
                return []
            case .defined, .stopped:
                _ = try? partitioner.apply(.activate, to: name)
                records[name]?.awaiting.append(.up(id))
                return [.start(launch(for: lpar.spec))]
            case .migrating:
                guard let migration = records[name]?.migration, migration.role == .target, migration.stage == .ready else {
                    let what = records[name]?.migration.map { "the \($0.role == .source ? "source" : "target") of migration \($0.id), \($0.stage.rawValue)" } ?? "migrating"
                    return refuse("LPAR \(name) is \(what): only a target that received everything is activated")
                }
                _ = try? partitioner.apply(.activate, to: name)
                records[name]?.awaiting.append(.up(id))
                return [.resumeIncoming(launch(for: lpar.spec), migration: migration.id)]
            case .deactivating, .failed:
                return refuse(notApplicable("activate", lpar))
            }
        case .deactivate:
            guard let lpar = partitioner.lpars[name] else { return refuse("LPAR \(name) is not defined") }
            switch lpar.state {
            case .defined, .stopped, .failed: return reply(.ok)
            case .deactivating:
                records[name]?.awaiting.append(.stopped(id))
                return []
            case .running:
                _ = try? partitioner.apply(.deactivate, to: name)
                records[name]?.awaiting.append(.stopped(id))
                return [.stop(lpar: name)]
            case .activating, .migrating:
                return refuse(notApplicable("deactivate", lpar))
            }
        case .remove:
            guard let lpar = partitioner.lpars[name] else { return [.reply(id: id, .ok, lpar: nil)] }
            switch lpar.state {
            case .defined, .stopped, .failed:
                return remove(name) + [.reply(id: id, .ok, lpar: nil)]
            case .running:
                _ = try? partitioner.apply(.deactivate, to: name)
                records[name]?.removeWhenStopped = true
                records[name]?.awaiting.append(.removed(id))
                return [.stop(lpar: name)]
            case .deactivating:
                records[name]?.removeWhenStopped = true
                records[name]?.awaiting.append(.removed(id))
                return []
            case .migrating:
                guard let migration = records[name]?.migration, migration.role == .target || migration.stage == .handedOver else {
                    return refuse("LPAR \(name) is the source of a migration that has not handed over; cancel the migration first")
                }
                _ = try? partitioner.apply(.deactivate, to: name)
                records[name]?.removeWhenStopped = true
                records[name]?.awaiting.append(.removed(id))
                return [.endMigration(lpar: name, id: migration.id, resumeSource: false), .stop(lpar: name)]
            case .activating:
                return refuse("LPAR \(name) is \(lpar.state.rawValue): remove applies to an LPAR that is defined, stopped, failed, running or deactivating")
            }
        case .createVM(let vm):
            guard let lpar = partitioner.lpars[name] else { return refuse("LPAR \(name) is not defined") }
            if records[name]?.vms[vm.name] != nil { return reply(.ok) }
            guard lpar.state == .running else { return refuse("LPAR \(name) is \(lpar.state.rawValue), not running") }
            guard lpar.spec.vmm else { return refuse("LPAR \(name) runs no guest hypervisor") }
            let taken = Set(records[name]?.vms.values.map(\.slot) ?? [])
            let limit = configuration.vmSlots ?? Int.max
            guard let slot = (0..<limit).first(where: { !taken.contains($0) }) else {
                return refuse("the guest hypervisor of \(name) runs at most \(limit) L2 VMs")
            }
            records[name]?.vms[vm.name] = VMRecord(request: vm, slot: slot, state: .creating)
            return [.createVM(vm, slot: slot)] + reply(.ok)
        case .deleteVM(_, let vmName):
            guard let record = records[name]?.vms.removeValue(forKey: vmName) else { return reply(.ok) }
            return [.deleteVM(partition: name, name: vmName, slot: record.slot)] + reply(.ok)
        case .prepareIncoming(let definition, let migration, let source):
            if let existing = partitioner.lpars[name] {
                if records[name]?.migration?.id == migration { return reply(.ok) }
                return refuse("LPAR \(name) already exists here (\(existing.state.rawValue)); it cannot receive migration \(migration)")
            }
            var directives = define(definition, id: id)
            guard case .reply(_, .ok, _)? = directives.last, partitioner.lpars[name]?.state == .defined,
                  (try? partitioner.apply(.receiveMigration, to: name)) != nil, let spec = partitioner.lpars[name]?.spec else {
                return directives
            }
            let answer = directives.removeLast()
            records[name]?.migration = AgentMigration(id: migration, role: .target, peer: source, stage: .incoming)
            return directives + [.expectMigration(IncomingMigration(id: migration, spec: spec, source: source)), answer]
        case .migrateOut(_, let migration, let target, let address, let downtime):
            guard let lpar = partitioner.lpars[name] else { return refuse("LPAR \(name) is not defined") }
            if let current = records[name]?.migration {
                if current.id == migration { return reply(.ok) }
                return refuse("LPAR \(name) takes part in migration \(current.id) already")
            }
            guard lpar.state == .running else { return refuse("LPAR \(name) is \(lpar.state.rawValue): only a running LPAR is migrated") }
            _ = try? partitioner.apply(.startMigration, to: name)
            records[name]?.migration = AgentMigration(id: migration, role: .source, peer: target, stage: .copying)
            let vms = (records[name]?.vms.values.map(\.request) ?? []).sorted { $0.name < $1.name }
            return [.sendMigration(OutgoingMigration(id: migration, spec: lpar.spec, target: target, address: address,
                                                     maxDowntimeMillis: downtime, vms: vms))] + reply(.ok)
        case .cancelMigration(_, let migration):
            guard let lpar = partitioner.lpars[name], lpar.state == .migrating, let current = records[name]?.migration else { return reply(.ok) }
            guard current.role == .source else {
                return refuse("LPAR \(name) is the target of migration \(current.id): a target's shell is removed, not cancelled")
            }
            _ = try? partitioner.apply(.migrationAborted, to: name)
            records[name]?.migration = nil
            return [.log(.init(.notice, "migration \(current.id) of \(name) stopped (asked for \(migration)); the guest runs here", lpar: name)),
                    .endMigration(lpar: name, id: current.id, resumeSource: true)] + reply(.ok)
        }
    }

    private func notApplicable(_ command: String, _ lpar: LPAR) -> String {
        let event: LPAREvent = command == "activate" ? .activate : .deactivate
        // A migrating LPAR takes these only in its migration's own steps: not named here.
        let accepted = LPARLifecycle.states(accepting: event).filter { $0 != .migrating }.map(\.rawValue).joined(separator: " or ")
        let reason = lpar.failureReason.map { " (\($0))" } ?? ""
        return "LPAR \(lpar.spec.name) is \(lpar.state.rawValue)\(reason): \(command) applies to a \(accepted) LPAR"
    }

    private mutating func define(_ definition: LPARDefinitionInput, id: String) -> [AgentDirective] {
        let name = definition.name
        func refuse(_ message: String) -> [AgentDirective] { [.reply(id: id, .refused(message), lpar: name)] }
        if releasing.contains(name) && partitioner.lpars[name] == nil {
            return refuse("LPAR \(name) was removed and its disk is still being released; define it again when that is done")
        }
        let spec: LPARSpec
        do { spec = try lparSpec(definition) } catch { return refuse("\(error)") }
        let existing = partitioner.lpars[name]
        if let existing {
            if existing.spec == spec { return [.reply(id: id, .ok, lpar: name)] }
            guard LPARLifecycle.removable.contains(existing.state) else {
                return refuse("LPAR \(name) is \(existing.state.rawValue) with another definition; stop it first")
            }
        }
        // A shared LPAR's claim joins the pool first; a refusal puts everything back.
        let pool = definition.serviceRatio == nil ? [] : definition.poolCores
        var pools = poolsByLPAR
        pools[name] = pool.isEmpty ? nil : pool
        let before = partitioner
        let poolBefore = partitioner.resources.sharedPool
        do {
            try setPool(from: pools)
            if existing != nil { try partitioner.redefine(spec) } else { try partitioner.define(spec) }
        } catch {
            partitioner = before
            return refuse("\(error)")
        }
        var record = records[name] ?? LPARRecord(diskBytes: definition.diskBytes, poolCores: pool)
        record.diskBytes = definition.diskBytes
        record.poolCores = pool
        record.tenant = definition.tenant
        record.vms = [:]
        records[name] = record
        var directives: [AgentDirective] = []
        if partitioner.resources.sharedPool != poolBefore { directives.append(.setPool(partitioner.resources.sharedPool)) }
        if case .shared(_, let luns) = spec.disks.first, lunRanges[name] != luns {
            lunRanges[name] = luns
            directives.append(.saveLUNs(lunRanges))
        }
        return directives + [.reply(id: id, .ok, lpar: name)]
    }

    /// Takes a stopped, defined or failed LPAR off the blade; its disk is released next.
    private mutating func remove(_ name: String) -> [AgentDirective] {
        guard (try? partitioner.remove(name)) != nil else { return [] }
        let record = records.removeValue(forKey: name)
        var directives: [AgentDirective] = []
        if let record, !record.poolCores.isEmpty {
            let poolBefore = partitioner.resources.sharedPool
            do {
                try setPool(from: poolsByLPAR)
            } catch {
                directives.append(.log(.init(.warning, "the shared pool keeps its cores after \(name) left: \(error)", lpar: name)))
            }
            if partitioner.resources.sharedPool != poolBefore { directives.append(.setPool(partitioner.resources.sharedPool)) }
        }
        releasing.insert(name)
        directives.append(.releaseDisk(lpar: name, luns: lunRanges[name]))
        return directives
    }

    // MARK: Driver reports

    private mutating func handle(_ report: DriverReport, lpar name: String) -> [AgentDirective] {
        if case .diskReleased = report {
            releasing.remove(name)
            guard partitioner.lpars[name] == nil, lunRanges.removeValue(forKey: name) != nil else { return [] }
            return [.saveLUNs(lunRanges)]
        }
        if case .diskReleaseFailed(let reason) = report {
            releasing.remove(name)
            return [.log(.init(.warning, "the disk of removed LPAR \(name) was not released (its LUN range stays kept): \(reason)", lpar: name))]
        }
        guard let lpar = partitioner.lpars[name] else {
            if case .started = report {
                return [.log(.init(.warning, "LPAR \(name) started but is not defined; stopping it", lpar: name)), .stop(lpar: name)]
            }
            return []
        }
        switch report {
        case .migration(let id, let update):
            guard var migration = records[name]?.migration, migration.id == id, migration.stage != .failed else { return [] }
            switch update {
            case .progress(let stage, let figures):
                migration.stage = stage
                migration.figures = figures
            case .ready(let vms, let figures):
                guard migration.role == .target else { return [] }
                migration.stage = .ready
                migration.figures = figures
                var slots: [String: VMRecord] = [:]
                for (slot, vm) in vms.enumerated() { slots[vm.name] = VMRecord(request: vm, slot: slot, state: .creating) }
                records[name]?.vms = slots
            case .failed(let reason):
                migration.stage = .failed
                migration.failureReason = reason
            }
            records[name]?.migration = migration
            if case .failed(let reason) = update {
                return [.log(.init(.warning, "migration \(id) of \(name) failed: \(reason)", lpar: name))]
            }
            return []
        case .started:
            guard lpar.state == .activating else { return [] }
            records[name]?.migration = nil
            _ = try? partitioner.apply(.activated, to: name)
            return answer(name) { if case .up = $0 { return .ok } else { return nil } }
        case .startFailed(let reason), .failed(let reason):
            guard [.activating, .running, .deactivating, .migrating].contains(lpar.state) else { return [] }
            let wasStopping = lpar.state == .deactivating
            _ = try? partitioner.apply(.fault(reason: reason), to: name)
            records[name]?.vms = [:]
            records[name]?.migration = nil
            var directives: [AgentDirective] = [.log(.init(.warning, "LPAR \(name) failed: \(reason)", lpar: name))]
            directives += answer(name) { awaiting in
                switch awaiting {
                case .up: return .refused(reason)
                case .stopped: return .refused("LPAR \(name) failed while stopping: \(reason)")
                case .removed: return nil
                }
            }
            if wasStopping, records[name]?.removeWhenStopped == true { directives += finishRemoval(name) }
            return directives
        case .stopped:
            guard lpar.state == .deactivating else { return [] }
            _ = try? partitioner.apply(.deactivated, to: name)
            records[name]?.vms = [:]
            var directives = answer(name) { if case .stopped = $0 { return .ok } else { return nil } }
            if records[name]?.removeWhenStopped == true { directives += finishRemoval(name) }
            return directives
        case .vm(let vmName, let event):
            guard let vm = records[name]?.vms[vmName], let next = VMLifecycle.next(from: vm.state, on: event) else { return [] }
            records[name]?.vms[vmName]?.state = next
            if case .failed(let reason) = next {
                return [.log(.init(.warning, "L2 VM \(vmName) of \(name) failed: \(reason)", lpar: name))]
            }
            return []
        case .diskReleased, .diskReleaseFailed:
            return []
        }
    }

    /// Replies to the commands waiting on the LPAR that `outcome` answers; keeps the others.
    private mutating func answer(_ name: String, _ outcome: (Awaiting) -> CommandOutcome?) -> [AgentDirective] {
        guard let awaiting = records[name]?.awaiting else { return [] }
        var kept: [Awaiting] = []
        var directives: [AgentDirective] = []
        for entry in awaiting {
            guard let result = outcome(entry) else { kept.append(entry); continue }
            switch entry {
            case .up(let id), .stopped(let id), .removed(let id): directives.append(.reply(id: id, result, lpar: name))
            }
        }
        records[name]?.awaiting = kept
        return directives
    }

    private mutating func finishRemoval(_ name: String) -> [AgentDirective] {
        let waiting = records[name]?.awaiting.compactMap { entry -> String? in
            if case .removed(let id) = entry { return id }
            return nil
        } ?? []
        return remove(name) + waiting.map { .reply(id: $0, .ok, lpar: nil) }
    }

    // MARK: Specs, disks and the pool

    private func launch(for spec: LPARSpec) -> LPARLaunch {
        LPARLaunch(spec: spec, diskBytes: records[spec.name]?.diskBytes ?? 0, poolCores: partitioner.resources.sharedPool)
    }

    private var poolsByLPAR: [String: [Int]] {
        records.compactMapValues { $0.poolCores.isEmpty ? nil : $0.poolCores }
    }

    /// The blade's shared pool: the cores the shared LPARs' claims brought.
    private mutating func setPool(from pools: [String: [Int]]) throws(PartitionerError) {
        let cores = Set(pools.values.flatMap { $0 }).sorted()
        if cores != partitioner.resources.sharedPool { try partitioner.setSharedPool(cores) }
    }

    private func lparSpec(_ definition: LPARDefinitionInput) throws(PartitionerError) -> LPARSpec {
        let name = definition.name
        let (base, overflow) = definition.memoryBase.addingReportingOverflow(configuration.l0ReservedBytes)
        if overflow { throw .invalidSpec(lpar: name, reason: "memory base overflows") }
        let cpu: CPUAssignment
        if let ratio = definition.serviceRatio {
            guard let count = definition.sharedCPUs, count > 0 else {
                throw .invalidSpec(lpar: name, reason: "a shared LPAR's definition needs sharedCPUs")
            }
            cpu = .shared(logicalCPUs: count, serviceRatio: ratio, capped: definition.capped ?? true)
        } else {
            cpu = .dedicated(cores: definition.dedicatedCores)
        }
        var disks: [DiskAssignment] = []
        if let shared = configuration.sharedDisk {
            let count = shared.luns(for: definition.diskBytes)
            if let kept = lunRanges[name], kept.count == count {
                disks = [.shared(diskID: shared.diskID, luns: kept)]
            } else {
                guard let luns = freeLUNs(count, on: shared, for: name) else {
                    throw .invalidSpec(lpar: name, reason: "no free range of \(count) LUNs (\(ByteSize.format(UInt64(count) * shared.lunBytes))) on the shared disk \(shared.diskID)")
                }
                disks = [.shared(diskID: shared.diskID, luns: luns)]
            }
        }
        return LPARSpec(name: name, cpu: cpu, memory: MemoryRange(base: base, size: definition.memoryBytes), disks: disks,
                        vmm: definition.vmm, vmcsShadowing: definition.vmcsShadowing)
    }

    /// The lowest LUN range of `count` LUNs that no other LPAR holds, keeps or is releasing.
    private func freeLUNs(_ count: Int, on disk: SharedDiskLayout, for name: String) -> Range<Int>? {
        var taken = lunRanges.filter { $0.key != name }.map(\.value)
        for lpar in partitioner.lpars.values where lpar.spec.name != name {
            for case .shared(let id, let luns) in lpar.spec.disks where id == disk.diskID { taken.append(luns) }
        }
        var start = 0
        for range in taken.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if start + count <= range.lowerBound { break }
            start = max(start, range.upperBound)
        }
        return start + count <= disk.lunCount ? start..<(start + count) : nil
    }
}

/// A disk image cut into LUNs of equal size that backs a shared disk of the blade.
public struct SharedDiskLayout: Sendable, Equatable {
    /// The blade's shared disk (its id in the inventory) the image backs.
    public var diskID: String
    public var lunCount: Int
    public var lunBytes: UInt64

    public init(diskID: String, lunCount: Int, lunBytes: UInt64) {
        self.diskID = diskID
        self.lunCount = lunCount
        self.lunBytes = lunBytes
    }

    /// LUNs that hold `bytes` (at least one).
    public func luns(for bytes: UInt64) -> Int {
        let (rounded, overflow) = bytes.addingReportingOverflow(lunBytes - 1)
        let count = overflow ? UInt64.max / lunBytes : rounded / lunBytes
        return Int(clamping: max(1, count))
    }
}
