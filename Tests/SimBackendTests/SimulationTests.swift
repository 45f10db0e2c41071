import Testing
import VMX
import Partitioner
@testable import SimBackend
import Sizes

func quick(_ seconds: Double = 0.05, seed: UInt64 = 1, fields: ShadowFieldSet = .linuxKVM) -> ShadowBenchmarkConfiguration {
    var config = ShadowBenchmarkConfiguration()
    config.measureSeconds = seconds
    config.seed = seed
    config.shadowFields = fields
    return config
}

@Suite struct DeterminismTests {
    @Test(arguments: ["iometer", "sysbench-oltp"])
    func theSameSeedGivesTheSameFiguresBitForBit(_ name: String) throws {
        let workload = try #require(Workloads.named(name))
        let first = try ShadowBenchmark.measure(workload, shadowing: true, configuration: quick())
        let second = try ShadowBenchmark.measure(workload, shadowing: true, configuration: quick())
        #expect(first == second)
        #expect(first.operations > 0)
    }

    @Test func anotherSeedGivesAnotherRun() throws {
        let workload = SysbenchOLTPWorkload()
        let a = try ShadowBenchmark.measure(workload, shadowing: false, configuration: quick(seed: 1))
        let b = try ShadowBenchmark.measure(workload, shadowing: false, configuration: quick(seed: 2))
        #expect(a != b)
    }
}

@Suite struct L1SequenceTests {
    /// IOmeter with shadowing off: per 4 KiB read the guest makes a kick (OUT) and an APIC
    /// timer write for NO_HZ idle entry; the completion arrives while L1 handles that write,
    /// so L1 injects it on the same entry; the guest then writes EOI and the timer again
    /// (idle exit). RHEL 6.4 KVM's handlers make, per I/O, 56 VMREADs, 23 VMWRITEs and 4
    /// VMRESUMEs (see RHEL6KVMModel): kick 9+4, APIC write 15+6 three times, and the
    /// injection on one of them 2+1.
    @Test func withoutShadowingEveryAccessOfTheDerivedSequenceTraps() throws {
        let run = try ShadowBenchmark.measure(IOmeterWorkload(), shadowing: false, configuration: quick())
        let ops = Double(run.operations)
        #expect(abs(Double(run.trappedByInstruction["VMREAD"] ?? 0) / ops - 56) < 0.5)
        #expect(abs(Double(run.trappedByInstruction["VMWRITE"] ?? 0) / ops - 23) < 0.5)
        #expect(abs(Double(run.trappedByInstruction["VMRESUME"] ?? 0) / ops - 4) < 0.1)
        #expect(abs(Double(run.exitsByReason["APIC_ACCESS"] ?? 0) / ops - 3) < 0.1)
        #expect(abs(Double(run.exitsByReason["IO_INSTRUCTION"] ?? 0) / ops - 1) < 0.05)
        #expect(run.exitsByReason["EXTERNAL_INTERRUPT"] == nil)
        #expect(run.servedByShadow == 0)
    }

    /// With Linux's default set, what still traps is TSC_OFFSET (read on every exit),
    /// GUEST_CS_SELECTOR (read twice by each APIC emulation), HOST_CR0 (written on every
    /// entry) and VMRESUME itself.
    @Test func withShadowingOnlyUnshadowedFieldsTrap() throws {
        let run = try ShadowBenchmark.measure(IOmeterWorkload(), shadowing: true, configuration: quick())
        let ops = Double(run.operations)
        let exits = Double(run.l2Exits)
        #expect(abs(Double(run.trappedByInstruction["VMRESUME"] ?? 0) - exits) < 2)
        #expect(abs(Double(run.trappedByInstruction["VMWRITE"] ?? 0) - exits) < 2)      // HOST_CR0
        let apic = Double(run.exitsByReason["APIC_ACCESS"] ?? 0)
        #expect(abs(Double(run.trappedByInstruction["VMREAD"] ?? 0) - (exits + 2 * apic)) < 4)
        #expect(Double(run.servedByShadow) / ops > 60)
    }

    @Test func kvm310SetAlsoShadowsTSCOffsetAndTheCSSelector() throws {
        let run = try ShadowBenchmark.measure(IOmeterWorkload(), shadowing: true, configuration: quick(fields: .linuxKVM310))
        #expect(run.trappedByInstruction["VMREAD"] == nil)
        let exits = Double(run.l2Exits)
        // HOST_CR0 and TPR_THRESHOLD are not in the 3.10 set.
        #expect(abs(Double(run.trappedByInstruction["VMWRITE"] ?? 0) - 2 * exits) < 4)
    }

    @Test func l2sRIPAdvancesByWhatL1SkipsThroughTheShadow() throws {
        var spec = ShadowBenchmarkConfiguration.whitepaperLPAR
        spec.vmcsShadowing = true
        let lpar = try SimLPAR(spec: spec, costs: .xeonE52667v3, workload: IOmeterWorkload(), seed: 3)
        var end: Cycles = 3_200_000
        try lpar.run(until: end)
        while !lpar.isRunningL2(0) {
            end += 1
            try lpar.run(until: end)
        }
        let counters = lpar.nestedCore(0).vmx.counters
        let io = counters.l2ExitsByReason[ExitReason.ioInstruction.rawValue] ?? 0
        let apic = counters.l2ExitsByReason[ExitReason.apicAccess.rawValue] ?? 0
        let hlt = counters.l2ExitsByReason[ExitReason.hlt.rawValue] ?? 0
        #expect(io > 10)
        // OUT DX,AX is 2 bytes, HLT 1, the emulated MOV to the APIC 6; interrupts skip nothing.
        let expected = 0xFFFF_FFFF_8100_0000 &+ 2 * io &+ 6 * apic &+ hlt
        #expect(lpar.nestedCore(0).vmx.peek(.guestRIP) == expected)
    }
}

@Suite struct WhitepaperShapeTests {
    @Test func shadowingHelpsAndHelpsIOmeterMost() throws {
        let config = quick(0.1)
        let iometer = try ShadowBenchmark.compare(IOmeterWorkload(), configuration: config)
        let sysbench = try ShadowBenchmark.compare(SysbenchOLTPWorkload(), configuration: config)
        #expect(iometer.relative > 1.3)
        #expect(sysbench.relative > 1.0)
        #expect(iometer.relative > sysbench.relative)
        #expect(iometer.trappedVMXPerOpOn * 3 < iometer.trappedVMXPerOpOff)
        #expect(sysbench.trappedVMXPerOpOn * 3 < sysbench.trappedVMXPerOpOff)
    }

    @Test func theGainGrowsWithVMCSAccessesPerExit() throws {
        let points = try ShadowBenchmark.sweep(configuration: quick(0.03), extras: [0, 16, 64])
        #expect(points.count == 3)
        for (a, b) in zip(points, points.dropFirst()) {
            #expect(b.vmxAccessesPerExit > a.vmxAccessesPerExit)
            #expect(b.relative > a.relative)
        }
    }
}

@Suite struct SimLPARTests {
    @Test func anIdleL2HaltsAndDoesNothing() throws {
        var spec = ShadowBenchmarkConfiguration.whitepaperLPAR
        spec.vmcsShadowing = true
        let lpar = try SimLPAR(spec: spec, costs: .xeonE52667v3, workload: IdleWorkload(vcpus: 2), seed: 1)
        try lpar.run(until: 32_000_000)
        #expect(lpar.operations == 0)
        #expect(lpar.counters.l2Entries >= 2)
        #expect(lpar.counters.l2ExitsByReason[ExitReason.hlt.rawValue] == 2)
        #expect(lpar.vcpuCount == 2)
    }

    @Test func configurationsThatCannotRunAreRefused() {
        var plain = ShadowBenchmarkConfiguration.whitepaperLPAR
        plain.vmm = false
        #expect(throws: BackendError.self) {
            _ = try SimLPAR(spec: plain, costs: .xeonE52667v3, workload: IOmeterWorkload(), seed: 1)
        }
        #expect(throws: BackendError.self) {
            _ = try SimLPAR(spec: ShadowBenchmarkConfiguration.whitepaperLPAR, costs: .xeonE52667v3,
                            workload: IOmeterWorkload(vcpus: 6), seed: 1)
        }
        var config = quick()
        config.measureSeconds = -1
        #expect(config.problem() != nil)
        config = quick()
        config.l2MemoryBytes = 11 * ByteSize.gib
        #expect(config.problem() != nil)
    }

    @Test func vcpusAreReachedThroughTheBackendProtocol() throws {
        let lpar = try SimLPAR(spec: ShadowBenchmarkConfiguration.whitepaperLPAR, costs: .xeonE52667v3,
                               workload: IOmeterWorkload(), seed: 1)
        let vm: any VirtualMachine = lpar
        #expect(try vm.vcpu(3).index == 3)
        #expect(throws: BackendError.vcpuIndexOutOfRange(index: 4, count: 4)) { _ = try vm.vcpu(4) }
    }

    @Test func theHypervisorCreatesLPARs() throws {
        let hypervisor = SimHypervisor(costs: .xeonE52667v3, workload: IOmeterWorkload(), seed: 1)
        #expect(hypervisor.capabilities.nestedVMX && hypervisor.capabilities.vmcsShadowing)
        let vm = try hypervisor.createVM(ShadowBenchmarkConfiguration.whitepaperLPAR)
        #expect(vm.vcpuCount == 4)
    }
}

@Suite struct CostModelTests {
    @Test func everyConstantNamesItsSource() {
        let model = PlatformCostModel.xeonE52667v3
        let names = model.constants.map(\.name)
        #expect(Set(names).count == names.count)
        for constant in model.constants {
            #expect(constant.source.count > 40, "\(constant.name)")
            #expect(constant.cycles > 0, "\(constant.name)")
        }
    }

    @Test func aConstantCanBeScaledByName() throws {
        let scaled = try #require(PlatformCostModel.xeonE52667v3.scaling("vm-transition", by: 2))
        #expect(scaled.vmTransition.cycles == 1000)
        #expect(PlatformCostModel.xeonE52667v3.scaling("no-such-constant", by: 2) == nil)
    }

    @Test func moreExpensiveTrapsWidenTheGain() throws {
        var config = quick(0.03)
        let base = try ShadowBenchmark.compare(IOmeterWorkload(), configuration: config)
        config.platform = try #require(PlatformCostModel.xeonE52667v3.scaling("exit-dispatch", by: 3))
        let costly = try ShadowBenchmark.compare(IOmeterWorkload(), configuration: config)
        #expect(costly.relative > base.relative)
    }
}
