import Foundation
import Partitioner
import Sizes

/// `blade-agent lpar check --spec FILE`: validates a blade's LPAR layout against the
/// partitioner's isolation rules and prints it.
public enum LPARCheck {
    struct Row: Encodable {
        var name: String
        var cpu: String
        var memoryBase: UInt64
        var memoryBytes: UInt64
        var disks: [String]
        var nics: [String]
        var vmm: Bool
        var vmcsShadowing: Bool
        var shadowFields: String
    }

    struct Output: Encodable {
        var cores: Int
        var memoryBytes: UInt64
        var freeCores: [Int]
        var freeMemoryBytes: UInt64
        var lpars: [Row]
    }

    public static func run(specPath: String, json: Bool) throws(AgentError) -> String {
        let spec = try BladeSpec.load(path: specPath)
        var partitioner: BladePartitioner
        do {
            partitioner = try BladePartitioner(resources: spec.blade)
            for lpar in spec.lpars { try partitioner.define(lpar) }
        } catch {
            throw .badInput("\(specPath): \(error)")
        }
        let rows = spec.lpars.map { lpar -> Row in
            let cpu: String
            switch lpar.cpu {
            case .dedicated(let cores): cpu = "dedicated " + cores.map(String.init).joined(separator: ",")
            case .shared(let count, let ratio, let capped): cpu = "shared \(count) cpus ratio \(ratio)\(capped ? " capped" : "")"
            }
            let disks = lpar.disks.map { use -> String in
                switch use {
                case .dedicated(let id): return id
                case .shared(let id, let luns): return "\(id):\(luns.lowerBound)-\(luns.upperBound)"
                }
            }
            return Row(name: lpar.name, cpu: cpu, memoryBase: lpar.memory.base, memoryBytes: lpar.memory.size,
                       disks: disks, nics: lpar.nics, vmm: lpar.vmm, vmcsShadowing: lpar.vmcsShadowing,
                       shadowFields: lpar.shadowFields.name)
        }
        let output = Output(cores: spec.blade.coreCount, memoryBytes: spec.blade.memoryBytes,
                            freeCores: partitioner.freeCores, freeMemoryBytes: partitioner.freeMemoryBytes, lpars: rows)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            guard let data = try? encoder.encode(output) else { throw .failure("cannot encode the layout") }
            return String(decoding: data, as: UTF8.self) + "\n"
        }
        let table = TextTable(
            header: ["lpar", "cpu", "memory", "disks", "nics", "vmm", "shadowing"],
            rows: rows.map { r in
                [r.name, r.cpu, "\(ByteSize.format(r.memoryBytes)) at \(ByteSize.format(r.memoryBase))",
                 r.disks.joined(separator: " "), r.nics.joined(separator: " "), r.vmm ? "yes" : "no",
                 r.vmm ? (r.vmcsShadowing ? "on (\(r.shadowFields))" : "off") : "-"]
            })
        return "blade: \(spec.blade.coreCount) cores, \(ByteSize.format(spec.blade.memoryBytes)); layout is valid\n"
            + table.render() + "\nfree: cores \(partitioner.freeCores.map(String.init).joined(separator: ",")); memory \(ByteSize.format(partitioner.freeMemoryBytes))\n"
    }
}
