import Foundation
#if os(Linux)
public import KVMBackend
#endif
public import Partitioner
public import Protos
import SimBackend
import VMX

/// Where the kvm backend finds its guest image, its own executable (to start LPAR
/// processes) and the directory for the LPARs' disk images; and, optionally, one disk image
/// all LPARs share, each in its own LUN range.
public struct KVMRuntimeSettings: Sendable {
    public var image: String
    public var executable: String
    public var dataDirectory: String
    /// nil: every LPAR gets its own sparse image, DATA-DIR/BLADE-LPAR.img.
    public var sharedDisk: SharedDiskImage?
    /// The guest hypervisor image VMM partitions boot (l1-vmm) and the VMX microcode page L0
    /// maps into them; nil: VMM partitions are refused.
    public var vmmImage: String?
    public var microcode: String?

    public init(image: String, executable: String, dataDirectory: String, sharedDisk: SharedDiskImage? = nil,
                vmmImage: String? = nil, microcode: String? = nil) {
        self.image = image
        self.executable = executable
        self.dataDirectory = dataDirectory
        self.sharedDisk = sharedDisk
        self.vmmImage = vmmImage
        self.microcode = microcode
    }
}

/// A disk image cut into LUNs of equal size, backing a shared disk of the blade: each LPAR
/// sees only the LUN range it was given, as through a shared HBA.
public struct SharedDiskImage: Sendable, Equatable {
    public var path: String
    /// The blade's shared disk (its id in the inventory) the image backs.
    public var diskID: String
    public var lunCount: Int
    public var lunBytes: UInt64

    public init(path: String, diskID: String, lunCount: Int, lunBytes: UInt64) {
        self.path = path
        self.diskID = diskID
        self.lunCount = lunCount
        self.lunBytes = lunBytes
    }

    /// The image at `path` for `disk`: LUN size = the file's size / its LUNs, whole sectors.
    public static func open(path: String, disk: BladeDisk) -> Result<SharedDiskImage, AgentError> {
        guard disk.shared else { return .failure(.badInput("shared-disk: disk \(disk.id) is not shared (ID:LUNS:shared)")) }
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              let size = (attributes[.size] as? NSNumber)?.uint64Value else {
            return .failure(.badInput("shared-disk \(path) does not exist or cannot be read"))
        }
        let lunBytes = size / UInt64(disk.lunCount) / 512 * 512
        guard lunBytes > 0 else {
            return .failure(.badInput("shared-disk \(path) (\(size) bytes) is too small for \(disk.lunCount) LUNs of at least 512 bytes"))
        }
        return .success(SharedDiskImage(path: path, diskID: disk.id, lunCount: disk.lunCount, lunBytes: lunBytes))
    }

    /// LUNs that hold `bytes` (at least one).
    public func luns(for bytes: UInt64) -> Int { Int(max(1, (bytes + lunBytes - 1) / lunBytes)) }
}

/// The blade's partitioner and the L2 VMs running in its VMM LPARs, driven by the
/// controller's commands. Every command is idempotent: repeating one that already took
/// effect answers `ok` and changes nothing.
public actor BladeRuntime {
    /// One L2 VM, run by the simulated backend in the LPAR's guest hypervisor.
    final class VMRun {
        let info: VMInfo
        let sim: SimLPAR
        var clock: Cycles = 0
        var failure: String?
        init(info: VMInfo, sim: SimLPAR) {
            self.info = info
            self.sim = sim
        }
    }

    public let bladeID: String
    public let l0ReservedBytes: UInt64
    /// Virtual time each VM advances per heartbeat.
    public let sliceSeconds: Double
    private var partitioner: BladePartitioner
    private var vms: [String: [String: VMRun]] = [:]
    private let costs = PlatformCostModel.xeonE52667v3
    /// The kvm backend's settings; nil on the sim backend.
    public let kvm: KVMRuntimeSettings?
    /// Disk bytes of each LPAR, from its definition (the kvm backend gives it a disk image).
    private var diskBytes: [String: UInt64] = [:]
    /// The guest hypervisor's slot of each L2 VM, by LPAR (kvm backend).
    private var guestSlots: [String: [String: Int]] = [:]
    /// The cores each shared LPAR's claim added to the blade's shared pool.
    private var poolCores: [String: [Int]] = [:]
    /// LUN ranges of the shared disk image, by LPAR; kept in DATA-DIR/luns.json, so that a
    /// partition defined again (after an agent restart) finds its own data.
    private var lunRanges: [String: Range<Int>] = [:]
    #if os(Linux)
    private var processes: [String: LPARSupervisor] = [:]
    #endif

    public init(bladeID: String, resources: BladeResources, sliceSeconds: Double, kvm: KVMRuntimeSettings? = nil) throws(PartitionerError) {
        self.bladeID = bladeID
        self.l0ReservedBytes = resources.l0ReservedBytes
        self.sliceSeconds = sliceSeconds
        self.kvm = kvm
        self.partitioner = try BladePartitioner(resources: resources)
        if let kvm, kvm.sharedDisk != nil { lunRanges = Self.loadLUNs(kvm.dataDirectory) }
    }

    /// Carries out one command of the controller.
    public func execute(_ request: AgentCommandRequest) async -> CommandResultResponse {
        let name = request.lparName ?? request.lpar?.name ?? ""
        func done() -> CommandResultResponse {
            CommandResultResponse(commandID: request.commandID, ok: true, status: status(of: name))
        }
        func refuse(_ message: String) -> CommandResultResponse {
            CommandResultResponse(commandID: request.commandID, ok: false, error: message, status: status(of: name))
        }
        do {
            switch request.kind {
            case .defineLPAR:
                guard let definition = request.lpar else { return refuse("defineLPAR carries no LPAR definition") }
                let spec = try lparSpec(definition)
                let existing = partitioner.lpars[spec.name]
                if let existing {
                    if existing.spec == spec { return done() }
                    guard LPARLifecycle.removable.contains(existing.state) else {
                        return refuse("LPAR \(spec.name) is \(existing.state.rawValue) with another definition; stop it first")
                    }
                }
                // A shared LPAR's claim joins the pool first (a refusal puts the pool back).
                let pool = definition.serviceRatio == nil ? [] : definition.poolCores.map(Int.init)
                var pools = poolCores
                pools[spec.name] = pool.isEmpty ? nil : pool
                let before = partitioner
                try setPool(from: pools)
                do {
                    if existing != nil { try partitioner.redefine(spec) } else { try partitioner.define(spec) }
                } catch {
                    partitioner = before
                    throw error
                }
                poolCores = pools
                repinSharedLPARs()
                diskBytes[spec.name] = definition.diskBytes ?? 0
                if case .shared(_, let luns) = spec.disks.first, lunRanges[spec.name] != luns {
                    lunRanges[spec.name] = luns
                    saveLUNs()
                }
                return done()
            case .activate:
                guard let lpar = partitioner.lpars[name] else { return refuse("LPAR \(name) is not defined") }
                if lpar.state == .running { return done() }
                _ = try partitioner.apply(.activate, to: name)
                if let failure = await startGuest(lpar.spec) {
                    _ = try partitioner.apply(.fault(reason: failure), to: name)
                    return refuse(failure)
                }
                _ = try partitioner.apply(.activated, to: name)
                return done()
            case .deactivate:
                guard let lpar = partitioner.lpars[name] else { return refuse("LPAR \(name) is not defined") }
                if lpar.state != .running { return done() }
                _ = try partitioner.apply(.deactivate, to: name)
                stopGuest(name)
                _ = try partitioner.apply(.deactivated, to: name)
                return done()
            case .remove:
                guard let lpar = partitioner.lpars[name] else { return CommandResultResponse(commandID: request.commandID, ok: true) }
                if lpar.state == .running {
                    _ = try partitioner.apply(.deactivate, to: name)
                    _ = try partitioner.apply(.deactivated, to: name)
                }
                stopGuest(name)
                try partitioner.remove(name)
                removeDisk(name)
                vms[name] = nil
                diskBytes[name] = nil
                if poolCores.removeValue(forKey: name) != nil {
                    try setPool(from: poolCores)
                    repinSharedLPARs()
                }
                return CommandResultResponse(commandID: request.commandID, ok: true)
            case .createVM:
                guard let vm = request.vm else { return refuse("createVM carries no VM") }
                guard let lpar = partitioner.lpars[vm.partition] else { return refuse("LPAR \(vm.partition) is not defined") }
                if kvm != nil {
                    guard lpar.state == .running else { return refuse("LPAR \(vm.partition) is \(lpar.state.rawValue), not running") }
                    if let failure = createGuestVM(vm) { return refuse(failure) }
                    return done()
                }
                if vms[vm.partition]?[vm.name] != nil { return done() }
                guard lpar.state == .running else { return refuse("LPAR \(vm.partition) is \(lpar.state.rawValue), not running") }
                let workload: any WorkloadModel
                let vcpus = Int(vm.vcpus)
                switch vm.workload {
                case .iometer: workload = IOmeterWorkload(vcpus: vcpus)
                case .sysbenchOLTP: workload = SysbenchOLTPWorkload(threads: min(4, vcpus), vcpus: vcpus)
                case .idle: workload = IdleWorkload(vcpus: vcpus)
                }
                let seed = vm.name.utf8.reduce(UInt64(1469598103934665603)) { ($0 ^ UInt64($1)) &* 1099511628211 }
                let sim = try SimLPAR(spec: lpar.spec, costs: costs, workload: workload, seed: seed)
                vms[vm.partition, default: [:]][vm.name] = VMRun(info: vm, sim: sim)
                return done()
            case .deleteVM:
                guard let vm = request.vm else { return refuse("deleteVM carries no VM") }
                vms[vm.partition]?[vm.name] = nil
                deleteGuestVM(vm)
                return done()
            }
        } catch {
            return refuse("\(error)")
        }
    }

    private func lparSpec(_ definition: LPARDefinition) throws(PartitionerError) -> LPARSpec {
        let name = definition.name
        let (base, overflow) = definition.memoryBase.addingReportingOverflow(l0ReservedBytes)
        if overflow { throw .invalidSpec(lpar: name, reason: "memory base overflows") }
        let cpu: CPUAssignment
        if let ratio = definition.serviceRatio {
            guard let count = definition.sharedCPUs, count > 0 else {
                throw .invalidSpec(lpar: name, reason: "a shared LPAR's definition needs sharedCPUs")
            }
            cpu = .shared(logicalCPUs: Int(count), serviceRatio: Int(ratio), capped: definition.capped ?? true)
        } else {
            cpu = .dedicated(cores: definition.dedicatedCores.map(Int.init))
        }
        var disks: [DiskAssignment] = []
        if let shared = kvm?.sharedDisk {
            let count = shared.luns(for: definition.diskBytes ?? 0)
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

    /// The lowest LUN range of `count` LUNs that no other LPAR holds or keeps.
    private func freeLUNs(_ count: Int, on disk: SharedDiskImage, for name: String) -> Range<Int>? {
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

    /// The blade's shared pool: the cores the shared LPARs' claims brought.
    private func setPool(from pools: [String: [Int]]) throws(PartitionerError) {
        let cores = Set(pools.values.flatMap { $0 }).sorted()
        if cores != partitioner.resources.sharedPool { try partitioner.setSharedPool(cores) }
    }

    /// Moves the running shared LPARs' vCPUs onto the current pool.
    private func repinSharedLPARs() {
        #if os(Linux)
        let pool = partitioner.resources.sharedPool
        guard !pool.isEmpty else { return }
        for process in processes.values where process.configuration.share != nil {
            process.send(LPARHostCommand(command: "pool", cores: pool))
        }
        #endif
    }

    private static func lunFile(_ directory: String) -> String { directory + "/luns.json" }

    private static func loadLUNs(_ directory: String) -> [String: Range<Int>] {
        guard let data = FileManager.default.contents(atPath: lunFile(directory)),
              let entries = try? JSONDecoder().decode([String: [Int]].self, from: data) else { return [:] }
        return entries.compactMapValues { $0.count == 2 && $0[0] < $0[1] ? $0[0]..<$0[1] : nil }
    }

    private func saveLUNs() {
        guard let kvm else { return }
        let entries = lunRanges.mapValues { [$0.lowerBound, $0.upperBound] }
        guard let data = try? JSONEncoder().encode(entries) else { return }
        try? FileManager.default.createDirectory(atPath: kvm.dataDirectory, withIntermediateDirectories: true)
        try? data.write(to: URL(fileURLWithPath: Self.lunFile(kvm.dataDirectory)), options: .atomic)
    }

    // MARK: The kvm backend

    /// An LPAR's own disk image, DATA-DIR/BLADE-LPAR.img.
    private func imagePath(_ name: String, _ kvm: KVMRuntimeSettings) -> String { kvm.dataDirectory + "/\(bladeID)-\(name).img" }

    private func diskPath(_ name: String) -> String? { kvm.map { imagePath(name, $0) } }

    #if os(Linux)
    /// The LPAR's disk: its LUN range of the shared image, or its own sparse image (made on
    /// first use).
    private func disk(for spec: LPARSpec, kvm: KVMRuntimeSettings) throws -> LPARConfiguration.Disk {
        if let shared = kvm.sharedDisk, case .shared(_, let luns) = spec.disks.first {
            return .init(path: shared.path, offset: UInt64(luns.lowerBound) * shared.lunBytes,
                         length: UInt64(luns.count) * shared.lunBytes, writable: true)
        }
        let path = imagePath(spec.name, kvm)
        let bytes = max(diskBytes[spec.name] ?? 0, 1 << 20) / 512 * 512
        try FileManager.default.createDirectory(atPath: kvm.dataDirectory, withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else { throw AgentError.badInput("cannot create the disk image \(path)") }
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.truncate(atOffset: bytes)   // sparse
            try handle.close()
        }
        return .init(path: path, writable: true)
    }
    #endif

    /// Starts the LPAR's own process and waits for its guest to boot; the failure, or nil.
    private func startGuest(_ spec: LPARSpec) async -> String? {
        #if os(Linux)
        guard let kvm else { return nil }
        let disk: LPARConfiguration.Disk
        do { disk = try self.disk(for: spec, kvm: kvm) } catch {
            return "cannot prepare the LPAR's disk: \(error)"
        }
        var cores: [Int] = []
        var share: LPARConfiguration.Share?
        switch spec.cpu {
        case .dedicated(let dedicated): cores = dedicated
        case .shared(let count, let ratio, let capped):
            cores = partitioner.resources.sharedPool
            share = .init(serviceRatio: ratio, capped: capped, vcpus: count)
        }
        var vmx: LPARConfiguration.VMX?
        var image = kvm.image
        if spec.vmm {
            guard let vmmImage = kvm.vmmImage, let microcode = kvm.microcode else {
                return "this blade runs no guest hypervisors (no l1-vmm image or VMX microcode page)"
            }
            image = vmmImage
            vmx = .init(microcode: microcode, shadowing: spec.vmcsShadowing)
        }
        let configuration = LPARConfiguration(name: spec.name, memoryBytes: spec.memory.size, hostCores: cores.isEmpty ? [0] : cores,
                                              image: image, disk: disk, share: share, vmx: vmx)
        do {
            let process = try LPARSupervisor(configuration, executable: kvm.executable)
            guard await process.wait(timeout: 20, until: { $0.state == "ready" || $0.state == "failed" }), process.status.state == "ready" else {
                let reason = process.status.reason ?? "the guest did not boot within 20 s"
                process.stop()
                return reason
            }
            if !spec.vmm { process.send(LPARHostCommand(command: "workload", workload: "idle")) }
            processes[spec.name] = process
            return nil
        } catch {
            return "cannot start the LPAR's process: \(error)"
        }
        #else
        return kvm == nil ? nil : "the kvm backend runs on Linux only"
        #endif
    }

    private func stopGuest(_ name: String) {
        #if os(Linux)
        processes.removeValue(forKey: name)?.stop()
        guestSlots[name] = nil
        #endif
    }

    /// The LPAR is gone: its own image is deleted; its LUN range of the shared image is
    /// zeroed before another LPAR may be given it.
    private func removeDisk(_ name: String) {
        if let disk = diskPath(name) { try? FileManager.default.removeItem(atPath: disk) }
        guard let shared = kvm?.sharedDisk, let luns = lunRanges[name] else { return }
        if Self.zero(path: shared.path, offset: UInt64(luns.lowerBound) * shared.lunBytes, length: UInt64(luns.count) * shared.lunBytes) {
            lunRanges[name] = nil
            saveLUNs()
        }
    }

    /// Writes zeros over a range of a file; false when it could not (the range stays kept).
    static func zero(path: String, offset: UInt64, length: UInt64) -> Bool {
        guard let handle = FileHandle(forUpdatingAtPath: path) else { return false }
        defer { try? handle.close() }
        let chunk = Data(count: Int(min(length, 1 << 20)))
        var done: UInt64 = 0
        do {
            try handle.seek(toOffset: offset)
            while done < length {
                let piece = min(UInt64(chunk.count), length - done)
                try handle.write(contentsOf: piece == UInt64(chunk.count) ? chunk : chunk.prefix(Int(piece)))
                done += piece
            }
            try handle.synchronize()
            return true
        } catch {
            return false
        }
    }

    /// Notices LPAR processes that died or whose guest failed: only that LPAR goes to failed.
    private func noticeFailures() {
        #if os(Linux)
        for (name, process) in processes {
            let status = process.status
            guard status.state == "failed", partitioner.lpars[name]?.state == .running else { continue }
            _ = try? partitioner.apply(.fault(reason: status.reason ?? "the LPAR's process failed"), to: name)
            processes[name] = nil
            process.stop()
        }
        #endif
    }

    #if os(Linux)
    /// The last report of a running LPAR's process (kvm backend), for diagnostics.
    public func guestStatus(of name: String) -> LPARHostStatus? { processes[name]?.status }

    /// Passes a command to a running LPAR's process (kvm backend); false when none runs.
    @discardableResult
    public func sendToGuest(_ command: LPARHostCommand, lpar name: String) -> Bool {
        guard let process = processes[name] else { return false }
        process.send(command)
        return true
    }
    #endif

    /// The blade's shared pool now (the cores its shared LPARs' claims brought).
    public var sharedPool: [Int] { partitioner.resources.sharedPool }

    // MARK: L2 VMs on the kvm backend (the guest hypervisor's slots)

    /// Asks the LPAR's guest hypervisor for an L2 VM in a free slot; the failure, or nil.
    private func createGuestVM(_ vm: VMInfo) -> String? {
        #if os(Linux)
        if guestSlots[vm.partition]?[vm.name] != nil { return nil }
        guard let process = processes[vm.partition], process.configuration.vmx != nil else {
            return "LPAR \(vm.partition) runs no guest hypervisor"
        }
        let taken = Set(guestSlots[vm.partition]?.values.map { $0 } ?? [])
        guard let slot = (0..<GuestABI.VMTable.slots).first(where: { !taken.contains($0) }) else {
            return "the guest hypervisor of \(vm.partition) runs at most \(GuestABI.VMTable.slots) L2 VMs"
        }
        let workload: GuestABI.VMTable.Workload
        switch vm.workload {
        case .iometer: workload = .iometer
        case .sysbenchOLTP: workload = .sysbenchOLTP
        case .idle: workload = .idle
        }
        process.send(LPARHostCommand(command: "post", argument: UInt64(slot) | workload.rawValue << 8,
                                     mailbox: GuestABI.Command.vmCreate.rawValue))
        guestSlots[vm.partition, default: [:]][vm.name] = slot
        return nil
        #else
        return "the kvm backend runs on Linux only"
        #endif
    }

    private func deleteGuestVM(_ vm: VMInfo) {
        #if os(Linux)
        guard let slot = guestSlots[vm.partition]?.removeValue(forKey: vm.name) else { return }
        processes[vm.partition]?.send(LPARHostCommand(command: "post", argument: UInt64(slot), mailbox: GuestABI.Command.vmDelete.rawValue))
        #endif
    }

    /// Stops every LPAR process (the agent is shutting down).
    public func shutdown() {
        #if os(Linux)
        for process in processes.values { process.stop() }
        processes.removeAll()
        #endif
    }

    /// Runs every VM of every running LPAR one slice of virtual time further.
    public func advance() {
        let slice = costs.cycles(seconds: sliceSeconds)
        for (lparName, runs) in vms {
            guard partitioner.lpars[lparName]?.state == .running else { continue }
            for run in runs.values where run.failure == nil {
                run.clock += slice
                do { try run.sim.run(until: run.clock) } catch { run.failure = "\(error)" }
            }
        }
    }

    /// The actual state of every LPAR, as the heartbeat carries it.
    public func statuses() -> [LPARStatus] {
        noticeFailures()
        return partitioner.lparNames.compactMap(status(of:))
    }

    private func status(of name: String) -> LPARStatus? {
        guard let lpar = partitioner.lpars[name] else { return nil }
        let runs = (vms[name] ?? [:]).values.sorted { $0.info.name < $1.info.name }
        var total = NestedCounters()
        for run in runs { total.add(run.sim.counters) }
        var vmStates = runs.map { run in
            VMStatus(name: run.info.name,
                     state: run.failure.map { "failed: \($0)" } ?? (lpar.state == .running ? "running" : "stopped"),
                     operations: run.sim.operations)
        }
        #if os(Linux)
        // The kvm backend: the guest hypervisor's report of its L2 VMs, and L0's counters.
        if let process = processes[name], process.configuration.vmx != nil {
            let status = process.status
            if let nested = status.nested { total = nested }
            let reports = status.vms ?? []
            vmStates = (guestSlots[name] ?? [:]).sorted { $0.key < $1.key }.map { vmName, slot in
                let report = slot < reports.count ? reports[slot] : nil
                let state: String
                switch report?.state {
                case .running?, .halted?: state = "running"
                case .failed?: state = "failed: exit reason \(report?.failure ?? 0)"
                default: state = "starting"
                }
                return VMStatus(name: vmName, state: state, operations: report?.operations ?? 0)
            }
        }
        #endif
        return LPARStatus(
            name: name, state: lpar.state.rawValue, failureReason: lpar.failureReason,
            counters: LPARCounters(l2Exits: total.totalL2Exits, reflected: total.l2ExitsReflected, trappedVMX: total.totalTrapped,
                                   servedByShadow: total.totalServedByShadow, l0Nanoseconds: total.l0Nanoseconds),
            vms: vmStates)
    }
}
