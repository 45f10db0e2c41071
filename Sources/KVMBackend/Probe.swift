import Foundation
#if os(Linux)
import CKVM
import KVM
#endif

/// What `blade-agent probe` reports: whether KVM is there, its API version, the capabilities
/// Nestor uses, the KVM module, and the host's cores and memory.
public struct KVMProbeReport: Codable, Sendable, Equatable {
    public struct Capability: Codable, Sendable, Equatable {
        public var name: String
        public var value: Int32
        public var needed: Bool
    }
    public var kvm: Bool
    public var reason: String
    public var apiVersion: Int32?
    public var module: String?
    public var capabilities: [Capability]
    public var hostCores: Int
    public var hostMemoryBytes: UInt64
    /// Whether everything the KVM backend needs is there.
    public var usable: Bool
}

public enum KVMProbe {
    /// The kernel module behind /dev/kvm: kvm_intel, kvm_amd or kvm_pvm; nil when none is loaded.
    public static func module() -> String? {
        ["kvm_intel", "kvm_amd", "kvm_pvm"].first { FileManager.default.fileExists(atPath: "/sys/module/\($0)") }
    }

    public static func run() -> KVMProbeReport {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let memory = ProcessInfo.processInfo.physicalMemory
        #if os(Linux)
        let module = module()
        do {
            let kvm = try KVM()
            let wanted: [(String, Int32, Bool)] = [
                ("KVM_CAP_USER_MEMORY", KVM_CAP_USER_MEMORY, true),
                ("KVM_CAP_SET_TSS_ADDR", KVM_CAP_SET_TSS_ADDR, false),
                ("KVM_CAP_EXT_CPUID", KVM_CAP_EXT_CPUID, true),
                ("KVM_CAP_IMMEDIATE_EXIT", KVM_CAP_IMMEDIATE_EXIT, false),
                ("KVM_CAP_NR_VCPUS", KVM_CAP_NR_VCPUS, true),
                ("KVM_CAP_MAX_VCPUS", KVM_CAP_MAX_VCPUS, false),
                ("KVM_CAP_NR_MEMSLOTS", KVM_CAP_NR_MEMSLOTS, true),
                ("KVM_CAP_SYNC_MMU", KVM_CAP_SYNC_MMU, false),
                ("KVM_CAP_VCPU_EVENTS", KVM_CAP_VCPU_EVENTS, false),
                ("KVM_CAP_NESTED_STATE", KVM_CAP_NESTED_STATE, false),
            ]
            let capabilities = wanted.map { KVMProbeReport.Capability(name: $0.0, value: kvm.checkExtension($0.1), needed: $0.2) }
            return KVMProbeReport(kvm: true, reason: "/dev/kvm opened", apiVersion: kvm.apiVersion, module: module,
                                  capabilities: capabilities, hostCores: cores, hostMemoryBytes: memory,
                                  usable: capabilities.allSatisfy { !$0.needed || $0.value > 0 })
        } catch {
            return KVMProbeReport(kvm: false, reason: error.description, apiVersion: nil, module: module, capabilities: [],
                                  hostCores: cores, hostMemoryBytes: memory, usable: false)
        }
        #else
        return KVMProbeReport(kvm: false, reason: "KVM is Linux only", apiVersion: nil, module: nil, capabilities: [],
                              hostCores: cores, hostMemoryBytes: memory, usable: false)
        #endif
    }

    public static func table(_ report: KVMProbeReport) -> String {
        var lines = [
            "kvm           \(report.kvm ? "yes" : "no") (\(report.reason))",
            "usable        \(report.usable ? "yes" : "no")",
        ]
        if let version = report.apiVersion { lines.append("api version   \(version)") }
        if let module = report.module { lines.append("module        \(module)") }
        lines.append("host cores    \(report.hostCores)")
        lines.append("host memory   \(report.hostMemoryBytes >> 20) MiB")
        for capability in report.capabilities {
            lines.append("\(capability.name.padding(toLength: 24, withPad: " ", startingAt: 0)) \(capability.value)\(capability.needed ? " (needed)" : "")")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
