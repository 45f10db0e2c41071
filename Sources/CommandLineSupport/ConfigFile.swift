import Foundation
import Yams

/// A configuration file (YAML; JSON is YAML too) of `key: value` lines whose keys are the
/// command's long flag names. Unknown keys are errors (with the nearest known key), so a
/// typo never silently falls back to a default.
public struct ConfigFile: Sendable {
    public let path: String
    public let values: [String: String]

    public init(path: String, known: [String]) throws(ConfigFileError) {
        self.path = path
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigFileError(message: "cannot read the config file \(path): \((error as NSError).localizedDescription)")
        }
        let loaded: Any?
        do {
            loaded = try Yams.load(yaml: text)
        } catch {
            let detail = "\(error)".split(separator: "\n").first.map(String.init) ?? "not YAML"
            throw ConfigFileError(message: "config file \(path) is not valid YAML: \(detail)")
        }
        guard let loaded else { values = [:]; return }
        guard let mapping = loaded as? [String: Any] else {
            throw ConfigFileError(message: "config file \(path) must be a mapping of 'key: value' lines")
        }
        var values: [String: String] = [:]
        for (key, value) in mapping {
            guard known.contains(key) else {
                let hint = ConfigFile.nearest(key, in: known).map { "; did you mean '\($0)'?" } ?? " (known keys: \(known.sorted().joined(separator: ", ")))"
                throw ConfigFileError(message: "config file \(path): unknown key '\(key)'\(hint)")
            }
            switch value {
            case let string as String: values[key] = string
            case let int as Int: values[key] = String(int)
            case let double as Double: values[key] = String(double)
            case let bool as Bool: values[key] = bool ? "true" : "false"
            default:
                throw ConfigFileError(message: "config file \(path): '\(key)' must be a single value (a string, number or boolean)")
            }
        }
        self.values = values
    }

    /// The value of `key` from the flag when one was given, else from the file.
    public func merged(_ flag: String?, _ key: String) -> String? { flag ?? values[key] }

    /// The known key closest to `key` (edit distance at most 3).
    public static func nearest(_ key: String, in known: [String]) -> String? {
        let scored = known.map { ($0, distance(Array(key), Array($0))) }.filter { $0.1 <= 3 }
        return scored.min { $0.1 != $1.1 ? $0.1 < $1.1 : $0.0 < $1.0 }?.0
    }

    static func distance(_ a: [Character], _ b: [Character]) -> Int {
        var previous = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var current = [i + 1]
            for (j, y) in b.enumerated() {
                current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
            }
            previous = current
        }
        return previous[b.count]
    }
}

/// A configuration file that cannot be used, and why.
public struct ConfigFileError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}
