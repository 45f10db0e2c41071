import Foundation
#if os(Linux)
import KVM
import KVMBackend
#endif
public import Partitioner
public import SimBackend

/// Picks the blade's backend at start-up.
public enum BackendFactory {
    /// Makes the backend `kind`, or says in one line why it cannot. The kvm backend's guest
    /// hypervisors need the VMX microcode page (`microcode`, a file); without it the backend
    /// runs plain LPARs only.
    public static func make(_ kind: BackendKind, platform: PlatformCostModel = .xeonE52667v3,
                            workload: any WorkloadModel = IdleWorkload(), seed: UInt64 = 1,
                            microcode: String? = nil) throws(AgentError) -> any Hypervisor {
        switch kind {
        case .sim:
            return SimHypervisor(costs: platform, workload: workload, seed: seed)
        case .kvm:
            #if os(Linux)
            let probe = KVMProbe.run()
            guard probe.usable else { throw .badInput("backend kvm is not usable here: \(probe.reason) (blade-agent probe)") }
            let kvm: KVM
            do { kvm = try KVM() } catch { throw .badInput("backend kvm: \(error)") }
            guard let microcode else { return KVMHypervisor(kvm: kvm) }
            guard let bytes = FileManager.default.contents(atPath: microcode) else {
                throw .badInput("backend kvm: the VMX microcode page \(microcode) cannot be read")
            }
            return KVMHypervisor(kvm: kvm, vmx: KVMVMXSupport(microcode: Array(bytes)))
            #else
            throw .badInput("backend kvm runs on Linux only")
            #endif
        }
    }
}
