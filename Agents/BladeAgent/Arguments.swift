public import ArgumentParser
import BladeAgentKit
import CommandLineSupport
import Logging
import Partitioner
import Sizes

// The typed values of blade-agent's flags. A config file's values are read with the same
// grammar (`init?(argument:)`), so a flag and its config key accept exactly the same text.

extension BackendKind: ExpressibleByArgument {}
extension Logger.Level: @retroactive ExpressibleByArgument {}
extension ShadowBenchWorkload: ExpressibleByArgument {}

/// A size flag (`--memory 64GiB`), in the one size grammar of `ByteSize`.
struct ByteCount: ExpressibleByArgument, Sendable, Equatable {
    var bytes: UInt64

    init(bytes: UInt64) { self.bytes = bytes }

    init?(argument: String) {
        guard case .success(let bytes) = ByteSize.parse(argument) else { return nil }
        self.bytes = bytes
    }

    /// The size `text` means, or why it is not one; for `@Option(transform:)`, whose error
    /// message the command line shows.
    static func parse(_ text: String) throws(SizeError) -> ByteCount {
        ByteCount(bytes: try ByteSize.parse(text).get())
    }
}

extension ConfigFile {
    /// The value of `key`: the flag's when one was given, else the file's read with the flag's
    /// grammar; `expected` says what a good value looks like when the file's is not one.
    func merged<Value: ExpressibleByArgument>(_ flag: Value?, _ key: String, expected: String) throws(AgentError) -> Value? {
        if let flag { return flag }
        guard let text = values[key] else { return nil }
        guard let value = Value(argument: text) else {
            throw .badInput("config file \(path): \(key) '\(text)' is not \(expected)")
        }
        return value
    }

    /// A size from the file, with the size grammar's own explanation when it is not one.
    func mergedSize(_ flag: ByteCount?, _ key: String) throws(AgentError) -> ByteCount? {
        if let flag { return flag }
        guard let text = values[key] else { return nil }
        switch ByteSize.parse(text) {
        case .success(let bytes): return ByteCount(bytes: bytes)
        case .failure(let error): throw .badInput("config file \(path): \(key) \(error)")
        }
    }
}

/// What a good value of an enumeration looks like, for messages: "sim or kvm".
func oneOf<Value: CaseIterable & RawRepresentable>(_ type: Value.Type) -> String where Value.RawValue == String {
    let names = Value.allCases.map(\.rawValue)
    return names.count > 1 ? names.dropLast().joined(separator: ", ") + " or " + names.last! : names.joined()
}
