import Foundation

/// The protocol's request messages and their integer fields, read from the schema itself
/// (Protos/Schema/nestor.schema), so that a request type or field added later is covered by
/// the tests that walk them without anyone listing it.
struct SchemaCatalogue {
    struct Field {
        var number: UInt32
        var name: String
        var type: String
    }

    struct Message {
        var number: UInt16
        var name: String
        var kind: String
        var roles: [String]
        var fields: [Field]
    }

    /// A path of field numbers to an integer field, through nested structs.
    struct IntegerPath: CustomStringConvertible {
        var numbers: [UInt32]
        var names: [String]
        /// The field's type: uint64, uint32, uint16, int64, fixed64 or enum:NAME.
        var type: String
        var description: String { names.joined(separator: ".") }
    }

    var messages: [Message] = []
    var structs: [String: [Field]] = [:]

    static func load() throws -> SchemaCatalogue {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("Protos/Schema/nestor.schema"), encoding: .utf8)
        var catalogue = SchemaCatalogue()
        var currentStruct: String?
        var currentMessage: Int?
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let words = line.split(separator: " ").map(String.init)
            guard let first = words.first else { continue }
            if !line.hasPrefix(" ") {
                currentStruct = nil
                currentMessage = nil
                if first == "struct", words.count >= 2 {
                    currentStruct = words[1]
                    catalogue.structs[words[1]] = []
                } else if first == "message", words.count >= 4, let number = UInt16(words[1]) {
                    var roles: [String] = []
                    if let index = words.firstIndex(of: "roles"), index + 1 < words.count {
                        roles = words[index + 1].split(separator: ",").map(String.init)
                    }
                    catalogue.messages.append(Message(number: number, name: words[2], kind: words[3], roles: roles, fields: []))
                    currentMessage = catalogue.messages.count - 1
                }
                continue
            }
            guard words.count >= 3, let number = UInt32(words[0]) else { continue }
            let field = Field(number: number, name: words[1], type: words[2])
            if let currentStruct { catalogue.structs[currentStruct]?.append(field) }
            if let currentMessage { catalogue.messages[currentMessage].fields.append(field) }
        }
        return catalogue
    }

    static let integerTypes: Set<String> = ["uint64", "uint32", "uint16", "int64", "fixed64"]

    /// Every integer or enum field reachable from `fields`, through nested structs.
    func integerPaths(_ fields: [Field], prefix: [UInt32] = [], names: [String] = [], depth: Int = 0) -> [IntegerPath] {
        var paths: [IntegerPath] = []
        for field in fields {
            if Self.integerTypes.contains(field.type) || field.type.hasPrefix("enum:") {
                paths.append(IntegerPath(numbers: prefix + [field.number], names: names + [field.name], type: field.type))
            } else if let nested = structs[field.type], depth < 4 {
                paths += integerPaths(nested, prefix: prefix + [field.number], names: names + [field.name], depth: depth + 1)
            }
        }
        return paths
    }
}

/// A message's encoding as its raw tagged fields (SPEC.md, "Payload encoding"), to put any
/// value into any field, whatever the field's declared width.
enum RawFields {
    enum Value: Equatable {
        case varint(UInt64)
        case fixed64(UInt64)
        case fixed32(UInt32)
        case bytes([UInt8])
    }

    struct MalformedPayload: Error {}

    static func parse(_ bytes: [UInt8]) throws -> [(UInt32, Value)] {
        var fields: [(UInt32, Value)] = []
        var index = 0
        func varint() throws -> UInt64 {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while index < bytes.count {
                let byte = bytes[index]
                index += 1
                result |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return result }
                shift += 7
                if shift > 63 { throw MalformedPayload() }
            }
            throw MalformedPayload()
        }
        func take(_ count: Int) throws -> [UInt8] {
            guard count >= 0, index + count <= bytes.count else { throw MalformedPayload() }
            defer { index += count }
            return Array(bytes[index..<index + count])
        }
        while index < bytes.count {
            let key = try varint()
            let number = UInt32(key >> 3)
            switch key & 7 {
            case 0: fields.append((number, .varint(try varint())))
            case 1: fields.append((number, .fixed64(try take(8).reversed().reduce(0) { $0 << 8 | UInt64($1) })))
            case 2: fields.append((number, .bytes(try take(Int(try varint())))))
            case 5: fields.append((number, .fixed32(UInt32(try take(4).reversed().reduce(0) { $0 << 8 | UInt64($1) }))))
            default: throw MalformedPayload()
            }
        }
        return fields
    }

    static func encode(_ fields: [(UInt32, Value)]) -> [UInt8] {
        var out: [UInt8] = []
        func varint(_ value: UInt64) {
            var v = value
            while v >= 0x80 { out.append(UInt8(truncatingIfNeeded: v) | 0x80); v >>= 7 }
            out.append(UInt8(v))
        }
        for (number, value) in fields {
            switch value {
            case .varint(let v): varint(UInt64(number) << 3); varint(v)
            case .fixed64(let v): varint(UInt64(number) << 3 | 1); for shift in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) }
            case .bytes(let b): varint(UInt64(number) << 3 | 2); varint(UInt64(b.count)); out += b
            case .fixed32(let v): varint(UInt64(number) << 3 | 5); for shift in stride(from: 0, to: 32, by: 8) { out.append(UInt8(truncatingIfNeeded: v >> UInt32(shift))) }
            }
        }
        return out
    }

    /// `payload` with the field at `path` set to `value` (in every occurrence of each nested
    /// struct on the way; added where the field is absent), encoded as `type` encodes.
    static func setting(_ payload: [UInt8], path: ArraySlice<UInt32>, to value: UInt64, type: String) throws -> [UInt8] {
        guard let number = path.first else { return payload }
        var fields = try parse(payload)
        if path.count == 1 {
            let encoded: Value = type == "fixed64" ? .fixed64(value) : .varint(value)
            fields.removeAll { $0.0 == number }
            fields.append((number, encoded))
            fields.sort { $0.0 < $1.0 }
            return encode(fields)
        }
        var found = false
        for index in fields.indices where fields[index].0 == number {
            guard case .bytes(let nested) = fields[index].1 else { continue }
            fields[index].1 = .bytes(try setting(nested, path: path.dropFirst(), to: value, type: type))
            found = true
        }
        if !found {
            fields.append((number, .bytes(try setting([], path: path.dropFirst(), to: value, type: type))))
            fields.sort { $0.0 < $1.0 }
        }
        return encode(fields)
    }
}
