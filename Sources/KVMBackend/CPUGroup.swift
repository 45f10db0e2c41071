#if os(Linux)
import Foundation
import Glibc

/// A shared-mode LPAR's CPU control group: its weight against the other shared LPARs is its
/// service ratio, and when capped its quota is its ratio of one core per vCPU. cgroup v1's
/// cpu controller (cpu.shares, cpu.cfs_quota_us) or v2's (cpu.weight, cpu.max).
public struct CPUGroup: Sendable, Equatable {
    public enum Version: Sendable, Equatable { case v1, v2 }
    public let path: String
    public let version: Version

    /// The writable cpu hierarchy of this host, if there is one.
    static func root() -> (String, Version)? {
        let v1 = "/sys/fs/cgroup/cpu"
        if access(v1 + "/cpu.shares", W_OK) == 0 { return (v1, .v1) }
        let v2 = "/sys/fs/cgroup"
        if let controllers = try? String(contentsOfFile: v2 + "/cgroup.controllers", encoding: .utf8),
           controllers.split(separator: " ").contains(where: { $0.trimmingCharacters(in: .whitespacesAndNewlines) == "cpu" }),
           access(v2 + "/cgroup.subtree_control", W_OK) == 0 {
            return (v2, .v2)
        }
        return nil
    }

    /// Creates the group for `name` with `share` for `vcpus` vCPUs; the reason when it cannot.
    public static func create(name: String, share: LPARConfiguration.Share, vcpus: Int) -> Result<CPUGroup, LPARError> {
        guard let (root, version) = root() else {
            return .failure(LPARError(lpar: name, "no writable cpu cgroup on this host: the service ratio cannot be enforced"))
        }
        let parent = root + "/nestor"
        let path = parent + "/lpar-\(name)-\(getpid())"
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            let group = CPUGroup(path: path, version: version)
            let ratio = max(1, min(share.serviceRatio, 1000))
            switch version {
            case .v1:
                try group.write("cpu.shares", String(max(2, ratio * 1024 / 100)))
                try group.write("cpu.cfs_period_us", "100000")
                try group.write("cpu.cfs_quota_us", share.capped ? String(max(1000, ratio * 1000 * vcpus)) : "-1")
            case .v2:
                try? String("+cpu").write(toFile: parent + "/cgroup.subtree_control", atomically: false, encoding: .utf8)
                try group.write("cpu.weight", String(max(1, min(10000, ratio))))
                try group.write("cpu.max", share.capped ? "\(max(1000, ratio * 1000 * vcpus)) 100000" : "max 100000")
            }
            return .success(group)
        } catch {
            rmdir(path)
            return .failure(LPARError(lpar: name, "cannot set up its cpu cgroup \(path): \(error.localizedDescription)"))
        }
    }

    func write(_ file: String, _ value: String) throws {
        try value.write(toFile: path + "/" + file, atomically: false, encoding: .utf8)
    }

    public func read(_ file: String) -> String? {
        (try? String(contentsOfFile: path + "/" + file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Moves a process (all its threads) into the group.
    public func add(pid: Int32) throws {
        try write("cgroup.procs", String(pid))
    }

    /// Periods in which the group was held back by its quota.
    public var throttledPeriods: UInt64 {
        guard let stat = read("cpu.stat") else { return 0 }
        for line in stat.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, parts[0] == "nr_throttled" { return UInt64(parts[1]) ?? 0 }
        }
        return 0
    }

    /// Removes the group (its processes must be gone).
    public func remove() { rmdir(path) }
}
#endif
