import Foundation
import Testing
import BladeAgentKit

let validSpec = """
    blade:
      cores: 16
      memory: 64G
      l0Reserved: 1G
      sharedPool: [15]
      disks: [{id: fc0, luns: 64, shared: true}]
      nics: [{id: eth0, shared: true}]
    lpars:
      - name: vmm-lpar
        cpu: {mode: dedicated, cores: [2, 3, 4, 5, 6, 7]}
        memory: {base: 2G, size: 10G}
        disks: [{id: fc0, luns: 0-8}]
        nics: [eth0]
        vmm: true
        shadowFields: linux-kvm
      - name: core-db
        cpu: {mode: dedicated, cores: [8, 9]}
        memory: {size: 16G}
        disks: [{id: fc0, luns: 8-16}]
      - name: small
        cpu: {mode: shared, cpus: 1, serviceRatio: 20, capped: true}
        memory: {size: 2G}
    l2: {vcpus: 4, memory: 8G}
    """

@Suite(.serialized) struct CommandLineTests {
    static let badInputs: [[String]] = [
        ["bench", "shadow-vmcs", "--workload", "tpcc"],
        ["bench", "shadow-vmcs", "--seconds=-1"],
        ["bench", "shadow-vmcs", "--seconds", "soon"],
        ["bench", "shadow-vmcs", "--backend", "xen"],
        ["bench", "shadow-vmcs", "--backend", "kvm", "--sweep"],
        ["bench", "shadow-vmcs", "--backend", "kvm", "--workload", "pio-loop"],
        ["bench", "shadow-vmcs", "--backend", "kvm", "--seconds", "0"],
        ["bench", "shadow-vmcs", "--shadow-fields", "GUEST_RIP,NOT_A_FIELD"],
        ["bench", "shadow-vmcs", "--shadow-fields", "VM_INSTRUCTION_ERROR"],
        ["bench", "shadow-vmcs", "--scale", "vm-transition"],
        ["bench", "shadow-vmcs", "--scale", "no-such=2"],
        ["bench", "shadow-vmcs", "--platform", "pentium4"],
        ["bench", "shadow-vmcs", "--spec", "/nonexistent/spec.yaml"],
        ["bench", "shadow-vmcs", "--frobnicate"],
        ["bench", "shadow-vmcs", "--log-level", "loud"],
        ["bench", "shadow-vmcs", "--cross-vcpu-share", "2"],
        ["lpar", "check"],
        ["bench", "lpar", "--backend", "sim"],
        ["bench", "lpar", "--seconds=-1"],
        ["bench", "lpar", "--disk-mib", "0"],
        ["cost-model", "--platform", "z80"],
        ["run", "--controller", "127.0.0.1:1", "--blade-id", "b", "--memory", "10GB"],
        ["run", "--controller", "127.0.0.1:1", "--blade-id", "b", "--backend", "xen"],
        ["run", "--controller", "127.0.0.1:1", "--blade-id", "b", "--cores", "many"],
        ["run", "--controller", "127.0.0.1:1", "--blade-id", "b", "--nested", "maybe"],
        ["no-such-command"],
    ]

    static let badConfigValues: [(String, String)] = [
        ("memory: 10GB", "memory '10GB' is ambiguous: write 10GiB"),
        ("backend: xen", "backend 'xen' is not sim or kvm"),
        ("log-level: loud", "log-level 'loud' is not trace, debug, info, notice, warning, error or critical"),
        ("nested: maybe", "nested 'maybe' is not true or false"),
        ("cores: many", "cores 'many' is not a whole number"),
    ]

    /// A config file's value is read with its flag's grammar and refused in the same terms.
    @Test(arguments: badConfigValues)
    func badConfigValueIsRefusedByItsFlagsGrammar(_ line: String, _ message: String) async throws {
        let path = NSTemporaryDirectory() + "agent-config-\(UUID().uuidString).yaml"
        try "controller: 127.0.0.1:1\nblade-id: b\n\(line)\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let result = try await AgentProcess.run(["run", "--config", path])
        #expect(result.status == 2, "\(line): \(result.stderr)")
        #expect(result.stderr.hasPrefix("blade-agent: config file \(path): \(message)"), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1)
    }

    @Test(arguments: badInputs)
    func badInputIsOneLineWithExitCode2(_ arguments: [String]) async throws {
        let result = try await AgentProcess.run(arguments)
        #expect(result.status == 2, "\(arguments): \(result.stderr)")
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(arguments): \(result.stderr)")
        #expect(result.stderr.hasPrefix("blade-agent: "))
        #expect(!result.stderr.contains("Fatal error"))
        #expect(result.stdout.isEmpty)
    }

    static let badSpecs: [(String, String)] = [
        ("blade: [unclosed", "does not parse"),
        ("{\"blade\": {\"cores\": 4, \"memory\": \"8G\"", "does not parse"),
        ("blade: {cores: 4, memory: -5G}", "blade.memory"),
        ("blade: {cores: four, memory: 8G}", "blade.cores"),
        ("blade: {cores: 4}", "blade.memory: missing"),
        ("blade: {cores: 4, memory: 8GB}", "'8GB' is ambiguous: write 8GiB"),
        ("lpars: []", "blade: missing"),
        ("blade: {cores: 4, memory: 8G}\nlpars: [{name: a, cpu: {cores: [0]}, memory: {size: 10X}}]", "lpars[0].memory.size"),
        ("blade: {cores: 4, memory: 8G}\nlpars: [{name: a, cpu: {mode: turbo}, memory: {size: 1G}}]", "lpars[0].cpu.mode"),
        ("blade: {cores: 4, memory: 8G}\nlpars:\n  - {name: a, cpu: {cores: [0, 1]}, memory: {base: 0, size: 4G}}\n  - {name: b, cpu: {cores: [1]}, memory: {base: 4G, size: 2G}}", "core 1 is already dedicated to LPAR a"),
        ("blade: {cores: 4, memory: 8G}\nlpars:\n  - {name: a, cpu: {cores: [0]}, memory: {base: 0, size: 4G}}\n  - {name: b, cpu: {cores: [1]}, memory: {base: 2G, size: 4G}}", "overlaps LPAR a"),
        ("blade: {cores: 4, memory: 8G}\nlpars: [{name: a, cpu: {cores: [0]}, memory: {size: 16G}}]", "no free range"),
        ("blade: {cores: 4, memory: 8G, disks: [{id: d, luns: 4, shared: true}]}\nlpars: [{name: a, cpu: {cores: [0]}, memory: {size: 1G}, disks: [{id: d, luns: 3-9}]}]", "LUNs 3..<9"),
        ("blade: {cores: 4, memory: 8G}\nlpars: [{name: a, cpu: {cores: [0]}, memory: {size: 1G}, shadowFields: fastest}]", "shadowFields"),
    ]

    @Test(arguments: badSpecs)
    func aBadSpecIsRefusedInOneLineNamingTheProblem(_ spec: (String, String)) async throws {
        let path = try AgentProcess.temporaryFile(spec.0)
        for arguments in [["lpar", "check", "--spec", path], ["bench", "shadow-vmcs", "--spec", path, "--seconds", "0.01"]] {
            let result = try await AgentProcess.run(arguments)
            #expect(result.status == 2, "\(spec.0): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1)
            #expect(result.stderr.contains(spec.1), "\(result.stderr) lacks \(spec.1)")
        }
    }

    @Test func aValidLayoutIsPrinted() async throws {
        let path = try AgentProcess.temporaryFile(validSpec)
        let table = try await AgentProcess.run(["lpar", "check", "--spec", path])
        #expect(table.status == 0, "\(table.stderr)")
        #expect(table.stdout.contains("layout is valid"))
        #expect(table.stdout.contains("vmm-lpar"))
        let json = try await AgentProcess.run(["lpar", "check", "--spec", path, "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let lpars = try #require(object["lpars"] as? [[String: Any]])
        #expect(lpars.count == 3)
        #expect(object["freeCores"] as? [Int] == [0, 1, 10, 11, 12, 13, 14])
    }

    @Test func theBenchmarkPrintsTheFigureAsJSONTheSameWayTwice() async throws {
        let arguments = ["bench", "shadow-vmcs", "--backend", "sim", "--json", "--seconds", "0.05"]
        let first = try await AgentProcess.run(arguments)
        #expect(first.status == 0, "\(first.stderr)")
        let second = try await AgentProcess.run(arguments)
        #expect(first.stdout == second.stdout)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(first.stdout.utf8)) as? [String: Any])
        #expect(object["backend"] as? String == "sim")
        #expect(object["platform"] as? String == "xeon-e5-2667v3")
        let workloads = try #require(object["workloads"] as? [[String: Any]])
        #expect(workloads.map { $0["name"] as? String } == ["iometer", "sysbench-oltp"])
        for workload in workloads {
            for key in ["opsPerSecondOff", "opsPerSecondOn", "relative", "l2ExitsPerOp", "trappedVMXPerOpOff", "trappedVMXPerOpOn"] {
                #expect(workload[key] is Double || workload[key] is Int, "\(key)")
            }
            let relative = try #require(workload["relative"] as? Double)
            #expect(relative > 1)
        }
    }

    @Test func theBenchmarkUsesASpecAndPrintsATable() async throws {
        let path = try AgentProcess.temporaryFile(validSpec)
        let result = try await AgentProcess.run(["bench", "shadow-vmcs", "--spec", path, "--workload", "iometer", "--seconds", "0.02"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("iometer"))
        #expect(result.stdout.contains("relative"))
        #expect(!result.stdout.contains("sysbench-oltp  "))
    }

    @Test func theCostModelListsEverySource() async throws {
        let text = try await AgentProcess.run(["cost-model"])
        #expect(text.status == 0)
        #expect(text.stdout.contains("vm-transition = 500 cycles"))
        let json = try await AgentProcess.run(["cost-model", "--json"])
        #expect(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) is [String: Any])
    }

    @Test func helpExitsZero() async throws {
        let result = try await AgentProcess.run(["bench", "shadow-vmcs", "--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("--sweep"))
    }
}

@Suite struct BackendFactoryTests {
    @Test func theFactoryMakesEitherBackendOrSaysWhyNot() async throws {
        let sim = try BackendFactory.make(.sim)
        #expect(sim.capabilities.kind == .sim)
        if FileManager.default.isReadableFile(atPath: "/dev/kvm") {
            let kvm = try BackendFactory.make(.kvm)
            #expect(kvm.capabilities.kind == .kvm && !kvm.capabilities.nestedVMX)
            #expect(throws: AgentError.badInput("backend kvm: the VMX microcode page /nonexistent cannot be read")) {
                _ = try BackendFactory.make(.kvm, microcode: "/nonexistent")
            }
        } else {
            #expect(throws: AgentError.self) { _ = try BackendFactory.make(.kvm) }
        }
    }
}

/// `blade-agent probe` and `bench lpar` on this host's KVM.
@Suite(.serialized) struct KVMCommandTests {
    static let kvm = FileManager.default.isReadableFile(atPath: "/dev/kvm")

    @Test func probeReportsKVM() async throws {
        let result = try await AgentProcess.run(["probe", "--json"])
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(report["kvm"] as? Bool == Self.kvm)
        #expect(result.status == ((report["usable"] as? Bool) == true ? 0 : 1))
        if Self.kvm { #expect(report["apiVersion"] as? Int == 12) }
    }

    @Test(.enabled(if: FileManager.default.isReadableFile(atPath: "/dev/kvm"), "needs /dev/kvm"))
    func benchLPARPrintsItsFigures() async throws {
        let result = try await AgentProcess.run(["bench", "lpar", "--backend", "kvm", "--json", "--seconds", "0.5", "--disk-mib", "2"])
        #expect(result.status == 0, "\(result.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        for key in ["exitRoundTripNanos", "lparReadIOPS", "hostReadIOPS", "overheadRatio", "processOverheadMiB"] {
            #expect((report[key] as? Double ?? 0) > 0, "\(key)")
        }
    }

    @Test(.enabled(if: FileManager.default.isReadableFile(atPath: "/dev/kvm"), "needs /dev/kvm"))
    func benchShadowVMCSOnKVMPrintsTheFigureWithTheSimulatorsSchema() async throws {
        let result = try await AgentProcess.run(["bench", "shadow-vmcs", "--backend", "kvm", "--json", "--seconds", "0.5"])
        #expect(result.status == 0, "\(result.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(report["backend"] as? String == "kvm")
        let workloads = try #require(report["workloads"] as? [[String: Any]])
        #expect(workloads.map { $0["name"] as? String } == ["iometer", "sysbench-oltp"])
        for workload in workloads {
            for key in ["opsPerSecondOff", "opsPerSecondOn", "relative", "l2ExitsPerOp", "trappedVMXPerOpOff", "l1OnlyOpsPerSecond"] {
                #expect((workload[key] as? Double ?? 0) > 0, "\(key)")
            }
            // Shadowing takes VMREADs and VMWRITEs off the trapped path: fewer traps per op.
            #expect((workload["trappedVMXPerOpOn"] as? Double ?? 0) < (workload["trappedVMXPerOpOff"] as? Double ?? 0))
            #expect((workload["shadowServedPerOpOn"] as? Double ?? 0) > 0)
        }
        // The simulator's schema: the same keys for every row.
        let sim = try await AgentProcess.run(["bench", "shadow-vmcs", "--json", "--seconds", "0.05"])
        let simReport = try #require(try JSONSerialization.jsonObject(with: Data(sim.stdout.utf8)) as? [String: Any])
        let simKeys = Set(((simReport["workloads"] as? [[String: Any]])?.first ?? [:]).keys)
        #expect(simKeys.isSubset(of: Set(workloads[0].keys)))
        #expect(Set(workloads[0].keys).subtracting(simKeys) == ["l1OnlyOpsPerSecond"])
    }
}
