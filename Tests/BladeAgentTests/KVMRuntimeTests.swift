import BladeAgentKit
import Foundation
import Partitioner
import Protos
import Testing

/// The agent's runtime on the kvm backend refuses impossible LPARs before starting anything.
@Suite(.enabled(if: FileManager.default.isReadableFile(atPath: "/dev/kvm"), "needs /dev/kvm"))
struct KVMRuntimeTests {
    static var repository: String {
        var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path), directory.path != "/" {
            directory.deleteLastPathComponent()
        }
        return directory.path
    }

    func lparHosts(named name: String) -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).filter { entry in
            guard Int(entry) != nil, let command = try? String(contentsOfFile: "/proc/\(entry)/cmdline", encoding: .utf8) else { return false }
            return command.contains("lpar-host") && command.contains("\"name\":\"\(name)\"")
        }.count
    }

    @Test func moreCoresThanTheBladeOrACoreTakenIsRefusedAndNothingStarts() async throws {
        let data = NSTemporaryDirectory() + "nestor-kvm-runtime-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: data) }
        let settings = KVMRuntimeSettings(image: Self.repository + "/Agents/Guests/images/lpar-os.bin",
                                          executable: AgentProcess.executable.path, dataDirectory: data)
        let runtime = try BladeRuntime(bladeID: "b1", resources: BladeResources(coreCount: 4, memoryBytes: 8 << 30, l0ReservedBytes: 1 << 30,
                                                                                nestedCapable: false),
                                       sliceSeconds: 0, kvm: settings)
        func define(_ name: String, cores: [UInt32], base: UInt64) async -> CommandResultResponse {
            await runtime.execute(AgentCommandRequest(
                commandID: name, kind: .defineLPAR,
                lpar: LPARDefinition(name: name, dedicatedCores: cores, memoryBase: base, memoryBytes: 256 << 20, vmm: false,
                                     vmcsShadowing: false, diskBytes: 1 << 20),
                generation: 1, lparName: name))
        }
        let beyond = await define("wide", cores: [3, 4], base: 0)
        #expect(!beyond.ok)
        #expect(beyond.error?.contains("core 4") == true)
        let first = await define("one", cores: [1], base: 0)
        #expect(first.ok)
        let second = await define("two", cores: [1], base: 256 << 20)
        #expect(!second.ok)
        #expect(second.error?.contains("already dedicated to LPAR one") == true)
        #expect(lparHosts(named: "wide") == 0 && lparHosts(named: "two") == 0)
        // The one that fits boots a real LPAR process; removing it leaves nothing behind.
        let activated = await runtime.execute(AgentCommandRequest(commandID: "a", kind: .activate, generation: 1, lparName: "one"))
        #expect(activated.ok, "\(activated.error ?? "")")
        #expect(activated.status?.state == "running")
        #expect(lparHosts(named: "one") == 1)
        let removed = await runtime.execute(AgentCommandRequest(commandID: "r", kind: .remove, generation: 1, lparName: "one"))
        #expect(removed.ok)
        #expect(lparHosts(named: "one") == 0)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: data)) ?? []).isEmpty)
    }
}
