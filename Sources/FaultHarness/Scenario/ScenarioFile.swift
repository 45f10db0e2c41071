import FaultHarness
import CommandLineSupport
import Sizes
import Yams

/// A scenario file that cannot be run, in one line: the file, where in it, and why.
public struct ScenarioError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Reads scenario files (YAML). Unknown keys are errors naming the nearest known one, every
/// value is range-checked, and the cluster is checked against what the scenario asks of it.
public enum ScenarioFile {
    public static func parse(_ text: String, file: String) throws(ScenarioError) -> Scenario {
        let loaded: Any?
        do {
            loaded = try Yams.load(yaml: text)
        } catch {
            let detail = "\(error)".split(separator: "\n").first.map(String.init) ?? "not YAML"
            throw ScenarioError("\(file): not valid YAML: \(detail)")
        }
        let root = try Node.mapping(loaded, at: "", file: file)
        let scenario = try read(root)
        if let problem = problem(with: scenario) { throw ScenarioError("\(file): \(problem)") }
        return scenario
    }

    // MARK: - Sections

    static func read(_ root: Node) throws(ScenarioError) -> Scenario {
        try root.only(["name", "description", "duration", "cluster", "tenants", "workload", "faults", "expect", "test-switches", "settle-timeout"])
        let name = try root.string("name")
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
            throw root.error("name", "must be letters, digits, '-' or '_'")
        }
        let cluster = try readCluster(root.mapping("cluster"))
        let tenants = try root.list("tenants").map { (node) throws(ScenarioError) in try readTenant(node) }
        var scenario = Scenario(
            name: name,
            summary: try root.optionalString("description") ?? "",
            durationMillis: try root.duration("duration", in: 1_000...3_600_000),
            cluster: cluster,
            tenants: tenants,
            workload: try readWorkload(root.mapping("workload")),
            faults: try (root.optionalList("faults") ?? []).map { (node) throws(ScenarioError) in try readFault(node) },
            expectations: try (root.optionalList("expect") ?? []).map { (node) throws(ScenarioError) in try readExpectation(node) },
            testSwitches: try root.switches("test-switches")
        )
        if let settle = try root.optionalDuration("settle-timeout", in: 1_000...600_000) { scenario.settleMillis = settle }
        return scenario
    }

    static func readCluster(_ node: Node) throws(ScenarioError) -> ClusterShape {
        try node.only(["blades", "cores", "memory", "chassis", "racks", "power-domains", "admission"])
        let blades = try node.int("blades", in: 1...64)
        var admission: DomainLevel? = .chassis
        if let text = try node.optionalString("admission") {
            if text == "none" { admission = nil } else {
                guard let level = DomainLevel(rawValue: text) else {
                    throw node.error("admission", "must be one of \(DomainLevel.allCases.map(\.rawValue).joined(separator: ", ")), none, not '\(text)'")
                }
                admission = level
            }
        }
        return ClusterShape(
            blades: blades,
            coresPerBlade: try node.int("cores", in: 2...256),
            memoryPerBlade: try node.size("memory", in: 256 * ByteSize.mib...ByteSize.tib),
            chassis: try node.optionalInt("chassis", in: 1...64) ?? blades,
            racks: try node.optionalInt("racks", in: 1...64) ?? 1,
            powerDomains: try node.optionalInt("power-domains", in: 1...64) ?? 1,
            admission: admission
        )
    }

    static func readTenant(_ node: Node) throws(ScenarioError) -> TenantSpec {
        try node.only(["name", "cores", "memory", "partitions"])
        return TenantSpec(
            name: try node.string("name"),
            quotaCores: try node.int("cores", in: 1...100_000),
            quotaMemory: try node.size("memory", in: ByteSize.mib...ByteSize.maximum),
            quotaPartitions: try node.int("partitions", in: 1...100_000)
        )
    }

    static func readWorkload(_ node: Node) throws(ScenarioError) -> Workload {
        try node.only(["clients", "rate", "max-operations", "mix", "partition", "groups"])
        let mixNode = try node.mapping("mix")
        try mixNode.only(Workload.Operation.allCases.map(\.rawValue))
        var mix: [Workload.Operation: Double] = [:]
        for operation in Workload.Operation.allCases where mixNode.has(operation.rawValue) {
            mix[operation] = try mixNode.number(operation.rawValue, in: 0...1_000)
        }
        guard mix.values.contains(where: { $0 > 0 }) else { throw node.error("mix", "gives every operation weight 0") }
        let partition = try node.mapping("partition")
        try partition.only(["cores", "memory", "vmm"])
        return Workload(
            clients: try node.int("clients", in: 1...256),
            ratePerSecond: try node.number("rate", in: 0.1...10_000),
            maxOperations: try node.optionalInt("max-operations", in: 1...1_000_000) ?? 10_000,
            mix: mix,
            partitionCores: try partition.int("cores", in: 1...256),
            partitionMemory: try partition.size("memory", in: ByteSize.mib...ByteSize.tib),
            partitionVMM: try partition.optionalBool("vmm") ?? false,
            groups: try (node.optionalList("groups") ?? []).map { (group) throws(ScenarioError) in
                try group.only(["name", "tenant", "level", "mode", "replicas", "share"])
                let mode = try group.string("mode")
                guard mode == "hard" || mode == "soft" else { throw group.error("mode", "must be hard or soft, not '\(mode)'") }
                return GroupSpec(
                    name: try group.string("name"),
                    tenant: try group.string("tenant"),
                    level: try group.enumValue("level", DomainLevel.self),
                    hard: mode == "hard",
                    replicas: try group.int("replicas", in: 1...10_000),
                    share: group.has("share") ? try group.number("share", in: 0.01...1) : 0.5
                )
            }
        )
    }

    static let faultKinds = ["kill", "pause", "link", "disk", "crash-loop", "second-controller"]

    static func readFault(_ node: Node) throws(ScenarioError) -> FaultEvent {
        let present = faultKinds.filter { node.has($0) }
        guard present.count == 1 else {
            throw node.error(nil, present.isEmpty ? "names no fault (one of \(faultKinds.joined(separator: ", ")))"
                                                  : "names \(present.count) faults (\(present.joined(separator: ", "))); give each its own entry")
        }
        let at = try node.duration("at", in: 0...3_600_000)
        switch present[0] {
        case "kill", "pause":
            try node.only(["at", present[0], present[0] == "kill" ? "restart-after" : "for"])
            let target = try processTarget(node, present[0])
            let duration = try node.duration(present[0] == "kill" ? "restart-after" : "for", in: 0...3_600_000)
            return FaultEvent(atMillis: at, durationMillis: duration, kind: present[0] == "kill" ? .kill(target) : .pause(target))
        case "link":
            try node.only(["at", "link", "for", "blackhole", "latency", "jitter", "bandwidth", "slice", "slice-delay", "close-after", "reset"])
            let target = try node.string("link")
            let link: LinkTarget = target == "all" ? .all : .agent(try bladeName(target, node, "link"))
            var faults = DirectionFaults(
                latencyMillis: Double(try node.optionalDuration("latency", in: 0...600_000) ?? 0),
                jitterMillis: Double(try node.optionalDuration("jitter", in: 0...600_000) ?? 0),
                bytesPerSecond: try node.optionalBandwidth("bandwidth"),
                sliceBytes: try node.optionalInt("slice", in: 1...1_048_576),
                sliceDelayMillis: Double(try node.optionalDuration("slice-delay", in: 0...10_000) ?? 0),
                closeAfterBytes: try node.optionalInt("close-after", in: 1...Int(Int32.max)).map(UInt64.init)
            )
            var both = LinkFaults(both: faults)
            if let way = try node.optionalString("blackhole") {
                faults.blackholed = true
                switch way {
                case "both": both = LinkFaults(both: faults)
                case "to-controller": both.toServer = faults
                case "from-controller": both.toClient = faults
                default: throw node.error("blackhole", "must be both, to-controller or from-controller, not '\(way)'")
                }
            }
            guard both != .healthy else { throw node.error(nil, "is a link fault that changes nothing") }
            return FaultEvent(atMillis: at, durationMillis: try node.duration("for", in: 1...3_600_000), kind: .link(link, both))
        case "disk":
            try node.only(["at", "disk", "for"])
            let what = try node.string("disk")
            guard what == "full" || what == "read-only" else { throw node.error("disk", "must be full or read-only, not '\(what)'") }
            return FaultEvent(atMillis: at, durationMillis: try node.duration("for", in: 1...3_600_000),
                              kind: what == "full" ? .diskFull : .diskReadOnly)
        case "second-controller":
            try node.only(["at", "second-controller", "for"])
            guard try node.string("second-controller") == "start" else { throw node.error("second-controller", "must be start") }
            return FaultEvent(atMillis: at, durationMillis: try node.duration("for", in: 1...3_600_000), kind: .secondController)
        default:
            try node.only(["at", "crash-loop", "every"])
            guard try node.string("crash-loop") == "lpar-host" else { throw node.error("crash-loop", "must be lpar-host") }
            return FaultEvent(atMillis: at, durationMillis: try node.duration("every", in: 100...3_600_000), kind: .crashLoop)
        }
    }

    static func processTarget(_ node: Node, _ key: String) throws(ScenarioError) -> ProcessTarget {
        let text = try node.string(key)
        switch text {
        case "controller": return .controller
        case "lpar-host": return .lparHost
        default: return .agent(try bladeName(text, node, key))
        }
    }

    static func bladeName(_ text: String, _ node: Node, _ key: String) throws(ScenarioError) -> String {
        guard text.hasPrefix("blade-"), let number = Int(text.dropFirst(6)), number >= 1 else {
            throw node.error(key, "must be controller, lpar-host, all or a blade (blade-1, blade-2...), not '\(text)'")
        }
        return "blade-\(number)"
    }

    static func readExpectation(_ node: Node) throws(ScenarioError) -> Expectation {
        if node.has("unreachable") {
            try node.only(["unreachable", "after", "within"])
            let blade = try bladeName(try node.string("unreachable"), node, "unreachable")
            return .unreachable(blade: blade, afterMillis: try node.duration("after", in: 0...3_600_000),
                                withinMillis: try node.duration("within", in: 1...3_600_000))
        }
        if node.has("minimum-ok") {
            try node.only(["minimum-ok"])
            return .minimumOK(try node.int("minimum-ok", in: 0...1_000_000))
        }
        if node.has("violation") {
            try node.only(["violation"])
            if let names = node.values["violation"] as? [String] {
                var kinds: [Violation.Kind] = []
                for name in names {
                    guard let kind = Violation.Kind(rawValue: name) else {
                        throw node.error("violation", "must be one of \(Violation.Kind.allCases.map(\.rawValue).joined(separator: ", ")), not '\(name)'")
                    }
                    kinds.append(kind)
                }
                guard !kinds.isEmpty else { throw node.error("violation", "names no kind") }
                return .violation(kinds)
            }
            return .violation([try node.enumValue("violation", Violation.Kind.self)])
        }
        try node.only(["minimum-refused"])
        return .minimumRefused(try node.int("minimum-refused", in: 0...1_000_000))
    }

    // MARK: - What the cluster cannot hold

    /// Why the scenario cannot run on its own cluster, or nil.
    public static func problem(with scenario: Scenario) -> String? {
        let cluster = scenario.cluster
        if cluster.racks > cluster.chassis { return "cluster: \(cluster.racks) racks for \(cluster.chassis) chassis" }
        if cluster.powerDomains > cluster.racks { return "cluster: \(cluster.powerDomains) power domains for \(cluster.racks) racks" }
        if cluster.chassis > cluster.blades { return "cluster: \(cluster.chassis) chassis for \(cluster.blades) blades" }
        let tenants = Set(scenario.tenants.map(\.name))
        if tenants.count != scenario.tenants.count { return "tenants: a tenant is named twice" }
        if scenario.tenants.isEmpty { return "tenants: the workload needs at least one tenant" }
        let workload = scenario.workload
        if workload.partitionCores > cluster.coresPerBlade - 1 {
            return "workload: partitions of \(workload.partitionCores) cores do not fit blades of \(cluster.coresPerBlade) (one core is L0's)"
        }
        if workload.partitionVMM && (workload.partitionCores < 2 || workload.partitionMemory <= 512 * ByteSize.mib) {
            return "workload: a VMM partition needs at least 2 cores and more than 512MiB (its guest hypervisor keeps one core and 512MiB)"
        }
        let vmOperations = workload.mix.filter { ($0.key == .createVM || $0.key == .deleteVM) && $0.value > 0 }
        if !vmOperations.isEmpty && !workload.partitionVMM {
            return "workload: the mix creates or deletes VMs, but its partitions run no guest hypervisor (partition.vmm: true)"
        }
        if workload.partitionMemory >= cluster.memoryPerBlade {
            return "workload: partitions of \(ByteSize.format(workload.partitionMemory)) do not fit blades of \(ByteSize.format(cluster.memoryPerBlade))"
        }
        for group in workload.groups {
            if !tenants.contains(group.tenant) { return "group \(group.name): tenant '\(group.tenant)' is not among the tenants" }
            let domains = cluster.domainCount(at: group.level)
            if group.hard && group.replicas > domains {
                return "group \(group.name): \(group.replicas) replicas in a hard group at \(group.level.rawValue) level, but the cluster has \(domains) \(group.level.rawValue) domain\(domains == 1 ? "" : "s")"
            }
        }
        for tenant in tenants {
            let share = workload.groups.filter { $0.tenant == tenant }.map(\.share).reduce(0, +)
            if share > 1 + 1e-9 { return "groups of tenant \(tenant): their shares add up to \(share), more than 1" }
        }
        for fault in scenario.faults {
            if fault.kind == .secondController && !scenario.testSwitches.contains(.sharedStore) {
                return "fault: a second controller on the same store needs test-switches: [shared-store] (the data directory's lock refuses it, as it should)"
            }
            if fault.atMillis >= scenario.durationMillis {
                return "fault at \(fault.atMillis) ms is not before the end of the run (\(scenario.durationMillis) ms)"
            }
            let blade: String? = switch fault.kind {
            case .kill(.agent(let id)), .pause(.agent(let id)), .link(.agent(let id), _): id
            default: nil
            }
            if let blade, !cluster.bladeIDs.contains(blade) { return "fault: there is no \(blade) in a cluster of \(cluster.blades) blades" }
        }
        for case .unreachable(let blade, _, _) in scenario.expectations where !cluster.bladeIDs.contains(blade) {
            return "expect: there is no \(blade) in a cluster of \(cluster.blades) blades"
        }
        return nil
    }
}

/// A YAML mapping with its place in the file, so that every error names where it is.
struct Node {
    let values: [String: Any]
    let path: String
    let file: String

    static func mapping(_ value: Any?, at path: String, file: String) throws(ScenarioError) -> Node {
        guard let values = value as? [String: Any] else {
            throw ScenarioError("\(file): \(path.isEmpty ? "the file" : path) must be a mapping of 'key: value' lines")
        }
        return Node(values: values, path: path, file: file)
    }

    func error(_ key: String?, _ problem: String) -> ScenarioError {
        let place = [path, key ?? ""].filter { !$0.isEmpty }.joined(separator: ".")
        return ScenarioError("\(file): \(place.isEmpty ? "" : place + " ")\(problem)")
    }

    func has(_ key: String) -> Bool { values[key] != nil }

    func only(_ known: [String]) throws(ScenarioError) {
        for key in values.keys.sorted() where !known.contains(key) {
            let hint = ConfigFile.nearest(key, in: known).map { "; did you mean '\($0)'?" } ?? " (known: \(known.joined(separator: ", ")))"
            throw error(nil, "has an unknown key '\(key)'\(hint)")
        }
    }

    func required(_ key: String) throws(ScenarioError) -> Any {
        guard let value = values[key] else { throw error(key, "is missing") }
        return value
    }

    func mapping(_ key: String) throws(ScenarioError) -> Node {
        try Node.mapping(try required(key), at: path.isEmpty ? key : "\(path).\(key)", file: file)
    }

    func list(_ key: String) throws(ScenarioError) -> [Node] {
        guard let items = try required(key) as? [Any] else { throw error(key, "must be a list") }
        var nodes: [Node] = []
        for (index, item) in items.enumerated() {
            nodes.append(try Node.mapping(item, at: "\(path.isEmpty ? key : "\(path).\(key)")[\(index + 1)]", file: file))
        }
        return nodes
    }

    func optionalList(_ key: String) throws(ScenarioError) -> [Node]? { has(key) ? try list(key) : nil }

    func string(_ key: String) throws(ScenarioError) -> String {
        let value = try required(key)
        switch value {
        case let text as String: return text
        case let number as Int: return String(number)
        default: throw error(key, "must be a single value")
        }
    }

    func optionalString(_ key: String) throws(ScenarioError) -> String? { has(key) ? try string(key) : nil }

    func int(_ key: String, in range: ClosedRange<Int>) throws(ScenarioError) -> Int {
        guard let value = try required(key) as? Int else { throw error(key, "must be a whole number") }
        guard range.contains(value) else { throw error(key, "is \(value), not between \(range.lowerBound) and \(range.upperBound)") }
        return value
    }

    func optionalInt(_ key: String, in range: ClosedRange<Int>) throws(ScenarioError) -> Int? { has(key) ? try int(key, in: range) : nil }

    func optionalBool(_ key: String) throws(ScenarioError) -> Bool? {
        guard has(key) else { return nil }
        guard let value = values[key] as? Bool else { throw error(key, "must be true or false") }
        return value
    }

    func number(_ key: String, in range: ClosedRange<Double>) throws(ScenarioError) -> Double {
        let raw = try required(key)
        guard let value = (raw as? Double) ?? (raw as? Int).map(Double.init) else { throw error(key, "must be a number") }
        guard range.contains(value) else { throw error(key, "is \(value), not between \(range.lowerBound) and \(range.upperBound)") }
        return value
    }

    func size(_ key: String, in range: ClosedRange<UInt64>) throws(ScenarioError) -> UInt64 {
        switch ByteSize.parse(try string(key)) {
        case .failure(let problem): throw error(key, "\(problem)")
        case .success(let bytes):
            guard range.contains(bytes) else {
                throw error(key, "is \(ByteSize.format(bytes)), not between \(ByteSize.format(range.lowerBound)) and \(ByteSize.format(range.upperBound))")
            }
            return bytes
        }
    }

    /// A duration in milliseconds: `250ms`, `3s`, `2m` (a bare number is seconds).
    func duration(_ key: String, in range: ClosedRange<UInt64>) throws(ScenarioError) -> UInt64 {
        let text = try string(key)
        let units: [(String, Double)] = [("ms", 1), ("s", 1_000), ("m", 60_000)]
        var millis: Double?
        if let seconds = Double(text) { millis = seconds * 1_000 }
        for (suffix, scale) in units where millis == nil && text.hasSuffix(suffix) {
            if let value = Double(text.dropLast(suffix.count)) { millis = value * scale }
        }
        guard let millis, millis >= 0, millis.isFinite else { throw error(key, "'\(text)' is not a duration (like 250ms, 3s, 2m)") }
        let rounded = UInt64(millis.rounded())
        guard range.contains(rounded) else { throw error(key, "is \(rounded) ms, not between \(range.lowerBound) and \(range.upperBound) ms") }
        return rounded
    }

    func optionalDuration(_ key: String, in range: ClosedRange<UInt64>) throws(ScenarioError) -> UInt64? {
        has(key) ? try duration(key, in: range) : nil
    }

    /// A rate in bytes per second from `1Mbit`, `512kbit`, `10MB` (bytes) per second.
    func optionalBandwidth(_ key: String) throws(ScenarioError) -> Double? {
        guard has(key) else { return nil }
        let text = try string(key)
        let units: [(String, Double)] = [("Gbit", 1e9 / 8), ("Mbit", 1e6 / 8), ("kbit", 1e3 / 8), ("MB", 1e6), ("kB", 1e3), ("B", 1)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            if let value = Double(text.dropLast(suffix.count)), value > 0, value * scale >= 1, value * scale <= 1e12 { return value * scale }
        }
        throw error(key, "'\(text)' is not a bandwidth (like 1Mbit, 512kbit, 10MB)")
    }

    /// A list of test-only switch names.
    func switches(_ key: String) throws(ScenarioError) -> Set<TestSwitch> {
        guard has(key) else { return [] }
        guard let names = values[key] as? [String] else { throw error(key, "must be a list of switch names") }
        var switches: Set<TestSwitch> = []
        for name in names {
            guard let value = TestSwitch(rawValue: name) else {
                throw error(key, "has an unknown switch '\(name)' (known: \(TestSwitch.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            switches.insert(value)
        }
        return switches
    }

    func enumValue<E: RawRepresentable & CaseIterable>(_ key: String, _ type: E.Type) throws(ScenarioError) -> E where E.RawValue == String {
        let text = try string(key)
        guard let value = E(rawValue: text) else {
            throw error(key, "must be one of \(E.allCases.map(\.rawValue).joined(separator: ", ")), not '\(text)'")
        }
        return value
    }
}
