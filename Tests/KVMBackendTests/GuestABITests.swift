import CGuestABI
import Testing
@testable import KVMBackend

/// The enumerations of `GuestABI` name the same numbers as the headers the guest images are
/// built from (Agents/Guests/abi/include); a value changed on one side fails here.
@Suite struct GuestABITests {
    @Test func mailboxCommandsMatchTheHeader() {
        let header: [GuestABI.Command: Int32] = [
            .none: CMD_NONE, .workload: CMD_WORKLOAD, .crash: CMD_CRASH, .readLBA: CMD_READ_LBA, .peek: CMD_PEEK,
            .exitLoop: CMD_EXIT_LOOP, .vmxChecks: CMD_VMX_CHECKS, .vmreadLoop: CMD_VMREAD_LOOP, .vmwrite: CMD_VMWRITE,
            .l2Test: CMD_L2_TEST, .vmCreate: CMD_VM_CREATE, .vmDelete: CMD_VM_DELETE,
        ]
        for command in GuestABI.Command.allCases {
            #expect(header[command].map(UInt32.init) == command.rawValue, "\(command)")
        }
    }

    @Test func workloadsAndStatesMatchTheHeaders() {
        let workloads: [GuestABI.Workload: Int32] = [
            .idle: WORKLOAD_IDLE, .diskRead: WORKLOAD_DISK_READ, .compute: WORKLOAD_COMPUTE, .sysbenchOLTP: WORKLOAD_SYSBENCH,
        ]
        for workload in GuestABI.Workload.allCases { #expect(workloads[workload].map(UInt64.init) == workload.rawValue) }
        let states: [GuestABI.GuestState: Int32] = [.booting: STATE_BOOTING, .ready: STATE_READY, .running: STATE_RUNNING]
        for state in GuestABI.GuestState.allCases { #expect(states[state].map(UInt32.init) == state.rawValue) }
        let vmStates: [GuestABI.VMTable.State: Int32] = [.free: VM_FREE, .running: VM_RUNNING, .halted: VM_HALTED, .failed: VM_FAILED]
        for state in GuestABI.VMTable.State.allCases { #expect(vmStates[state].map(UInt32.init) == state.rawValue) }
        let l2: [GuestABI.VMTable.Workload: Int32] = [
            .idle: L2_WORKLOAD_IDLE, .iometer: L2_WORKLOAD_IOMETER, .sysbenchOLTP: L2_WORKLOAD_SYSBENCH, .spin: L2_WORKLOAD_SPIN,
        ]
        for workload in GuestABI.VMTable.Workload.allCases { #expect(l2[workload].map(UInt64.init) == workload.rawValue) }
        let block: [GuestABI.BlockStatus: Int32] = [
            .ok: BLOCK_OK, .outOfRange: BLOCK_OUT_OF_RANGE, .badBuffer: BLOCK_BAD_BUFFER, .ioError: BLOCK_IO_ERROR,
            .badRequest: BLOCK_BAD_REQUEST,
        ]
        for status in GuestABI.BlockStatus.allCases { #expect(block[status].map(UInt32.init) == status.rawValue) }
    }

    @Test func vmxGateOperationsMatchTheHeader() {
        let header: [GuestABI.VMX.Operation: Int32] = [
            .vmxon: VMX_OP_VMXON, .vmxoff: VMX_OP_VMXOFF, .vmclear: VMX_OP_VMCLEAR, .vmptrld: VMX_OP_VMPTRLD,
            .vmptrst: VMX_OP_VMPTRST, .vmread: VMX_OP_VMREAD, .vmwrite: VMX_OP_VMWRITE, .vmlaunch: VMX_OP_VMLAUNCH,
            .vmresume: VMX_OP_VMRESUME, .invept: VMX_OP_INVEPT, .invvpid: VMX_OP_INVVPID, .rdmsr: VMX_OP_RDMSR,
        ]
        for operation in GuestABI.VMX.Operation.allCases { #expect(header[operation].map(UInt32.init) == operation.rawValue) }
        #expect(GuestABI.VMX.microcode + GuestABI.VMX.readOnlySize == GuestABI.VMX.shadow)
    }

    /// The mailbox's fields do not overlap and end where the per-vCPU counters begin.
    @Test func mailboxFieldsTileTheStructure() {
        let fields = GuestABI.MailboxField.allCases.filter { $0 != .cpuOperations }.map(\.layout).sorted { $0.offset < $1.offset }
        for (field, next) in zip(fields, fields.dropFirst()) { #expect(field.offset + field.width <= next.offset) }
        #expect(GuestABI.MailboxField.cpuOperations.offset + GuestABI.maxVCPUs * 8 == MemoryLayout<mailbox>.size)
        #expect(GuestABI.VMTable.entrySize == 80 && GuestABI.blockRequestSize == 32)
    }
}
