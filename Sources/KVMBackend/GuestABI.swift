/// The LPAR guest ABI (Agents/Guests/lpar-os/abi.h, docs/kvm-backend.md), as L0 sees it.
public enum GuestABI {
    public static let gdt: UInt64 = 0x0500
    public static let pml4: UInt64 = 0x1000
    public static let pdpt: UInt64 = 0x2000
    public static let pageDirectories: UInt64 = 0x2_0000
    public static let mappedDirectories = 64
    public static let mailbox: UInt64 = 0x8000
    public static let image: UInt64 = 0x10_0000
    public static let imageMax: UInt64 = 0x10_0000
    public static let apEntry: UInt64 = image + 8
    public static let maxVCPUs = 16
    public static let stackTop: UInt64 = 0x30_0000
    public static let stackPerVCPU: UInt64 = 0x1_0000
    public static let minimumMemory: UInt64 = 0x80_0000
    /// The most memory the identity map covers (64 page directories of 1 GiB).
    public static let maximumMemory: UInt64 = UInt64(mappedDirectories) << 30

    public static let consolePort: UInt16 = 0x3f8
    public static let blockPort: UInt16 = 0x500
    public static let timerPort: UInt16 = 0x510
    public static let exitProbePort: UInt16 = 0x520
    public static let idlePort: UInt16 = 0x530
    public static let sector: UInt64 = 512

    public enum BlockStatus: UInt32, Sendable {
        case ok = 0, outOfRange = 1, badBuffer = 2, ioError = 3, badRequest = 4
    }

    /// Commands of the management mailbox.
    public enum Command: UInt32, Sendable, Codable {
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

    public static let mailboxMagic: UInt32 = 0x4d54_534e

    /// The guest hypervisor's report of its L2 VMs (struct vm_report in abi.h), one per slot.
    public enum VMTable {
        public static let address: UInt64 = GuestABI.mailbox + 0x400
        public static let slots = 4
        public static let entrySize = 80

        public enum State: UInt32, Sendable, Codable { case free = 0, running = 1, halted = 2, failed = 3 }

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

    /// The VMX gate and the VMX microcode page (Agents/Guests/l1-vmm/vmx-abi.h, docs/vmx-gate.md).
    public enum VMX {
        public static let gatePort: UInt16 = 0x540
        /// Read-only to the guest: the microcode, the control page and the two bitmaps.
        public static let microcode: UInt64 = 0x7_0000
        public static let control: UInt64 = 0x7_1000
        public static let vmreadBitmap: UInt64 = 0x7_2000
        public static let vmwriteBitmap: UInt64 = 0x7_3000
        public static let readOnlySize: UInt64 = 0x4000
        /// The shadow VMCS page, in the LPAR's memory.
        public static let shadow: UInt64 = 0x7_4000
        public static let controlActive = 0
        public static let controlFieldCount = 4
        public static let controlFields = 8
        public static let maxFields = 512
        public static let readsServed = 0xF00
        public static let writesServed = 0xF08
        public static let spillRAX = 0xF10
        public static let spillRDX = 0xF18

        /// The operations of the gate (EAX at the out32).
        public enum Operation: UInt32, Sendable {
            case vmxon = 1, vmxoff, vmclear, vmptrld, vmptrst, vmread, vmwrite, vmlaunch, vmresume, invept, invvpid, rdmsr
        }
    }

    /// Byte offsets of the mailbox's fields (struct mailbox in abi.h).
    public enum MailboxField: Int, Sendable {
        case magic = 0, commandSeq = 4, command = 8, argument = 16, diskSectors = 24, memoryBytes = 32
        case ackSeq = 40, state = 44, workload = 48, probeStatus = 52
        case operations = 56, bytes = 64, passes = 72, checksum = 80, errors = 88, probeValue = 96, computeState = 104
        case vcpus = 112, cpuOperations = 120
    }
}
