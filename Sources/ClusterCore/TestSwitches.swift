import InputText

/// Switches that remove one of the controller's safety checks on purpose, so that the fault
/// harness can show its checker sees what then breaks (a harness that never sees a violation
/// proves nothing). They are read from `NESTOR_TEST_SWITCHES` (names separated by commas), each
/// one is logged as a warning at start, and none is ever set in a real deployment.
public enum TestSwitch: String, Sendable, Hashable, CaseIterable {
    /// The store commits without comparing the generation its writer read (no compare-and-swap).
    case noStoreCAS = "no-store-cas"
    /// Placement skips the hard anti-affinity filter.
    case skipHardAntiAffinity = "skip-hard-anti-affinity"
    /// The data directory takes no lock, so a second controller can open the same store (the
    /// compare-and-swap alone then keeps their writes apart).
    case sharedStore = "shared-store"

    /// The environment variable the controller reads them from.
    public static let environmentVariable = "NESTOR_TEST_SWITCHES"

    /// The switches named in `text`; an unknown name is an error naming the known ones.
    public static func parse(_ text: String) -> Result<Set<TestSwitch>, ClusterError> {
        var switches: Set<TestSwitch> = []
        for name in text.split(separator: ",").map({ $0.filter { !$0.isWhitespace } }) where !name.isEmpty {
            guard let value = TestSwitch(rawValue: name) else {
                return .failure(.invalid("\(environmentVariable) names an unknown test switch '\(InputText.shown(name))' (known: \(allCases.map(\.rawValue).joined(separator: ", ")))", field: environmentVariable))
            }
            switches.insert(value)
        }
        return .success(switches)
    }
}
