#if os(Linux)
import CKVM
public import Foundation
import Glibc
import KVM
public import Partitioner
import VMX

/// A paused LPAR, whole: its memory, every vCPU's registers, and the nested state of a
/// guest hypervisor (L0's nested-VMX state, as Linux's `kvm_nested_state` carries it, and
/// every L2 vCPU). Restored into a fresh process on the same kind of host, the LPAR goes on
/// as if nothing had happened. Migration sends the same parts.
public struct LPARSnapshot: Codable, Sendable, Equatable {
    /// One 4 KiB page of the LPAR's memory that is not all zeros.
    public struct Page: Codable, Sendable, Equatable {
        public var index: UInt64
        public var bytes: Data
    }

    /// A vCPU's registers as KVM holds them (kvm_regs, kvm_sregs, kvm_fpu).
    public struct VCPU: Codable, Sendable, Equatable {
        public var regs: Data
        public var sregs: Data
        public var fpu: Data
    }

    /// An L2 guest: its VMCS region in L1's memory, its vCPU, the state vmcs12 gave it and
    /// the EPT pointer its memory was built from.
    public struct L2: Codable, Sendable, Equatable {
        public var region: UInt64
        public var vcpu: VCPU
        public var entryState: [UInt32: UInt64]
        public var eptPointer: UInt64?
    }

    /// vCPU 0's nested state.
    public struct Nested: Codable, Sendable, Equatable {
        public var vmx: NestedVMXSnapshot
        public var guests: [L2]
        /// The VMCS region of the L2 guest running at the pause, if one was.
        public var activeRegion: UInt64?
        public var l2Registers: Data
        public var eptGeneration: UInt64
        /// What was left of the running L2's VMX-preemption timer, in nanoseconds.
        public var preemptionRemainingNanos: UInt64?
    }

    public var name: String
    public var memoryBytes: UInt64
    public var pages: [Page]
    public var vcpus: [VCPU]
    public var nested: Nested?
    /// The LPAR's timer (milliseconds since it started) at the pause.
    public var timerMillis: UInt64
    public var console: [String]

    public func write(to path: String) throws {
        let encoder = PropertyListEncoder()
        encoder.outputFormat = .binary
        try encoder.encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    public static func read(from path: String) throws -> LPARSnapshot {
        try PropertyListDecoder().decode(LPARSnapshot.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }
}

func rawBytes<T>(_ value: T) -> Data { withUnsafeBytes(of: value) { Data($0) } }

func rawValue<T>(_ data: Data, as type: T.Type) throws(LPARError) -> T {
    guard data.count == MemoryLayout<T>.size else { throw LPARError(lpar: "snapshot", "a saved \(T.self) has \(data.count) bytes, not \(MemoryLayout<T>.size)") }
    return data.withUnsafeBytes { $0.loadUnaligned(as: T.self) }
}

extension KVMVCPU {
    func save() throws(KVMError) -> LPARSnapshot.VCPU {
        LPARSnapshot.VCPU(regs: rawBytes(try registers()), sregs: rawBytes(try specialRegisters()), fpu: rawBytes(try fpu()))
    }

    func load(_ saved: LPARSnapshot.VCPU) throws {
        try setSpecialRegisters(try rawValue(saved.sregs, as: kvm_sregs.self))
        try setFPU(try rawValue(saved.fpu, as: kvm_fpu.self))
        try setRegisters(try rawValue(saved.regs, as: kvm_regs.self))
    }
}

extension KVMLPARCPU {
    /// vCPU 0's nested state (paused: its thread is parked).
    func saveNested() throws -> LPARSnapshot.Nested? {
        guard let gate else { return nil }
        var guests: [LPARSnapshot.L2] = []
        for (region, guest) in gate.guests.sorted(by: { $0.key < $1.key }) {
            var state: [UInt32: UInt64] = [:]
            for (field, value) in guest.entryState.values { state[field.rawValue] = value }
            guests.append(LPARSnapshot.L2(region: region, vcpu: try guest.vcpu.save(), entryState: state,
                                          eptPointer: guest.builtFor.map(\.eptp)))
        }
        let active = activeL2.flatMap { active in gate.guests.first { $0.value === active }?.key }
        let now = DispatchTime.now().uptimeNanoseconds
        return LPARSnapshot.Nested(vmx: gate.core.vmx.snapshot, guests: guests, activeRegion: active,
                                   l2Registers: rawBytes(l2Registers), eptGeneration: gate.eptGeneration,
                                   preemptionRemainingNanos: preemptionDeadline.map { $0 > now ? $0 - now : 0 })
    }

    func restoreNested(_ saved: LPARSnapshot.Nested) throws {
        guard let gate else { throw LPARError(lpar: "snapshot", "the snapshot has nested state, but the LPAR has no vmm") }
        let vmx = gate.core.vmx
        gate.core.vmx = NestedVMX(capabilities: vmx.capabilities, shadowFields: vmx.shadowFields, restoring: saved.vmx)
        gate.eptGeneration = saved.eptGeneration
        for l2 in saved.guests {
            let guest = try gate.guest(for: l2.region)
            var state = VMCSState()
            for (field, value) in l2.entryState { state[VMCSField(field)] = value }
            guest.entryState = state
            if let eptp = l2.eptPointer {
                if eptp == ~0 { try guest.prepareIdentity() } else {
                    try guest.prepareMemory(eptp: eptp, generation: gate.eptGeneration, l1: gate.core.memory)
                }
            }
            try guest.vcpu.load(l2.vcpu)
        }
        activeL2 = saved.activeRegion.flatMap { gate.guests[$0] }
        if activeL2 != nil, let remaining = saved.preemptionRemainingNanos {
            preemptionDeadline = DispatchTime.now().uptimeNanoseconds + remaining
        }
        l2Registers = try rawValue(saved.l2Registers, as: kvm_regs.self)
        gate.publish()
    }
}
#endif
