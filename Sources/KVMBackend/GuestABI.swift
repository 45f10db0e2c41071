import CGuestABI

/// The LPAR guest ABI as L0 sees it (docs/kvm-backend.md). The addresses, ports and layouts
/// come from the headers the guest images are built from (Agents/Guests/abi/include), through
/// the `CGuestABI` target; the enumerations below are checked against the same headers by
/// GuestABITests.
public enum GuestABI {
    public static let gdt = UInt64(ABI_GDT)
    public static let pml4 = UInt64(ABI_PML4)
    public static let pdpt = UInt64(ABI_PDPT)
    public static let pageDirectories = UInt64(ABI_PD)
    /// One page directory per GiB of the identity map.
    public static let mappedDirectories = 64
    public static let mailbox = UInt64(ABI_MAILBOX)
    public static let image = UInt64(ABI_IMAGE)
    public static let imageMax = UInt64(ABI_IMAGE_MAX)
    public static let apEntry = UInt64(ABI_AP_ENTRY)
    public static let maxVCPUs = Int(ABI_MAX_VCPUS)
    public static let stackTop = UInt64(ABI_STACK_TOP)
    public static let stackPerVCPU: UInt64 = 0x1_0000
    public static let minimumMemory = UInt64(ABI_MIN_MEMORY)
    /// The most memory the identity map covers (64 page directories of 1 GiB).
    public static let maximumMemory: UInt64 = UInt64(mappedDirectories) << 30

    public static let consolePort = UInt16(PORT_CONSOLE)
    public static let blockPort = UInt16(PORT_BLOCK)
    public static let timerPort = UInt16(PORT_TIMER)
    public static let exitProbePort = UInt16(PORT_EXIT_PROBE)
    public static let idlePort = UInt16(PORT_IDLE)
    public static let sector = UInt64(BLOCK_SECTOR)
    /// The size of `struct block_request`.
    public static let blockRequestSize = MemoryLayout<block_request>.size

    public enum BlockStatus: UInt32, Sendable, CaseIterable {
        case ok = 0, outOfRange = 1, badBuffer = 2, ioError = 3, badRequest = 4
    }

    /// Commands of the management mailbox.
    public enum Command: UInt32, Sendable, Codable, CaseIterable {
        case none = 0, workload = 1, crash = 2, readLBA = 3, peek = 4, exitLoop = 5
        /// The guest hypervisor image (l1-vmm): VMX checks, a VMREAD loop, one VMWRITE.
        case vmxChecks = 6, vmreadLoop = 7, vmwrite = 8, l2Test = 9
        /// The guest hypervisor's L2 VMs: argument slot | workload << 8; slot.
        case vmCreate = 10, vmDelete = 11
    }

    public enum Workload: UInt64, Sendable, CaseIterable, Codable {
        case idle = 0, diskRead = 1, compute = 2, sysbenchOLTP = 3

        public var name: String {
            switch self {
            case .idle: return "idle"
            case .diskRead: return "disk-read"
            case .compute: return "compute"
            case .sysbenchOLTP: return "sysbench-oltp"
            }
        }

        public init?(name: String) {
            guard let match = Self.allCases.first(where: { $0.name == name }) else { return nil }
            self = match
        }
    }

    public static let mailboxMagic = UInt32(MAILBOX_MAGIC)

    /// What the guest says it is doing (the mailbox's `state`).
    public enum GuestState: UInt32, Sendable, CaseIterable {
        case booting = 0, ready = 1, running = 2
    }

    /// The guest hypervisor's report of its L2 VMs (struct vm_report in abi.h), one per slot.
    public enum VMTable {
        public static let address = UInt64(VM_TABLE)
        public static let slots = Int(VM_SLOTS)
        public static let entrySize = MemoryLayout<vm_report>.size

        public enum State: UInt32, Sendable, Codable, CaseIterable { case free = 0, running = 1, halted = 2, failed = 3 }

        /// The workloads of l2-os (l2-abi.h).
        public enum Workload: UInt64, Sendable, CaseIterable, Codable {
            case idle = 0, iometer = 1, sysbenchOLTP = 2
            /// Compute that never exits (the preemption timer's test).
            case spin = 3

            public var name: String {
                switch self {
                case .idle: return "idle"
                case .iometer: return "iometer"
                case .sysbenchOLTP: return "sysbench-oltp"
                case .spin: return "spin"
                }
            }
        }
    }

    /// The VMX gate and the VMX microcode page (vmx-abi.h, docs/vmx-gate.md).
    public enum VMX {
        public static let gatePort = UInt16(VMX_GATE_PORT)
        /// Read-only to the guest: the microcode, the control page and the two bitmaps.
        public static let microcode = UInt64(VMX_MICROCODE)
        public static let control = UInt64(VMX_CONTROL)
        public static let vmreadBitmap = UInt64(VMX_VMREAD_BITMAP)
        public static let vmwriteBitmap = UInt64(VMX_VMWRITE_BITMAP)
        public static let readOnlySize = UInt64(VMX_SHADOW) - UInt64(VMX_MICROCODE)
        /// The shadow VMCS page, in the LPAR's memory.
        public static let shadow = UInt64(VMX_SHADOW)
        public static let controlActive = Int(CONTROL_ACTIVE)
        public static let controlFieldCount = Int(CONTROL_FIELD_COUNT)
        public static let controlFields = Int(CONTROL_FIELDS)
        public static let maxFields = Int(CONTROL_MAX_FIELDS)
        public static let readsServed = Int(SHADOW_READS_SERVED)
        public static let writesServed = Int(SHADOW_WRITES_SERVED)
        public static let spillRAX = Int(SHADOW_SPILL_RAX)
        public static let spillRDX = Int(SHADOW_SPILL_RDX)

        /// The operations of the gate (EAX at the out32).
        public enum Operation: UInt32, Sendable, CaseIterable {
            case vmxon = 1, vmxoff, vmclear, vmptrld, vmptrst, vmread, vmwrite, vmlaunch, vmresume, invept, invvpid, rdmsr
        }
    }

    /// The mailbox's fields (struct mailbox in abi.h).
    public enum MailboxField: Sendable, CaseIterable {
        case magic, commandSeq, command, argument, diskSectors, memoryBytes
        case ackSeq, state, workload, probeStatus
        case operations, bytes, passes, checksum, errors, probeValue, computeState
        case vcpus, cpuOperations

        /// The field's byte offset in the mailbox and its width in bytes (of one element, for
        /// the per-vCPU array), from the C layout.
        public var layout: (offset: Int, width: Int) {
            switch self {
            case .magic: return Self.at(\.magic)
            case .commandSeq: return Self.at(\.command_seq)
            case .command: return Self.at(\.command)
            case .argument: return Self.at(\.argument)
            case .diskSectors: return Self.at(\.disk_sectors)
            case .memoryBytes: return Self.at(\.memory_bytes)
            case .ackSeq: return Self.at(\.ack_seq)
            case .state: return Self.at(\.state)
            case .workload: return Self.at(\.workload)
            case .probeStatus: return Self.at(\.probe_status)
            case .operations: return Self.at(\.operations)
            case .bytes: return Self.at(\.bytes)
            case .passes: return Self.at(\.passes)
            case .checksum: return Self.at(\.checksum)
            case .errors: return Self.at(\.errors)
            case .probeValue: return Self.at(\.probe_value)
            case .computeState: return Self.at(\.compute_state)
            case .vcpus: return Self.at(\.vcpus)
            case .cpuOperations: return (MemoryLayout<mailbox>.offset(of: \.cpu_operations)!, MemoryLayout<UInt64>.size)
            }
        }

        public var offset: Int { layout.offset }

        private static func at<Value>(_ field: KeyPath<mailbox, Value>) -> (offset: Int, width: Int) {
            (MemoryLayout<mailbox>.offset(of: field)!, MemoryLayout<Value>.size)
        }
    }
}
