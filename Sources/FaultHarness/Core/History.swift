/// What a client did and what it learned: one entry per operation, with the times it was
/// invoked and completed, as Jepsen and etcd's robustness tests record them.
public struct HistoryEntry: Sendable, Hashable, Codable {
    public enum Action: Sendable, Hashable, Codable {
        case createPartition(String)
        case deletePartition(String)
        case createVM(partition: String, name: String)
        case deleteVM(partition: String, name: String)
        case cordon(String)
        case uncordon(String)
    }

    public enum Outcome: Sendable, Hashable, Codable {
        case ok
        case refused(String)
        /// Failed without reaching a decision the client could see as a refusal (e.g. unavailable).
        case failed(String)
        /// Timed out or the connection was lost: it may or may not have happened.
        case unknown
    }

    public var client: String
    public var action: Action
    public var invokedMillis: UInt64
    public var completedMillis: UInt64
    public var outcome: Outcome

    public init(client: String, action: Action, invokedMillis: UInt64, completedMillis: UInt64, outcome: Outcome) {
        self.client = client
        self.action = action
        self.invokedMillis = invokedMillis
        self.completedMillis = completedMillis
        self.outcome = outcome
    }

    /// The partition a create or delete of a partition is about (nil for other operations).
    var partition: String? {
        switch action {
        case .createPartition(let name), .deletePartition(let name): name
        case .createVM, .deleteVM, .cordon, .uncordon: nil
        }
    }
}
