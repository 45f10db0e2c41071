public import Partitioner

/// The disk and NIC inventory of `blade-agent run`, as its flags and config file write it.
public enum Inventory {
    /// `fc0:64:shared,local0:1`: ID:LUNS, and `:shared` when LPARs share it by LUN range.
    public static func disks(_ text: String) throws(AgentError) -> [BladeDisk] {
        try items(text).map { item throws(AgentError) in
            let parts = item.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard (2...3).contains(parts.count), !parts[0].isEmpty, let luns = Int(parts[1]), luns >= 1,
                  parts.count == 2 || parts[2] == "shared" else {
                throw .badInput("disks: '\(item)' is not ID:LUNS or ID:LUNS:shared (e.g. fc0:64:shared)")
            }
            return BladeDisk(id: parts[0], lunCount: luns, shared: parts.count == 3)
        }
    }

    /// `eth0:shared,eth1`: an ID, and `:shared` when LPARs share it.
    public static func nics(_ text: String) throws(AgentError) -> [BladeNIC] {
        try items(text).map { item throws(AgentError) in
            let parts = item.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard (1...2).contains(parts.count), !parts[0].isEmpty, parts.count == 1 || parts[1] == "shared" else {
                throw .badInput("nics: '\(item)' is not ID or ID:shared (e.g. eth0:shared)")
            }
            return BladeNIC(id: parts[0], shared: parts.count == 2)
        }
    }

    private static func items(_ text: String) -> [String] {
        text.split(separator: ",").map { $0.filter { !$0.isWhitespace } }.filter { !$0.isEmpty }
    }
}
