public import AgentCore
import Foundation
#if os(Linux)
import Glibc
public import KVMBackend
#endif
public import Partitioner
import Supervision

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

    /// The file that keeps the shared disk's LUN ranges across agent restarts.
    public var lunFile: String { dataDirectory + "/luns.json" }
}

/// A disk image cut into LUNs of equal size, backing a shared disk of the blade: each LPAR
/// sees only the LUN range it was given, as through a shared HBA.
public struct SharedDiskImage: Sendable, Equatable {
    public var path: String
    public var layout: SharedDiskLayout

    public init(path: String, diskID: String, lunCount: Int, lunBytes: UInt64) {
        self.path = path
        self.layout = SharedDiskLayout(diskID: diskID, lunCount: lunCount, lunBytes: lunBytes)
    }

    public var diskID: String { layout.diskID }
    public var lunCount: Int { layout.lunCount }
    public var lunBytes: UInt64 { layout.lunBytes }

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

    /// Byte offset and length of a LUN range in the image.
    func bytes(of luns: Range<Int>) -> (offset: UInt64, length: UInt64) {
        (UInt64(luns.lowerBound) * lunBytes, UInt64(luns.count) * lunBytes)
    }
}

/// Disk images on the host: an LPAR's own sparse image, zeroing a LUN range.
enum DiskImages {
    /// Makes a sparse image of `bytes` at `path` unless one is there.
    static func ensureSparse(path: String, bytes: UInt64, directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if FileManager.default.fileExists(atPath: path) { return }
        guard FileManager.default.createFile(atPath: path, contents: nil) else { throw AgentError.badInput("cannot create the disk image \(path)") }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: bytes)   // sparse
        try handle.close()
    }

    /// Writes zeros over a range of a file and syncs it; the error, or nil.
    static func zero(path: String, offset: UInt64, length: UInt64) -> String? {
        guard let handle = FileHandle(forUpdatingAtPath: path) else { return "cannot open \(path)" }
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
            return nil
        } catch {
            return "zeroing \(path) at \(offset)+\(length): \(error)"
        }
    }
}

#if os(Linux)
/// LPARs on KVM: each LPAR is its own `lpar-host` process, supervised by an `LPARSupervisor`;
/// a VMM LPAR's guest hypervisor (l1-vmm) runs the L2 VMs in its slots. Starting, stopping
/// and zeroing a LUN range run on threads of their own; a process that dies is reported as
/// the LPAR's failure with the way it ended.
public actor KVMLPARDriver: LPARDriver {
    public nonisolated let events: AsyncStream<DriverEvent>
    private let continuation: AsyncStream<DriverEvent>.Continuation
    public nonisolated var vmSlots: Int? { GuestABI.VMTable.slots }
    public let settings: KVMRuntimeSettings
    public let bladeID: String
    private var processes: [String: LPARSupervisor] = [:]
    /// The L2 VM in each slot of each VMM LPAR.
    private var slots: [String: [Int: String]] = [:]
    /// LPARs the driver is stopping: their process's end is no failure.
    private var stopping: Set<String> = []
    private var watchers: [String: Task<Void, Never>] = [:]
    private var pool: [Int] = []

    public func processIDs() async -> [String: Int32] { processes.mapValues(\.pid) }

    public init(bladeID: String, settings: KVMRuntimeSettings) {
        self.bladeID = bladeID
        self.settings = settings
        (events, continuation) = AsyncStream.makeStream(of: DriverEvent.self)
    }

    /// An LPAR's own disk image, DATA-DIR/BLADE-LPAR.img.
    nonisolated func imagePath(_ name: String) -> String { settings.dataDirectory + "/\(bladeID)-\(name).img" }

    public func start(_ launch: LPARLaunch) async -> DriverReport {
        let spec = launch.spec
        let settings = self.settings
        let disk: LPARConfiguration.Disk
        if let shared = settings.sharedDisk, case .shared(_, let luns) = spec.disks.first {
            let (offset, length) = shared.bytes(of: luns)
            disk = .init(path: shared.path, offset: offset, length: length, writable: true)
        } else {
            let path = imagePath(spec.name)
            let bytes = max(launch.diskBytes, 1 << 20) / 512 * 512
            do {
                try await OffThread.run("disk-\(spec.name)") { try DiskImages.ensureSparse(path: path, bytes: bytes, directory: settings.dataDirectory) }
            } catch {
                return .startFailed(reason: "cannot prepare the LPAR's disk: \(error)")
            }
            disk = .init(path: path, writable: true)
        }
        var cores: [Int] = []
        var share: LPARConfiguration.Share?
        switch spec.cpu {
        case .dedicated(let dedicated): cores = dedicated
        case .shared(let count, let ratio, let capped):
            cores = launch.poolCores
            share = .init(serviceRatio: ratio, capped: capped, vcpus: count)
        }
        var vmx: LPARConfiguration.VMX?
        var image = settings.image
        if spec.vmm {
            guard let vmmImage = settings.vmmImage, let microcode = settings.microcode else {
                return .startFailed(reason: "this blade runs no guest hypervisors (no l1-vmm image or VMX microcode page)")
            }
            image = vmmImage
            vmx = .init(microcode: microcode, shadowing: spec.vmcsShadowing)
        }
        let configuration = LPARConfiguration(name: spec.name, memoryBytes: spec.memory.size, hostCores: cores.isEmpty ? [0] : cores,
                                              image: image, disk: disk, share: share, vmx: vmx)
        let process: LPARSupervisor
        do {
            process = try await OffThread.run("start-\(spec.name)") { try LPARSupervisor(configuration, executable: settings.executable) }
        } catch {
            return .startFailed(reason: "cannot start the LPAR's process: \(error)")
        }
        guard await process.wait(timeout: 20, until: { $0.state.isUp || $0.state.isFinal }), process.status.state.isUp else {
            let reason = process.status.reason ?? "the guest did not boot within 20 s"
            await process.stop()
            return .startFailed(reason: reason)
        }
        if !spec.vmm { process.send(.workload(.idle)) }
        processes[spec.name] = process
        stopping.remove(spec.name)
        watchers[spec.name] = Task { [weak self] in await self?.watch(spec.name, process) }
        if share != nil, !pool.isEmpty, pool != launch.poolCores { process.send(.pool(cores: pool)) }
        return .started
    }

    /// Follows one LPAR's reports: its L2 VMs' states and, when the process ends without the
    /// driver stopping it, the LPAR's failure with the reason.
    private func watch(_ name: String, _ process: LPARSupervisor) async {
        var last: [Int: GuestABI.VMTable.State] = [:]
        var final = process.status
        for await status in process.updates() {
            final = status
            for (slot, report) in (status.vms ?? []).enumerated() where last[slot] != report.state {
                last[slot] = report.state
                guard let vm = slots[name]?[slot] else { continue }
                switch report.state {
                case .running, .halted: continuation.yield(DriverEvent(lpar: name, report: .vm(name: vm, .started)))
                case .failed: continuation.yield(DriverEvent(lpar: name, report: .vm(name: vm, .failed(reason: "exit reason \(report.failure)"))))
                case .free: break
                }
            }
            if status.state.isFinal { break }
        }
        guard processes[name] === process, !stopping.contains(name) else { return }
        processes[name] = nil
        slots[name] = nil
        watchers[name] = nil
        continuation.yield(DriverEvent(lpar: name, report: .failed(reason: final.reason ?? "the LPAR's process ended")))
        await process.stop()
    }

    public func stop(_ lpar: String) async -> DriverReport {
        stopping.insert(lpar)
        let process = processes.removeValue(forKey: lpar)
        slots[lpar] = nil
        watchers.removeValue(forKey: lpar)?.cancel()
        await process?.stop()
        return .stopped
    }

    public func releaseDisk(_ lpar: String, luns: Range<Int>?) async -> DriverReport {
        let own = imagePath(lpar)
        let shared = settings.sharedDisk
        let problem: String? = await OffThread.run("release-\(lpar)") {
            try? FileManager.default.removeItem(atPath: own)
            guard let shared, let luns else { return nil }
            let (offset, length) = shared.bytes(of: luns)
            return DiskImages.zero(path: shared.path, offset: offset, length: length)
        }
        return problem.map { .diskReleaseFailed(reason: $0) } ?? .diskReleased
    }

    public func setPool(_ cores: [Int]) async {
        pool = cores
        guard !cores.isEmpty else { return }
        for process in processes.values where process.configuration.share != nil { process.send(.pool(cores: cores)) }
    }

    public func createVM(_ vm: VMRequest, slot: Int) async {
        guard let process = processes[vm.partition], process.configuration.vmx != nil else {
            continuation.yield(DriverEvent(lpar: vm.partition, report: .vm(name: vm.name, .failed(reason: "LPAR \(vm.partition) runs no guest hypervisor"))))
            return
        }
        let workload: GuestABI.VMTable.Workload
        switch vm.workload {
        case .iometer: workload = .iometer
        case .sysbenchOLTP: workload = .sysbenchOLTP
        case .idle: workload = .idle
        }
        slots[vm.partition, default: [:]][slot] = vm.name
        if !process.send(.post(.vmCreate, argument: UInt64(slot) | workload.rawValue << 8)) {
            continuation.yield(DriverEvent(lpar: vm.partition, report: .vm(name: vm.name, .failed(reason: "the LPAR's process is gone"))))
        }
    }

    public func deleteVM(partition: String, name: String, slot: Int) async {
        guard slots[partition]?[slot] == name else { return }
        slots[partition]?[slot] = nil
        processes[partition]?.send(.post(.vmDelete, argument: UInt64(slot)))
    }

    public func heartbeatObservations() async -> [String: LPARObservation] {
        var observations: [String: LPARObservation] = [:]
        for (name, process) in processes {
            let status = process.status
            var observation = LPARObservation()
            if let nested = status.nested { observation.counters = LPARCounterValues(nested) }
            let reports = status.vms ?? []
            for (slot, vm) in slots[name] ?? [:] where slot < reports.count { observation.vmOperations[vm] = reports[slot].operations }
            observations[name] = observation
        }
        return observations
    }

    public func shutdown() async {
        let all = processes
        stopping.formUnion(all.keys)
        processes.removeAll()
        for watcher in watchers.values { watcher.cancel() }
        watchers.removeAll()
        await withTaskGroup(of: Void.self) { group in
            for process in all.values { group.addTask { await process.stop() } }
        }
        continuation.finish()
    }

    /// The last report of a running LPAR's process, for diagnostics and tests.
    public func guestStatus(of name: String) -> LPARHostStatus? { processes[name]?.status }

    /// Passes a command to a running LPAR's process; false when none runs or it is gone.
    @discardableResult
    public func send(_ command: LPARHostCommand, to name: String) -> Bool {
        processes[name]?.send(command) ?? false
    }

    /// The pid of a running LPAR's process (fault tests kill it).
    public func pid(of name: String) -> Int32? { processes[name]?.pid }
}
#endif
