#if os(Linux)
import Foundation
import KVM
import KVMBackend
import Partitioner
import SimBackend
import VMX

/// `blade-agent bench shadow-vmcs --backend kvm`: the whitepaper's figure 10 on real code.
/// The guest hypervisor (l1-vmm) runs one L2 VM with the workload (l2-os) in an LPAR, with
/// L0's VMCS shadowing off and then on; the same workload also runs directly in a plain LPAR
/// (lpar-os), so that the cost of nesting is visible.
enum ShadowBenchKVM {
    struct Sample {
        var operations: UInt64
        var counters: NestedCounters
        var time: (l1: UInt64, l2: UInt64, total: UInt64)
    }

    /// The disk every run reads: 64 MiB of known bytes, in the page cache; an L2 VM sees a
    /// quarter of it (its guest hypervisor's slice), the plain LPAR the same 16 MiB.
    static func makeDisks(directory: String) throws -> (whole: String, slice: String) {
        let whole = directory + "/nestor-shadow-bench-\(getpid()).img"
        let slice = directory + "/nestor-shadow-bench-\(getpid())-slice.img"
        let data = LPARBenchmark.knownContent(bytes: 64 << 20)
        try data.write(to: URL(fileURLWithPath: whole))
        try data.prefix(16 << 20).write(to: URL(fileURLWithPath: slice))
        return (whole, slice)
    }

    static func measure(workload: GuestABI.VMTable.Workload, shadowing: Bool, disk: String, images: String,
                        warmup: Double, seconds: Double) async throws -> ShadowRun {
        let vmx = LPARConfiguration.VMX(microcode: images + "/vmx-microcode.bin", shadowing: shadowing)
        let machine = try LPARMachine(LPARConfiguration(name: "bench-vmm", memoryBytes: 64 << 20, hostCores: [0],
                                                        image: images + "/l1-vmm.bin", disk: .init(path: disk, writable: true), vmx: vmx),
                                      kvm: try KVM())
        machine.start()
        defer { machine.stop() }
        guard await machine.wait(timeout: 30, until: { $0.guestState == .ready }) else {
            throw LPARError(lpar: "bench-vmm", "the guest hypervisor did not boot: \(machine.state)")
        }
        machine.post(.vmCreate, argument: workload.rawValue << 8)
        guard await machine.wait(timeout: 30, until: { $0.commandTaken && $0.guestState == .ready }), machine.load(.probeStatus) == 0 else {
            throw LPARError(lpar: "bench-vmm", "the guest hypervisor did not create the L2 VM (status \(machine.load(.probeStatus)))")
        }
        try await Task.sleep(for: .seconds(warmup))
        func sample() throws -> Sample {
            guard let report = machine.vmReport(slot: 0), report.state != .failed, report.errors == 0 else {
                throw LPARError(lpar: "bench-vmm", "the L2 VM failed: \(String(describing: machine.vmReport(slot: 0))) \(machine.console.suffix(3))")
            }
            return Sample(operations: report.operations, counters: machine.vmxCounters ?? NestedCounters(), time: machine.vcpuTime)
        }
        let before = try sample()
        try await Task.sleep(for: .seconds(seconds))
        let after = try sample()
        let operations = after.operations - before.operations
        let elapsed = Double(after.time.total - before.time.total) / 1e9
        let l1 = Double(after.time.l1 - before.time.l1), l2 = Double(after.time.l2 - before.time.l2)
        let l0 = max(0, Double(after.time.total - before.time.total) - l1 - l2)
        func micros(_ nanos: Double) -> Double { operations == 0 ? 0 : nanos / 1e3 / Double(operations) }
        var exits: [String: UInt64] = [:]
        for (reason, count) in after.counters.l2ExitsByReason {
            let delta = count - (before.counters.l2ExitsByReason[reason] ?? 0)
            if delta > 0 { exits[ExitReason(rawValue: reason).name] = delta }
        }
        var trapped: [String: UInt64] = [:]
        for (instruction, count) in after.counters.vmxTrapped {
            let delta = count - (before.counters.vmxTrapped[instruction] ?? 0)
            if delta > 0 { trapped[instruction] = delta }
        }
        return ShadowRun(
            shadowing: shadowing, operations: operations, seconds: elapsed,
            opsPerSecond: Double(operations) / elapsed,
            l2Exits: after.counters.totalL2Exits - before.counters.totalL2Exits,
            trappedVMX: after.counters.totalTrapped - before.counters.totalTrapped,
            servedByShadow: after.counters.totalServedByShadow - before.counters.totalServedByShadow,
            l0Seconds: l0 / 1e9, exitsByReason: exits, trappedByInstruction: trapped,
            l0MicrosPerOp: micros(l0), l1MicrosPerOp: micros(l1), l2MicrosPerOp: micros(l2))
    }

    /// The workload directly in a plain LPAR: operations per second.
    static func measureL1Only(workload: GuestABI.VMTable.Workload, disk: String, images: String,
                              warmup: Double, seconds: Double) async throws -> Double {
        let machine = try LPARMachine(LPARConfiguration(name: "bench-plain", memoryBytes: 64 << 20, hostCores: [0],
                                                        image: images + "/lpar-os.bin", disk: .init(path: disk, writable: true)),
                                      kvm: try KVM())
        machine.start()
        defer { machine.stop() }
        guard await machine.wait(timeout: 30, until: { $0.guestState == .ready }) else {
            throw LPARError(lpar: "bench-plain", "the guest did not boot: \(machine.state)")
        }
        machine.post(.workload, argument: workload == .iometer ? GuestABI.Workload.diskRead.rawValue : GuestABI.Workload.sysbenchOLTP.rawValue)
        try await Task.sleep(for: .seconds(warmup))
        let start = (machine.load(.operations), DispatchTime.now().uptimeNanoseconds)
        try await Task.sleep(for: .seconds(seconds))
        guard machine.load(.errors) == 0, machine.state == .running else {
            throw LPARError(lpar: "bench-plain", "the workload failed: \(machine.state), \(machine.load(.errors)) errors")
        }
        let operations = machine.load(.operations) - start.0
        return Double(operations) / (Double(DispatchTime.now().uptimeNanoseconds - start.1) / 1e9)
    }

    static func run(_ options: ShadowBenchOptions, images: String) async throws(AgentError) -> ShadowBenchmarkReport {
        let workloads: [GuestABI.VMTable.Workload]
        switch options.workload {
        case .all: workloads = [.iometer, .sysbenchOLTP]
        case .iometer: workloads = [.iometer]
        case .sysbenchOLTP: workloads = [.sysbenchOLTP]
        case .pioLoop, .idle:
            throw .badInput("workload \(options.workload.rawValue) is for the sim backend; the kvm backend runs iometer, sysbench-oltp or all")
        }
        if options.sweep || options.specPath != nil || !options.scale.isEmpty || options.shadowFields != nil {
            throw .badInput("--sweep, --spec, --scale and --shadow-fields are for the sim backend")
        }
        if !(options.seconds > 0) || !options.seconds.isFinite || options.seconds > 600 {
            throw .badInput("--seconds \(options.seconds) must be between 0 and 600 seconds of wall-clock time")
        }
        let probe = KVMProbe.run()
        guard probe.usable else { throw .badInput("backend kvm is not usable here: \(probe.reason)") }
        for image in ["l1-vmm.bin", "vmx-microcode.bin", "lpar-os.bin"] where !FileManager.default.isReadableFile(atPath: images + "/" + image) {
            throw .badInput("the guest image \(images)/\(image) cannot be read")
        }
        let warmup = max(0.2, options.warmup)
        do {
            let disks = try makeDisks(directory: NSTemporaryDirectory())
            defer {
                try? FileManager.default.removeItem(atPath: disks.whole)
                try? FileManager.default.removeItem(atPath: disks.slice)
            }
            var results: [ShadowWorkloadResult] = []
            for workload in workloads {
                let off = try await measure(workload: workload, shadowing: false, disk: disks.whole, images: images,
                                            warmup: warmup, seconds: options.seconds)
                let on = try await measure(workload: workload, shadowing: true, disk: disks.whole, images: images,
                                           warmup: warmup, seconds: options.seconds)
                let plain = try await measureL1Only(workload: workload, disk: disks.slice, images: images,
                                                    warmup: warmup, seconds: options.seconds)
                results.append(ShadowBenchmark.result(name: workload.name, operation: workload == .iometer ? "4 KiB read" : "transaction",
                                                      off: off, on: on, l1OnlyOpsPerSecond: plain))
            }
            let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
                .split(separator: "\n").first { $0.hasPrefix("model name") }?
                .split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
            return ShadowBenchmarkReport(
                backend: "kvm", platform: "\(cpu), \(probe.module ?? "kvm")",
                platformSummary: "real KVM (\(probe.module ?? "kvm"), API \(probe.apiVersion ?? 0)); L0 emulates VMX through the VMX gate and microcode page; guest code at CPL 3",
                shadowFields: ShadowFieldSet.linuxKVM.name, seed: 0, virtualSeconds: options.seconds, workloads: results)
        } catch let error as AgentError {
            throw error
        } catch {
            throw .failure("the kvm benchmark failed: \(error)")
        }
    }
}
#endif
