#if os(Linux)
import CKVM
import CGuestABI
import Foundation
import Glibc
public import KVM
public import Partitioner

/// What an LPAR of the KVM backend is made of.
public struct LPARConfiguration: Sendable, Equatable, Codable {
    /// The LPAR's disk: a dedicated image, or a LUN range of a shared one (the guest sees
    /// only `length` bytes from `offset`).
    public struct Disk: Sendable, Equatable, Codable {
        public var path: String
        public var offset: UInt64
        /// nil: to the end of the file.
        public var length: UInt64?
        public var writable: Bool

        public init(path: String, offset: UInt64 = 0, length: UInt64? = nil, writable: Bool = false) {
            self.path = path
            self.offset = offset
            self.length = length
            self.writable = writable
        }
    }

    /// Shared mode: the LPAR runs on a pool of cores it shares with other shared LPARs,
    /// weighted by its service ratio against theirs and, when capped, never above its ratio.
    public struct Share: Sendable, Equatable, Codable {
        /// Percent of one core per vCPU (1 to 1000; above 100 only weighs more against others).
        public var serviceRatio: Int
        public var capped: Bool
        /// The LPAR's vCPUs (1 to 16); they may outnumber the pool's cores.
        public var vcpus: Int

        public init(serviceRatio: Int, capped: Bool, vcpus: Int = 1) {
            self.serviceRatio = serviceRatio
            self.capped = capped
            self.vcpus = vcpus
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            serviceRatio = try container.decode(Int.self, forKey: .serviceRatio)
            capped = try container.decode(Bool.self, forKey: .capped)
            vcpus = try container.decodeIfPresent(Int.self, forKey: .vcpus) ?? 1
        }
    }

    /// A guest hypervisor in the LPAR (vmm): L0 maps the VMX microcode page and serves the
    /// VMX gate on vCPU 0 (docs/vmx-gate.md).
    public struct VMX: Sendable, Equatable, Codable {
        /// The built microcode page (Agents/Guests/images/vmx-microcode.bin).
        public var microcode: String
        public var shadowing: Bool
        /// IA32_VMX_MISC bit 29 (VMWRITE to the VM-exit information fields).
        public var vmwriteToReadOnlyFields: Bool

        public init(microcode: String, shadowing: Bool = true, vmwriteToReadOnlyFields: Bool = true) {
            self.microcode = microcode
            self.shadowing = shadowing
            self.vmwriteToReadOnlyFields = vmwriteToReadOnlyFields
        }
    }

    public var name: String
    public var memoryBytes: UInt64
    /// Dedicated mode: the cores of the LPAR, one vCPU pinned to each (at most 16). Shared
    /// mode: the shared pool, which its vCPUs may run anywhere on (the agent may change it
    /// while the LPAR runs: `LPARMachine.setPool`).
    public var hostCores: [Int]
    public var image: String
    public var disk: Disk?
    /// nil: dedicated cores.
    public var share: Share?
    /// nil: a plain LPAR (the VMX gate raises #UD).
    public var vmx: VMX?
    /// A saved LPAR (`LPARSnapshot`) to restore instead of booting the image.
    public var restore: String?

    public init(name: String, memoryBytes: UInt64, hostCores: [Int], image: String, disk: Disk? = nil, share: Share? = nil,
                vmx: VMX? = nil) {
        self.name = name
        self.memoryBytes = memoryBytes
        self.hostCores = hostCores
        self.image = image
        self.disk = disk
        self.share = share
        self.vmx = vmx
    }
}

/// An L2 VM as the guest hypervisor (l1-vmm) reports it.
public struct VMReport: Sendable, Equatable, Codable {
    public var state: GuestABI.VMTable.State
    public var workload: GuestABI.VMTable.Workload
    public var exits: UInt64
    public var diskFirstSector: UInt64
    public var diskSectors: UInt64
    public var operations: UInt64
    public var bytes: UInt64
    public var passes: UInt64
    public var checksum: UInt64
    public var errors: UInt64
    /// The exit reason that ended it, when failed.
    public var failure: UInt64
}

/// Why an LPAR could not be built or failed.
public struct LPARError: Error, Equatable, Sendable, CustomStringConvertible {
    public var lpar: String
    public var message: String

    public init(lpar: String, _ message: String) {
        self.lpar = lpar
        self.message = message
    }

    public var description: String { "LPAR \(lpar): \(message)" }
}

/// An LPAR as a real KVM virtual machine: its memory (one memfd), the guest image loaded and
/// started directly in 64-bit long mode, and L0's devices (console, block, timer, mailbox).
/// One host thread per vCPU, each pinned to its dedicated core, runs the guest.
public final class LPARMachine: @unchecked Sendable {
    public enum State: Equatable, Sendable {
        case created, running, stopped
        /// Every vCPU parked at a clean point, its state kept (to save it).
        case paused
        case failed(String)
    }

    public let configuration: LPARConfiguration
    /// The LPAR's virtual machine, through the backend protocol.
    public let lpar: KVMLPAR
    let memory: UnsafeMutableRawPointer
    let diskFD: Int32
    private let exitHandlers: [L0ExitHandler]
    let diskOffset: UInt64
    let diskLength: UInt64
    private let lock = NSLock()
    private var _state: State = .created
    private var consoleLines: [String] = []
    private var consolePartial: [UInt8] = []
    private var threads: [Thread] = []
    private var threadIDs: [Int: UInt] = [:]
    private var stopRequested = false
    private let started = DispatchTime.now()
    private let finished = DispatchSemaphore(value: 0)
    private var exitCount: UInt64 = 0
    private var pinned: [Int: Int] = [:]
    private var pinning: String?
    private var sharedPool: [Int]
    /// The timer's value when a restored LPAR was saved.
    private var timerOffsetMillis: UInt64 = 0
    /// vCPU 0's nested-VMX counters as of its last VMX exit (the vCPU thread owns the core).
    private var nestedCounters = NestedCounters()
    private var l2Guests = 0

    /// The L2 VMs L0 runs for the guest hypervisor (as of its last VMX instruction).
    public var l2GuestCount: Int { lock.lock(); defer { lock.unlock() }; return l2Guests }
    /// Held while vCPUs are pinned to the pool, so that a change of pool is never undone by
    /// a vCPU that read the old one.
    private let poolLock = NSLock()

    /// Exits L0 has handled.
    public var exits: UInt64 { lock.lock(); defer { lock.unlock() }; return exitCount }

    /// The nested-VMX counters of vCPU 0 (an LPAR created with vmm): the VMX instructions
    /// that trapped through the gate, and the VMREADs and VMWRITEs the microcode page served
    /// without an exit. Read while the vCPU runs, they are a moment's snapshot.
    public var vmxCounters: NestedCounters? {
        guard let cpu = lpar.cpus.first, cpu.nested != nil else { return nil }
        lock.lock()
        var counters = nestedCounters
        lock.unlock()
        let served = cpu.servedByMicrocode
        counters.vmreadServedByShadow = served.reads
        counters.vmwriteServedByShadow = served.writes
        return counters
    }
    /// The host CPU the vCPU thread runs on, once it runs.
    public var pinnedCore: Int? { lock.lock(); defer { lock.unlock() }; return pinned[0] }
    /// The host CPU of each vCPU (dedicated mode).
    public var pinnedCores: [Int: Int] { lock.lock(); defer { lock.unlock() }; return pinned }
    /// Why the vCPU is not on the core it asked for, when it is not.
    public var pinningNote: String? { lock.lock(); defer { lock.unlock() }; return pinning }

    public init(_ configuration: LPARConfiguration, kvm: KVM) throws(LPARError) {
        self.configuration = configuration
        self.sharedPool = configuration.hostCores
        let name = configuration.name
        let size = configuration.memoryBytes
        guard size >= GuestABI.minimumMemory else {
            throw LPARError(lpar: name, "memory \(size >> 20) MiB is below the \(GuestABI.minimumMemory >> 20) MiB an LPAR needs")
        }
        guard size <= GuestABI.maximumMemory, size % (2 << 20) == 0 else {
            throw LPARError(lpar: name, "memory must be a multiple of 2 MiB and at most \(GuestABI.maximumMemory >> 30) GiB")
        }
        guard !configuration.hostCores.isEmpty else { throw LPARError(lpar: name, "no core to run on") }
        if let share = configuration.share, !(1...1000).contains(share.serviceRatio) {
            throw LPARError(lpar: name, "service ratio \(share.serviceRatio) is not within 1...1000")
        }
        if let share = configuration.share, !(1...GuestABI.maxVCPUs).contains(share.vcpus) {
            throw LPARError(lpar: name, "\(share.vcpus) shared vCPUs is not within 1...\(GuestABI.maxVCPUs)")
        }
        // The image, checked before anything is created.
        guard let image = FileManager.default.contents(atPath: configuration.image) else {
            throw LPARError(lpar: name, "the guest image \(configuration.image) cannot be read")
        }
        guard !image.isEmpty, UInt64(image.count) <= GuestABI.imageMax, GuestABI.image + UInt64(image.count) <= size else {
            throw LPARError(lpar: name, "the guest image is \(image.count) bytes; at most \(GuestABI.imageMax) fit at \(String(GuestABI.image, radix: 16, uppercase: false)) in the LPAR's memory")
        }
        // The disk.
        var diskFD: Int32 = -1
        var diskLength: UInt64 = 0
        if let disk = configuration.disk {
            diskFD = open(disk.path, (disk.writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
            guard diskFD >= 0 else {
                throw LPARError(lpar: name, "the disk image \(disk.path) cannot be opened: \(String(cString: strerror(errno)))")
            }
            var info = stat()
            fstat(diskFD, &info)
            let fileSize = UInt64(info.st_size)
            let length = disk.length ?? (fileSize >= disk.offset ? fileSize - disk.offset : 0)
            guard disk.offset % GuestABI.sector == 0, length % GuestABI.sector == 0, length > 0,
                  disk.offset + length <= fileSize else {
                close(diskFD)
                throw LPARError(lpar: name, "the disk range \(disk.offset)+\(length) is not whole sectors inside \(disk.path) (\(fileSize) bytes)")
            }
            diskLength = length
        }
        // The VM, through the backend protocol: memory is one memfd, mapped shared.
        // Dedicated: one vCPU per core (at most 16); shared: its vCPUs on the pool.
        let cpu: CPUAssignment = configuration.share.map { .shared(logicalCPUs: $0.vcpus, serviceRatio: $0.serviceRatio, capped: $0.capped) }
            ?? .dedicated(cores: Array(configuration.hostCores.prefix(GuestABI.maxVCPUs)))
        var support: KVMVMXSupport?
        if let vmx = configuration.vmx {
            guard let microcode = FileManager.default.contents(atPath: vmx.microcode) else {
                if diskFD >= 0 { close(diskFD) }
                throw LPARError(lpar: name, "the VMX microcode page \(vmx.microcode) cannot be read")
            }
            support = KVMVMXSupport(microcode: Array(microcode), vmwriteToReadOnlyFields: vmx.vmwriteToReadOnlyFields)
        }
        let spec = LPARSpec(name: name, cpu: cpu, memory: MemoryRange(base: 0, size: size), vmm: configuration.vmx != nil,
                            vmcsShadowing: configuration.vmx?.shadowing ?? false)
        do {
            guard let lpar = try KVMHypervisor(kvm: kvm, vmx: support).createVM(spec) as? KVMLPAR else {
                throw BackendError.internalError("the kvm backend made another kind of VM")
            }
            self.lpar = lpar
        } catch {
            if diskFD >= 0 { close(diskFD) }
            throw LPARError(lpar: name, "\(error)")
        }
        let mapped = lpar.mapped.base
        self.memory = mapped
        self.exitHandlers = lpar.cpus.map { L0ExitHandler(core: $0.nested, lpar: name, vcpu: $0.index) }
        self.diskFD = diskFD
        self.diskOffset = configuration.disk?.offset ?? 0
        self.diskLength = diskLength
        image.withUnsafeBytes { bytes in
            (mapped + Int(GuestABI.image)).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        }
        writeLongModeTables()
        store(.magic, UInt32(GuestABI.mailboxMagic))
        store(.diskSectors, diskLength / GuestABI.sector)
        store(.memoryBytes, size)
        store(.vcpus, UInt32(lpar.cpus.count))
        do {
            try enterLongMode()
        } catch {
            throw LPARError(lpar: name, "KVM: \(error)")
        }
    }

    deinit {
        stop()
        if diskFD >= 0 { close(diskFD) }
    }

    // MARK: Boot

    /// An identity map of the LPAR's memory with 2 MiB user pages, and a flat 64-bit GDT.
    ///
    /// The guest runs at CPL 3 with IOPL 3 (its port I/O does not fault): a KVM without
    /// hardware virtualization (such as kvm_pvm, on these hosts) runs guest user-mode code
    /// natively but emulates supervisor-mode code instruction by instruction (measured here:
    /// 35 rounds/s of the compute workload at CPL 0, 169,000 at CPL 3). The LPAR guest needs
    /// no privilege: L0 has set up its paging and segments, and it idles through a port.
    private func writeLongModeTables() {
        func put64(_ address: UInt64, _ value: UInt64) { (memory + Int(address)).storeBytes(of: value, as: UInt64.self) }
        let present: UInt64 = 1 | 4, writable: UInt64 = 2, large: UInt64 = 0x80   // present, user
        put64(GuestABI.pml4, GuestABI.pdpt | present | writable)
        let gib = Int((configuration.memoryBytes + (1 << 30) - 1) >> 30)
        for directory in 0..<gib {
            let table = GuestABI.pageDirectories + UInt64(directory) * 0x1000
            put64(GuestABI.pdpt + UInt64(directory) * 8, table | present | writable)
            // Whole gigabytes are mapped, also past the end of the LPAR's memory: an access
            // there reaches L0 as MMIO to a guest-physical address with no memory, a wild
            // access L0 fails the LPAR for (no other LPAR's memory is ever mapped).
            for entry in 0..<512 {
                let physical = (UInt64(directory) << 30) | (UInt64(entry) << 21)
                put64(table + UInt64(entry) * 8, physical | present | writable | large)
            }
        }
        put64(GuestABI.gdt, 0)                          // null
        put64(GuestABI.gdt + 8, 0x00af_9a00_0000_ffff)  // 64-bit code, DPL 0
        put64(GuestABI.gdt + 16, 0x00cf_9200_0000_ffff) // data, DPL 0
        put64(GuestABI.gdt + 24, 0x00af_fa00_0000_ffff) // 64-bit code, DPL 3
        put64(GuestABI.gdt + 32, 0x00cf_f200_0000_ffff) // data, DPL 3
    }

    private func enterLongMode() throws(KVMError) {
        for cpu in lpar.cpus { try enterLongMode(cpu.vcpu, index: cpu.index) }
    }

    /// vCPU 0 starts at the image, the others at its ninth byte with their index in RDI;
    /// each has its own 64 KiB of stack.
    private func enterLongMode(_ vcpu: KVMVCPU, index: Int) throws(KVMError) {
        var sregs = try vcpu.specialRegisters()
        var code = kvm_segment()
        code.base = 0; code.limit = 0xffff_ffff; code.selector = 0x1b; code.type = 11; code.present = 1
        code.dpl = 3; code.db = 0; code.s = 1; code.l = 1; code.g = 1
        var data = kvm_segment()
        data.base = 0; data.limit = 0xffff_ffff; data.selector = 0x23; data.type = 3; data.present = 1
        data.dpl = 3; data.db = 1; data.s = 1; data.l = 0; data.g = 1
        sregs.cs = code
        sregs.ds = data; sregs.es = data; sregs.fs = data; sregs.gs = data; sregs.ss = data
        sregs.gdt.base = GuestABI.gdt
        sregs.gdt.limit = 39
        // The IDT stays at its reset place (base 0): the first 512 bytes of guest memory are
        // zero, so every exception finds a gate that is not present, and ends in a triple
        // fault. (An IDT limit of 0 is the same to the guest, but makes this host's KVM
        // emulate the guest's code.)
        sregs.cr3 = GuestABI.pml4
        sregs.cr4 = 1 << 5                              // PAE
        sregs.cr0 = (1 << 0) | (1 << 4) | (1 << 5) | (1 << 31) // PE, ET, NE, PG
        sregs.efer = (1 << 8) | (1 << 10)              // LME, LMA
        try vcpu.setSpecialRegisters(sregs)
        var regs = kvm_regs()
        regs.rip = index == 0 ? GuestABI.image : GuestABI.apEntry
        regs.rsp = GuestABI.stackTop - UInt64(index) * GuestABI.stackPerVCPU
        regs.rdi = UInt64(index)
        regs.rflags = 0x3002            // IOPL 3
        try vcpu.setRegisters(regs)
    }

    // MARK: Mailbox

    public func load(_ field: GuestABI.MailboxField) -> UInt64 {
        let (offset, width) = field.layout
        let address = memory + Int(GuestABI.mailbox) + offset
        return width == 4 ? UInt64(address.load(as: UInt32.self)) : address.load(as: UInt64.self)
    }

    /// What the guest says it is doing; nil for a value the ABI does not define.
    public var guestState: GuestABI.GuestState? { GuestABI.GuestState(rawValue: UInt32(truncatingIfNeeded: load(.state))) }

    /// Compute rounds vCPU `index` has done.
    public func cpuOperations(_ index: Int) -> UInt64 {
        guard (0..<GuestABI.maxVCPUs).contains(index) else { return 0 }
        return (memory + Int(GuestABI.mailbox) + GuestABI.MailboxField.cpuOperations.offset + 8 * index).load(as: UInt64.self)
    }

    private func store(_ field: GuestABI.MailboxField, _ value: UInt32) {
        precondition(field.layout.width == 4, "mailbox field \(field) is not 32 bits wide")
        (memory + Int(GuestABI.mailbox) + field.offset).storeBytes(of: value, as: UInt32.self)
    }

    private func store(_ field: GuestABI.MailboxField, _ value: UInt64) {
        precondition(field.layout.width == 8, "mailbox field \(field) is not 64 bits wide")
        (memory + Int(GuestABI.mailbox) + field.offset).storeBytes(of: value, as: UInt64.self)
    }

    /// Posts a command to the guest through the mailbox.
    public func post(_ command: GuestABI.Command, argument: UInt64 = 0) {
        lock.lock()
        defer { lock.unlock() }
        store(.command, command.rawValue)
        store(.argument, argument)
        let sequence = UInt32(truncatingIfNeeded: load(.commandSeq) &+ 1)
        store(.commandSeq, sequence)
    }

    /// Whether the guest has taken the last command posted.
    public var commandTaken: Bool { load(.ackSeq) == load(.commandSeq) }

    /// vCPU 0's time so far: in the guest (L1 and L2) and in all, from its start.
    public var vcpuTime: (l1: UInt64, l2: UInt64, total: UInt64) {
        let guest = lpar.cpus[0].guestNanoseconds
        return (guest.l1, guest.l2, DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds)
    }

    // MARK: Pause, save, restore

    /// Parks every vCPU at a clean point (between exits, with what the last exit left
    /// pending completed) and keeps the LPAR's state, so that it can be saved.
    public func pause() {
        lock.lock()
        guard _state == .running else { lock.unlock(); return }
        stopRequested = true
        lock.unlock()
        var remaining = threads.count
        while remaining > 0 {
            kickAll()
            if finished.wait(timeout: .now() + .milliseconds(20)) == .success { remaining -= 1 }
        }
        threads.removeAll()
        for cpu in lpar.cpus { try? cpu.vcpu.flushPendingExit() }
        lock.lock()
        if _state == .running { _state = .paused }
        lock.unlock()
    }

    /// The paused LPAR, whole.
    public func snapshot() throws -> LPARSnapshot {
        guard state == .paused else { throw LPARError(lpar: configuration.name, "only a paused LPAR can be saved (it is \(state))") }
        var pages: [LPARSnapshot.Page] = []
        let count = Int(configuration.memoryBytes / 4096)
        for index in 0..<count {
            let page = memory + index * 4096
            var zero = true
            for word in 0..<512 where page.load(fromByteOffset: word * 8, as: UInt64.self) != 0 {
                zero = false
                break
            }
            if !zero { pages.append(LPARSnapshot.Page(index: UInt64(index), bytes: Data(bytes: page, count: 4096))) }
        }
        var vcpus: [LPARSnapshot.VCPU] = []
        for cpu in lpar.cpus { vcpus.append(try cpu.vcpu.save()) }
        return LPARSnapshot(name: configuration.name, memoryBytes: configuration.memoryBytes, pages: pages, vcpus: vcpus,
                            nested: try lpar.cpus[0].saveNested(), timerMillis: timerMillis, console: console)
    }

    /// An LPAR restored from `snapshot` (made with the same configuration), ready to start:
    /// it goes on where it was paused.
    public convenience init(_ configuration: LPARConfiguration, kvm: KVM, restoring snapshot: LPARSnapshot) throws {
        var fresh = configuration
        fresh.restore = nil
        try self.init(fresh, kvm: kvm)
        guard snapshot.memoryBytes == configuration.memoryBytes, snapshot.vcpus.count == lpar.cpus.count else {
            throw LPARError(lpar: configuration.name, "the snapshot is of an LPAR with \(snapshot.memoryBytes >> 20) MiB and \(snapshot.vcpus.count) vCPUs, not \(configuration.memoryBytes >> 20) MiB and \(lpar.cpus.count)")
        }
        // What booting wrote lies below 2 MiB; the rest of a fresh LPAR's memory is zero.
        memset(memory, 0, Int(min(configuration.memoryBytes, 2 << 20)))
        for page in snapshot.pages where page.index < configuration.memoryBytes / 4096 && page.bytes.count == 4096 {
            page.bytes.withUnsafeBytes { (memory + Int(page.index) * 4096).copyMemory(from: $0.baseAddress!, byteCount: 4096) }
        }
        for (cpu, saved) in zip(lpar.cpus, snapshot.vcpus) { try cpu.vcpu.load(saved) }
        if let nested = snapshot.nested { try lpar.cpus[0].restoreNested(nested) }
        lock.lock()
        timerOffsetMillis = snapshot.timerMillis
        consoleLines = snapshot.console
        lock.unlock()
    }

    /// The LPAR's timer: milliseconds since it started (across a save and restore).
    var timerMillis: UInt64 { (DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1_000_000 + timerOffsetMillis }

    /// What the guest hypervisor reports of the L2 VM in `slot`.
    public func vmReport(slot: Int) -> VMReport? {
        guard (0..<GuestABI.VMTable.slots).contains(slot) else { return nil }
        let entry = (memory + Int(GuestABI.VMTable.address) + slot * GuestABI.VMTable.entrySize).loadUnaligned(as: vm_report.self)
        return VMReport(state: GuestABI.VMTable.State(rawValue: entry.state) ?? .failed,
                        workload: GuestABI.VMTable.Workload(rawValue: UInt64(entry.workload)) ?? .idle,
                        exits: entry.exits, diskFirstSector: entry.disk_first, diskSectors: entry.disk_sectors,
                        operations: entry.operations, bytes: entry.bytes, passes: entry.passes, checksum: entry.checksum,
                        errors: entry.errors, failure: entry.failure)
    }

    // MARK: Running

    public var state: State {
        lock.lock()
        defer { lock.unlock() }
        return _state
    }

    public var console: [String] {
        lock.lock()
        defer { lock.unlock() }
        return consoleLines + (consolePartial.isEmpty ? [] : [String(decoding: consolePartial, as: UTF8.self)])
    }

    /// Starts one thread per vCPU.
    public func start() {
        lock.lock()
        guard _state == .created else { lock.unlock(); return }
        _state = .running
        lock.unlock()
        ckvm_install_kick_handler()
        for index in lpar.cpus.indices {
            let thread = Thread { [self] in
                self.runLoop(self.lpar.cpus[index])
                self.lpar.cpus[index].threadEnded()
                self.finished.signal()
            }
            thread.name = "lpar-\(configuration.name)-\(index)"
            threads.append(thread)
            thread.start()
        }
    }

    /// Stops every vCPU and waits for their threads.
    public func stop() {
        lock.lock()
        let running = _state == .running
        stopRequested = true
        lock.unlock()
        guard running || !threads.isEmpty else { return }
        var remaining = threads.count
        while remaining > 0 {
            kickAll()
            if finished.wait(timeout: .now() + .milliseconds(20)) == .success { remaining -= 1 }
        }
        threads.removeAll()
        lock.lock()
        if _state == .running { _state = .stopped }
        lock.unlock()
    }

    /// Interrupts KVM_RUN on every vCPU thread that has started.
    private func kickAll() {
        lock.lock()
        let targets = Array(threadIDs.values)
        lock.unlock()
        for target in targets { ckvm_kick_thread(target) }
    }

    /// Waits until `condition` holds or `timeout` seconds pass, without holding a thread.
    public func wait(timeout: Double, until condition: (LPARMachine) -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition(self) { return true }
            try? await Task.sleep(for: .milliseconds(2))
        }
        return condition(self)
    }

    /// The LPAR fails (whichever vCPU found it): every vCPU stops.
    private func fail(_ reason: String) {
        lock.lock()
        if case .failed = _state {} else { _state = .failed(reason) }
        stopRequested = true
        lock.unlock()
        kickAll()
    }

    private func runLoop(_ cpu: KVMLPARCPU) {
        ckvm_unblock_kick()
        _ = ckvm_name_current_thread("vcpu-\(cpu.index)")   // as ps and /proc/PID/task/*/comm show it
        lock.lock()
        threadIDs[cpu.index] = ckvm_current_thread()
        lock.unlock()
        let hostCPUs = Int(ckvm_host_cpus())
        if configuration.share != nil {
            // Shared mode: anywhere on the pool; the service ratio is the supervisor's cgroup.
            poolLock.lock()
            pinToPool(pool, threads: [ckvm_current_thread()])
            poolLock.unlock()
            return runGuest(cpu)
        }
        let wanted = configuration.hostCores[cpu.index]
        let core = hostCPUs > 0 ? wanted % hostCPUs : wanted
        let pinnedOK = ckvm_pin_current_thread(Int32(core)) == 0
        let failure = pinnedOK ? nil : String(cString: strerror(errno))
        lock.lock()
        if pinnedOK {
            pinned[cpu.index] = core
            if core != wanted { pinning = "the host has \(hostCPUs) CPUs: core n runs on host CPU n mod \(hostCPUs)" }
        } else {
            pinning = "pinning vCPU \(cpu.index) to host CPU \(core) failed: \(failure ?? "")"
        }
        lock.unlock()
        runGuest(cpu)
    }

    /// Shared mode: the vCPUs move to another pool of host cores (the blade's shared pool
    /// grew or shrank); a running vCPU moves at once.
    public func setPool(_ cores: [Int]) {
        guard configuration.share != nil, !cores.isEmpty else { return }
        poolLock.lock()
        defer { poolLock.unlock() }
        lock.lock()
        sharedPool = cores
        let running = Array(threadIDs.values)
        lock.unlock()
        pinToPool(cores, threads: running)
    }

    /// The host cores of the shared pool the vCPUs run on now.
    public var pool: [Int] { lock.lock(); defer { lock.unlock() }; return sharedPool }

    private func pinToPool(_ cores: [Int], threads: [UInt]) {
        let hostCPUs = Int(ckvm_host_cpus())
        let set = Array(Set(cores.map { hostCPUs > 0 ? Int32($0 % hostCPUs) : Int32($0) })).sorted()
        var failure: String?
        for thread in threads where ckvm_pin_thread_set(thread, set, Int32(set.count)) != 0 {
            failure = String(cString: strerror(errno))
        }
        lock.lock()
        pinning = failure.map { "pinning to the shared pool failed: \($0)" }
            ?? "shared pool: host CPUs \(set.map(String.init).joined(separator: ","))"
        lock.unlock()
    }

    private func runGuest(_ cpu: KVMLPARCPU) {
        let exitHandler = exitHandlers[cpu.index]
        while true {
            lock.lock()
            let stop = stopRequested
            lock.unlock()
            if stop { return }
            let exit: VCPUExit
            do { exit = try cpu.run() } catch {
                fail("\(error)")
                return
            }
            lock.lock()
            exitCount &+= 1
            lock.unlock()
            // L0's exit handler, shared by every backend, decides; the devices are this LPAR's.
            let response = exitHandler.handle(exit)
            if case .vmxInstruction = exit, let core = exitHandler.core {
                let guests = cpu.l2GuestCount
                lock.lock()
                nestedCounters = core.vmx.counters
                l2Guests = guests
                lock.unlock()
            }
            switch (exit, response) {
            case (.ioOut(let port, let size, let value), .emulateDevice):
                handleOut(port: port, size: size, value: value)
            case (.ioIn(let port, let size), .emulateDevice):
                cpu.completeIn(handleIn(port: port), size: size)
            case (.mmioRead(let address, let size), .emulateDevice):
                fail("wild MMIO read of \(size) bytes at 0x\(String(address, radix: 16)) (outside the LPAR's \(configuration.memoryBytes >> 20) MiB)")
                return
            case (.mmioWrite(let address, let size, _), .emulateDevice):
                fail("wild MMIO write of \(size) bytes at 0x\(String(address, radix: 16)) (outside the LPAR's \(configuration.memoryBytes >> 20) MiB)")
                return
            case (.shutdown, .failLPAR):
                fail("triple fault (KVM shutdown exit)")
                return
            case (_, .failLPAR(let reason)):
                fail(reason)
                return
            default:
                do { try cpu.resume(response) } catch {
                    fail("\(error)")
                    return
                }
            }
        }
    }

    // MARK: Devices

    private func handleOut(port: UInt16, size: Int, value: UInt32) {
        switch port {
        case GuestABI.consolePort:
            lock.lock()
            let byte = UInt8(truncatingIfNeeded: value)
            if byte == 0x0a {
                consoleLines.append(String(decoding: consolePartial, as: UTF8.self))
                if consoleLines.count > 1000 { consoleLines.removeFirst(consoleLines.count - 1000) }
                consolePartial.removeAll()
            } else if consolePartial.count < 4096 {
                consolePartial.append(byte)
            }
            lock.unlock()
        case GuestABI.blockPort:
            blockRequest(at: UInt64(value))
        case GuestABI.idlePort:
            usleep(1_000)   // the guest has nothing to do until the next tick
        default:
            break    // the exit probe and unknown ports: nothing to do
        }
    }

    private func handleIn(port: UInt16) -> UInt32 {
        switch port {
        case GuestABI.timerPort:
            return UInt32(truncatingIfNeeded: timerMillis)
        default:
            return 0xffff_ffff
        }
    }

    /// One block request: the descriptor at `address` in guest memory names the LBA, the
    /// sector count, the operation and the buffer; L0 checks every bound, moves the data
    /// between the LPAR's disk range and the buffer, and writes the status back.
    private func blockRequest(at address: UInt64) {
        let size = configuration.memoryBytes
        let descriptorSize = UInt64(GuestABI.blockRequestSize)
        guard address % 8 == 0, address <= size, size - address >= descriptorSize else { return }
        let descriptor = memory + Int(address)
        let request = descriptor.load(as: block_request.self)
        let sectors = UInt64(request.sectors)
        func finish(_ status: GuestABI.BlockStatus) {
            descriptor.storeBytes(of: status.rawValue, toByteOffset: MemoryLayout<block_request>.offset(of: \.status)!, as: UInt32.self)
        }
        let read = request.op == UInt32(BLOCK_READ), write = request.op == UInt32(BLOCK_WRITE)
        guard diskFD >= 0, read || write, sectors > 0, sectors <= 2048 else { return finish(.badRequest) }
        let bytes = sectors * GuestABI.sector
        let (start, overflow) = request.lba.multipliedReportingOverflow(by: GuestABI.sector)
        guard !overflow, start <= diskLength, diskLength - start >= bytes else { return finish(.outOfRange) }
        guard request.buffer <= size, size - request.buffer >= bytes else { return finish(.badBuffer) }
        let offset = off_t(diskOffset + start)
        let done: Int
        if read {
            done = pread(diskFD, memory + Int(request.buffer), Int(bytes), offset)
        } else {
            guard configuration.disk?.writable == true else { return finish(.badRequest) }
            done = pwrite(diskFD, memory + Int(request.buffer), Int(bytes), offset)
        }
        finish(done == Int(bytes) ? .ok : .ioError)
    }
}
#endif
