import Foundation
import Yams
public import Partitioner
public import VMX
import Sizes

/// A blade and the LPARs to cut from it, as a spec file (YAML, or JSON, which YAML reads)
/// describes them, plus the L2 VM the benchmark runs.
///
/// ```yaml
/// blade:
///   cores: 16
///   memory: 64G
///   l0Reserved: 1G
///   sharedPool: [14, 15]
///   disks: [{id: fc0, luns: 64, shared: true}]
///   nics: [{id: eth0, shared: true}]
///   nested: true
/// lpars:
///   - name: vmm-lpar
///     cpu: {mode: dedicated, cores: [2, 3, 4, 5, 6, 7]}
///     memory: {base: 2G, size: 10G}
///     disks: [{id: fc0, luns: 0-8}]
///     nics: [eth0]
///     vmm: true
///     vmcsShadowing: true
///     shadowFields: linux-kvm
/// l2: {vcpus: 4, memory: 8G}
/// ```
public struct BladeSpec: Equatable, Sendable {
    public var blade: BladeResources
    public var lpars: [LPARSpec]
    public var l2VCPUs: Int?
    public var l2MemoryBytes: UInt64?
}

struct RawSpec: Decodable {
    struct Blade: Decodable {
        var cores: Int?
        var memory: String?
        var l0Reserved: String?
        var sharedPool: [Int]?
        var disks: [Disk]?
        var nics: [NIC]?
        var nested: Bool?
    }
    struct Disk: Decodable { var id: String?; var luns: Int?; var shared: Bool? }
    struct NIC: Decodable { var id: String?; var shared: Bool? }
    struct CPU: Decodable {
        var mode: String?
        var cores: [Int]?
        var cpus: Int?
        var serviceRatio: Int?
        var capped: Bool?
    }
    struct Memory: Decodable { var base: String?; var size: String? }
    struct DiskUse: Decodable { var id: String?; var luns: String? }
    struct LPAR: Decodable {
        var name: String?
        var cpu: CPU?
        var memory: Memory?
        var disks: [DiskUse]?
        var nics: [String]?
        var vmm: Bool?
        var vmcsShadowing: Bool?
        var shadowFields: ShadowFieldsValue?
    }
    enum ShadowFieldsValue: Decodable {
        case named(String)
        case list([String])
        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let name = try? container.decode(String.self) { self = .named(name); return }
            self = .list(try container.decode([String].self))
        }
    }
    struct L2: Decodable { var vcpus: Int?; var memory: String? }

    var blade: Blade?
    var lpars: [LPAR]?
    var l2: L2?
}

extension BladeSpec {
    /// Reads and validates a spec file; every problem is one line naming the file and field.
    public static func load(path: String) throws(AgentError) -> BladeSpec {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .badInput("\(path): cannot read the spec file (\((error as NSError).localizedDescription))")
        }
        return try parse(text, name: path)
    }

    /// Parses spec text; `name` prefixes every error.
    public static func parse(_ text: String, name: String) throws(AgentError) -> BladeSpec {
        let raw: RawSpec
        do {
            raw = try YAMLDecoder().decode(RawSpec.self, from: text)
        } catch let error as DecodingError {
            throw .badInput("\(name): \(describe(error))")
        } catch {
            let line = String(describing: error).split(separator: "\n").first.map(String.init) ?? "unreadable"
            throw .badInput("\(name): does not parse as YAML or JSON: \(line)")
        }
        return try build(raw, name: name)
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { key in key.intValue.map { "[\($0)]" } ?? ".\(key.stringValue)" }.joined()
                .trimmingCharacters(in: CharacterSet(charactersIn: "."))
        }
        switch error {
        case .typeMismatch(let type, let context):
            return "\(path(context.codingPath)): expected \(typeName(type))"
        case .valueNotFound(let type, let context):
            return "\(path(context.codingPath)): missing \(typeName(type))"
        case .keyNotFound(let key, let context):
            return "\(path(context.codingPath + [key])): missing"
        case .dataCorrupted(let context):
            let where_ = path(context.codingPath)
            let detail = context.debugDescription.split(separator: "\n").first.map(String.init) ?? "malformed"
            return where_.isEmpty ? "does not parse: \(detail)" : "\(where_): \(detail)"
        @unknown default:
            return "does not parse"
        }
    }

    static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type: return "an integer"
        case is Bool.Type: return "true or false"
        case is String.Type: return "a string"
        case is [Int].Type: return "a list of integers"
        case is [String].Type: return "a list of strings"
        default: return "a \(type)"
        }
    }

    static func size(_ text: String?, _ field: String, _ name: String) throws(AgentError) -> UInt64? {
        guard let text else { return nil }
        switch ByteSize.parse(text) {
        case .success(let bytes): return bytes
        case .failure(let error): throw .badInput("\(name): \(field): \(error)")
        }
    }

    static func build(_ raw: RawSpec, name: String) throws(AgentError) -> BladeSpec {
        guard let rawBlade = raw.blade else { throw .badInput("\(name): blade: missing (the blade's cores and memory)") }
        guard let cores = rawBlade.cores else { throw .badInput("\(name): blade.cores: missing") }
        if cores <= 0 { throw .badInput("\(name): blade.cores: \(cores) must be positive") }
        guard let memory = try size(rawBlade.memory, "blade.memory", name) else {
            throw .badInput("\(name): blade.memory: missing")
        }
        let reserved = try size(rawBlade.l0Reserved, "blade.l0Reserved", name) ?? 0
        var disks: [BladeDisk] = []
        for (i, disk) in (rawBlade.disks ?? []).enumerated() {
            guard let id = disk.id, !id.isEmpty else { throw .badInput("\(name): blade.disks[\(i)].id: missing") }
            guard let luns = disk.luns else { throw .badInput("\(name): blade.disks[\(i)].luns: missing") }
            disks.append(BladeDisk(id: id, lunCount: luns, shared: disk.shared ?? false))
        }
        var nics: [BladeNIC] = []
        for (i, nic) in (rawBlade.nics ?? []).enumerated() {
            guard let id = nic.id, !id.isEmpty else { throw .badInput("\(name): blade.nics[\(i)].id: missing") }
            nics.append(BladeNIC(id: id, shared: nic.shared ?? false))
        }
        let blade = BladeResources(coreCount: cores, sharedPool: rawBlade.sharedPool ?? [], memoryBytes: memory,
                                   l0ReservedBytes: reserved, disks: disks, nics: nics,
                                   nestedCapable: rawBlade.nested ?? true)
        if let problem = blade.problem() { throw .badInput("\(name): blade: \(problem)") }

        var lpars: [LPARSpec] = []
        var layout: BladePartitioner
        do { layout = try BladePartitioner(resources: blade) } catch { throw .badInput("\(name): \(error)") }
        for (i, rawLPAR) in (raw.lpars ?? []).enumerated() {
            let at = "lpars[\(i)]"
            guard let lparName = rawLPAR.name else { throw .badInput("\(name): \(at).name: missing") }
            guard let rawCPU = rawLPAR.cpu else { throw .badInput("\(name): \(at).cpu: missing") }
            let cpu: CPUAssignment
            switch rawCPU.mode ?? "dedicated" {
            case "dedicated":
                guard let list = rawCPU.cores else { throw .badInput("\(name): \(at).cpu.cores: missing for a dedicated LPAR") }
                cpu = .dedicated(cores: list)
            case "shared":
                guard let count = rawCPU.cpus else { throw .badInput("\(name): \(at).cpu.cpus: missing for a shared LPAR") }
                cpu = .shared(logicalCPUs: count, serviceRatio: rawCPU.serviceRatio ?? 100, capped: rawCPU.capped ?? false)
            case let other:
                throw .badInput("\(name): \(at).cpu.mode: '\(other)' is neither dedicated nor shared")
            }
            guard let rawMemory = rawLPAR.memory, let memorySize = try size(rawMemory.size, "\(at).memory.size", name) else {
                throw .badInput("\(name): \(at).memory.size: missing")
            }
            let base: UInt64
            if let given = try size(rawMemory.base, "\(at).memory.base", name) {
                base = given
            } else if let fit = layout.firstFit(memory: memorySize) {
                base = fit
            } else {
                throw .badInput("\(name): \(at).memory: no free range of \(ByteSize.format(memorySize)) is left on the blade")
            }
            var diskUses: [DiskAssignment] = []
            for (j, use) in (rawLPAR.disks ?? []).enumerated() {
                guard let id = use.id else { throw .badInput("\(name): \(at).disks[\(j)].id: missing") }
                if let text = use.luns {
                    guard let range = lunRange(text) else {
                        throw .badInput("\(name): \(at).disks[\(j)].luns: '\(text)' is not a LUN range like 0-8 (first, end exclusive)")
                    }
                    diskUses.append(.shared(diskID: id, luns: range))
                } else {
                    diskUses.append(.dedicated(diskID: id))
                }
            }
            var fields = ShadowFieldSet.linuxKVM
            switch rawLPAR.shadowFields {
            case .none: break
            case .named(let setName):
                guard let set = ShadowFieldSet.named(setName) else {
                    throw .badInput("\(name): \(at).shadowFields: '\(setName)' is not a known set (\(ShadowFieldSet.named.map(\.name).joined(separator: ", "))) or a list of fields")
                }
                fields = set
            case .list(let names):
                fields = try customFieldSet(names, where: "\(name): \(at).shadowFields")
            }
            let spec = LPARSpec(name: lparName, cpu: cpu, memory: MemoryRange(base: base, size: memorySize),
                                disks: diskUses, nics: rawLPAR.nics ?? [], vmm: rawLPAR.vmm ?? false,
                                vmcsShadowing: rawLPAR.vmcsShadowing ?? true, shadowFields: fields)
            do { try layout.define(spec) } catch { throw .badInput("\(name): \(error)") }
            lpars.append(spec)
        }
        var l2VCPUs: Int?
        var l2Memory: UInt64?
        if let l2 = raw.l2 {
            if let vcpus = l2.vcpus {
                if vcpus <= 0 { throw .badInput("\(name): l2.vcpus: \(vcpus) must be positive") }
                l2VCPUs = vcpus
            }
            l2Memory = try size(l2.memory, "l2.memory", name)
            if l2Memory == 0 { throw .badInput("\(name): l2.memory: must not be 0") }
        }
        return BladeSpec(blade: blade, lpars: lpars, l2VCPUs: l2VCPUs, l2MemoryBytes: l2Memory)
    }

    /// `0-8` (LUNs 0 to 7) or `5` (LUN 5 alone).
    static func lunRange(_ text: String) -> Range<Int>? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        if parts.count == 1, let single = Int(parts[0]), single >= 0 { return single..<(single + 1) }
        guard parts.count == 2, let low = Int(parts[0]), let high = Int(parts[1]), low >= 0, high > low else { return nil }
        return low..<high
    }

    /// A custom shadow set from field names; read-only (VM-exit information) fields are
    /// shadowed read-only, the others read-write.
    public static func customFieldSet(_ names: [String], where place: String) throws(AgentError) -> ShadowFieldSet {
        var readOnly: [VMCSField] = []
        var readWrite: [VMCSField] = []
        for text in names {
            guard let field = VMCSField.named(text.trimmingCharacters(in: .whitespaces)), field.isKnown else {
                throw .badInput("\(place): '\(text)' is not a VMCS field name (like GUEST_RIP) or encoding")
            }
            if field.isReadOnly { readOnly.append(field) } else { readWrite.append(field) }
        }
        let set = ShadowFieldSet(name: "custom", readOnly: readOnly, readWrite: readWrite)
        if let problem = set.problem() { throw .badInput("\(place): \(problem)") }
        return set
    }
}
