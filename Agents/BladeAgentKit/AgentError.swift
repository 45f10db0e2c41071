/// An error the agent reports to its user in one line.
public struct AgentError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The user's input is wrong (flags, spec file): exit code 2.
        case badInput
        /// Something failed that is not the user's input: exit code 1.
        case failure
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public static func badInput(_ message: String) -> AgentError { AgentError(.badInput, message) }
    public static func failure(_ message: String) -> AgentError { AgentError(.failure, message) }

    public var description: String { message }
    public var exitCode: Int32 { kind == .badInput ? 2 : 1 }
}
