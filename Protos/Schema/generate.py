#!/usr/bin/env python3
"""Generates the protocol's Swift types, its catalogue in SPEC.md, and the golden vectors.

Reads Protos/Schema/nestor.schema and writes:
  Protos/Messages/Generated.swift     message and struct types, enums, the catalogue
  Protos/SPEC.md                      the catalogue section between its markers
  Tests/WireTests/Golden/*.hex        one encoded sample of every message type
  Tests/WireTests/GoldenSamples.swift the same samples, built in Swift

The golden bytes come from this file's own encoder, written from SPEC.md, so the tests
compare two independent implementations of the encoding.
Run with --check to fail (exit 1) when a written file would change.
"""
import os, re, struct, sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCALARS = {"uint64": ("UInt64", 0), "uint32": ("UInt32", 0), "uint16": ("UInt16", 0), "int64": ("Int64", 0),
           "bool": ("Bool", 0), "double": ("Double", 1), "fixed64": ("UInt64", 1), "string": ("String", 2),
           "bytes": ("[UInt8]", 2)}
ROLES = ["controller", "agent", "admin", "tenant"]


class Field:
    def __init__(self, number, name, type_, mode):
        self.number, self.name, self.type, self.mode = number, name, type_, mode


class Decl:
    def __init__(self, kind, name):
        self.kind, self.name = kind, name
        self.fields, self.values, self.reserved = [], [], []
        self.number = None
        self.role_kind = None
        self.response = None
        self.roles = []


def parse(path):
    decls, current = [], None
    for lineno, raw in enumerate(open(path), 1):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        def fail(msg):
            sys.exit(f"{path}:{lineno}: {msg}")
        if not line.startswith(" "):
            words = line.split()
            if words[0] == "enum":
                current = Decl("enum", words[1])
            elif words[0] == "struct":
                current = Decl("struct", words[1])
            elif words[0] == "message":
                m = re.fullmatch(r"message (\d+) (\w+) (request|response|event|control)(?: -> (\w+))?(?: roles ([\w,]+))?", line)
                if not m:
                    fail("bad message line")
                current = Decl("message", m.group(2))
                current.number = int(m.group(1))
                current.role_kind = m.group(3)
                current.response = m.group(4)
                current.roles = m.group(5).split(",") if m.group(5) else []
                for role in current.roles:
                    if role not in ROLES:
                        fail(f"unknown role {role}")
            else:
                fail("expected enum, struct or message")
            decls.append(current)
            continue
        words = line.split()
        if current is None:
            fail("field outside a declaration")
        if current.kind == "enum":
            m = re.fullmatch(r"\s+(\w+) = (\d+)", line)
            if not m:
                fail("bad enum value")
            current.values.append((m.group(1), int(m.group(2))))
        elif len(words) == 2 and words[1] == "reserved":
            current.reserved.append(int(words[0]))
        else:
            if len(words) != 4 or words[3] not in ("required", "optional", "repeated"):
                fail("bad field line")
            current.fields.append(Field(int(words[0]), words[1], words[2], words[3]))
    names = {d.name: d for d in decls}
    numbers = {}
    for d in decls:
        if d.kind == "message":
            if d.number in numbers:
                sys.exit(f"message type {d.number} used twice ({numbers[d.number]}, {d.name})")
            numbers[d.number] = d.name
            if d.response and d.response not in names:
                sys.exit(f"{d.name}: unknown response {d.response}")
        seen = set(d.reserved)
        for f in d.fields:
            if f.number in seen:
                sys.exit(f"{d.name}: field number {f.number} reused")
            seen.add(f.number)
            base = f.type[5:] if f.type.startswith("enum:") else f.type
            if base not in SCALARS and base not in names:
                sys.exit(f"{d.name}.{f.name}: unknown type {f.type}")
        d.fields.sort(key=lambda f: f.number)
    return decls, names


# ----------------------------------------------------------------- encoding

def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def wire_type(f, names):
    if f.type.startswith("enum:"):
        return 0
    if f.type in SCALARS:
        return SCALARS[f.type][1]
    return 2


def encode_value(f, value, names):
    t = f.type
    if t.startswith("enum:"):
        return varint(value)
    if t in ("uint64", "uint32", "uint16"):
        return varint(value)
    if t == "int64":
        return varint(((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF)
    if t == "bool":
        return varint(1 if value else 0)
    if t == "double":
        return struct.pack("<d", value)
    if t == "fixed64":
        return struct.pack("<Q", value)
    if t == "string":
        data = value.encode("utf-8")
        return varint(len(data)) + data
    if t == "bytes":
        return varint(len(value)) + bytes(value)
    data = encode_message(names[t], value, names)
    return varint(len(data)) + data


def encode_message(decl, values, names):
    out = bytearray()
    for f in decl.fields:
        if f.name not in values:
            continue
        items = values[f.name] if f.mode == "repeated" else [values[f.name]]
        for item in items:
            out += varint(f.number << 3 | wire_type(f, names))
            out += encode_value(f, item, names)
    return bytes(out)


# ------------------------------------------------------------------ samples

def sample_scalar(f, index, names):
    n, t = f.number, f.type
    if t.startswith("enum:"):
        values = names[t[5:]].values
        return values[index % len(values)][1]
    if t == "uint64":
        return (1 << 40) + n * 1000 + index
    if t == "uint32":
        return 300 * n + index
    if t == "uint16":
        return 0x100 + n + index
    if t == "int64":
        return -(n * 1000 + index)
    if t == "bool":
        return (n + index) % 2 == 1
    if t == "double":
        return n + 0.25 + index
    if t == "fixed64":
        return 0x0102030405060708 + n + index
    if t == "string":
        return f"{f.name}-\u00fc{index}" if index else f"{f.name}-\u00fc"
    if t == "bytes":
        return [(n + i + index) & 0xFF for i in range(5)]
    return sample(names[t], names, index)


def sample(decl, names, index=0):
    values = {}
    for f in decl.fields:
        if f.mode == "repeated":
            values[f.name] = [sample_scalar(f, 0, names), sample_scalar(f, 1, names)]
        else:
            values[f.name] = sample_scalar(f, index, names)
    return values


# -------------------------------------------------------------------- Swift

def swift_type(f, names):
    t = f.type
    base = t[5:] if t.startswith("enum:") else (SCALARS[t][0] if t in SCALARS else t)
    if f.mode == "repeated":
        return f"[{base}]"
    if f.mode == "optional":
        return f"{base}?"
    return base


def write_call(f, value):
    t, n = f.type, f.number
    if t.startswith("enum:"):
        return f"writer.uint({n}, UInt64({value}.rawValue))"
    return {
        "uint64": f"writer.uint({n}, {value})", "uint32": f"writer.uint({n}, UInt64({value}))",
        "uint16": f"writer.uint({n}, UInt64({value}))", "int64": f"writer.int({n}, {value})",
        "bool": f"writer.bool({n}, {value})", "double": f"writer.double({n}, {value})",
        "fixed64": f"writer.fixed64({n}, {value})", "string": f"writer.string({n}, {value})",
        "bytes": f"writer.bytes({n}, {value})",
    }.get(t, f"writer.message({n}, {value})")


def read_call(f):
    t = f.type
    if t.startswith("enum:"):
        return f"try reader.enumeration(key, {t[5:]}.self)"
    return {
        "uint64": "try reader.uint64(key)", "uint32": "try reader.uint32(key)", "uint16": "try reader.uint16(key)",
        "int64": "try reader.int64(key)", "bool": "try reader.bool(key)", "double": "try reader.double(key)",
        "fixed64": "try reader.fixed64(key)", "string": "try reader.string(key)", "bytes": "try reader.byteArray(key)",
    }.get(t, f"try reader.message(key, {t}.self)")


def swift_literal(f, value, names, indent):
    t = f.type
    if isinstance(value, list) and t != "bytes":
        inner = [swift_scalar_literal(t, v, names, indent) for v in value]
        return "[" + ", ".join(inner) + "]"
    return swift_scalar_literal(t, value, names, indent)


def swift_scalar_literal(t, value, names, indent):
    if t.startswith("enum:"):
        decl = names[t[5:]]
        case = [name for name, number in decl.values if number == value][0]
        return f".{case}"
    if t in ("uint64", "uint32", "uint16", "int64"):
        return str(value)
    if t == "bool":
        return "true" if value else "false"
    if t == "double":
        return repr(value)
    if t == "fixed64":
        return f"0x{value:016X}"
    if t == "string":
        return '"' + value.replace("\u00fc", "\\u{FC}") + '"'
    if t == "bytes":
        return "[" + ", ".join(str(b) for b in value) + "]"
    return swift_init(names[t], value, names, indent)


def swift_init(decl, values, names, indent):
    if not decl.fields:
        return f"{decl.name}()"
    pad = " " * (indent + 4)
    args = [f"{pad}{f.name}: {swift_literal(f, values[f.name], names, indent + 4)}" for f in decl.fields]
    return f"{decl.name}(\n" + ",\n".join(args) + f"\n{' ' * indent})"


def generate_swift(decls, names):
    out = ["// Generated by Protos/Schema/generate.py from Protos/Schema/nestor.schema. Do not edit.",
           "// The wire protocol's messages, structs, enums and catalogue (Protos/SPEC.md).", "",
           "public import WireCodec", ""]
    for d in decls:
        if d.kind == "enum":
            out.append(f"/// The `{d.name}` enumeration of the wire protocol.")
            out.append(f"public enum {d.name}: UInt32, Sendable, Equatable, Hashable, CaseIterable {{")
            for name, number in d.values:
                out.append(f"    case {name} = {number}")
            out.append("}")
            out.append("")
            continue
        if d.kind == "message":
            doc = f"/// Message {d.number}, `{d.name}` ({d.role_kind}"
            if d.response:
                doc += f", answered by `{d.response}`"
            if d.roles:
                doc += f"; sent by {', '.join(d.roles)}"
            out.append(doc + ").")
        else:
            out.append(f"/// The `{d.name}` structure of the wire protocol.")
        out.append(f"public struct {d.name}: WireStruct, Equatable, Hashable {{")
        for f in d.fields:
            out.append(f"    public var {f.name}: {swift_type(f, names)}")
        if d.fields:
            out.append("")
        params = []
        for f in d.fields:
            default = " = nil" if f.mode == "optional" else (" = []" if f.mode == "repeated" else "")
            params.append(f"{f.name}: {swift_type(f, names)}{default}")
        out.append(f"    public init({', '.join(params)}) {{")
        for f in d.fields:
            out.append(f"        self.{f.name} = {f.name}")
        out.append("    }")
        out.append("")
        out.append("    public func encode(to writer: inout WireWriter) {")
        for f in d.fields:
            if f.mode == "required":
                out.append(f"        {write_call(f, f.name)}")
            elif f.mode == "optional":
                out.append(f"        if let value = {f.name} {{ {write_call(f, 'value')} }}")
            else:
                out.append(f"        for value in {f.name} {{ {write_call(f, 'value')} }}")
        if not d.fields:
            out.append("        _ = writer")
        out.append("    }")
        out.append("")
        out.append("    public init(from reader: inout WireReader) throws(WireError) {")
        for f in d.fields:
            t = swift_type(f, names)
            if f.mode == "repeated":
                out.append(f"        var {f.name}: {t} = []")
            elif f.mode == "optional":
                out.append(f"        var {f.name}: {t}")
            else:
                out.append(f"        var {f.name}: {t}?")
        out.append("        while let key = try reader.next() {")
        out.append("            switch key.number {")
        for f in d.fields:
            op = "append(" + read_call(f) + ")" if f.mode == "repeated" else None
            if op:
                out.append(f"            case {f.number}: {f.name}.{op}")
            else:
                out.append(f"            case {f.number}: {f.name} = {read_call(f)}")
        out.append("            default: try reader.skip(key)")
        out.append("            }")
        out.append("        }")
        for f in d.fields:
            if f.mode == "required":
                out.append(f"        self.{f.name} = try reader.required({f.name}, \"{f.name}\", in: \"{d.name}\")")
            else:
                out.append(f"        self.{f.name} = {f.name}")
        out.append("    }")
        out.append("}")
        out.append("")
        if d.kind == "message":
            out.append(f"extension {d.name}: WireMessage {{")
            out.append(f"    public static let messageType: MessageType = {d.number}")
            out.append("}")
            out.append("")
    out.append("/// Every message type of the protocol, with what it is and who may send it.")
    out.append("public enum NestorCatalog {")
    out.append("    public static let entries: [CatalogEntry] = [")
    for d in decls:
        if d.kind != "message":
            continue
        roles = ", ".join("." + r for r in d.roles)
        response = f"{names[d.response].number}" if d.response else "nil"
        out.append(f"        CatalogEntry(type: {d.number}, name: \"{d.name}\", kind: .{d.role_kind}, response: {response}, roles: [{roles}]),")
    out.append("    ]")
    out.append("")
    out.append("    /// Decodes a payload of any catalogued type.")
    out.append("    public static func decode(type: MessageType, payload: ByteBuffer, limits: WireLimits = .standard) throws(WireError) -> any WireStruct {")
    out.append("        switch type {")
    for d in decls:
        if d.kind == "message":
            out.append(f"        case {d.number}: return try {d.name}.decode(payload, limits: limits)")
    out.append("        default: throw .unknownMessageType(type)")
    out.append("        }")
    out.append("    }")
    out.append("}")
    out.insert(4, "public import NIOCore")
    return "\n".join(out) + "\n"


def generate_samples(decls, names):
    out = ["// Generated by Protos/Schema/generate.py from Protos/Schema/nestor.schema. Do not edit.",
           "// One sample of every message type; Golden/<name>.hex holds its expected encoding.", "",
           "import Protos", "import WireCodec", "",
           "enum GoldenSamples {",
           "    /// (name, sample) for every message type.",
           "    static let all: [(name: String, message: any WireStruct, type: MessageType)] = ["]
    for d in decls:
        if d.kind != "message":
            continue
        literal = swift_init(d, sample(d, names), names, 8)
        out.append(f"        (\"{d.name}\", {literal}, {d.number}),")
    out.append("    ]")
    out.append("}")
    return "\n".join(out) + "\n"


def field_list(d):
    """A declaration's fields in field-number order, reserved numbers included."""
    items = [(f.number, f"{f.number} `{f.name}` {f.type} {f.mode}") for f in d.fields]
    items += [(n, f"{n} reserved") for n in d.reserved]
    return "; ".join(text for _, text in sorted(items))


def catalogue_markdown(decls, names):
    lines = ["| type | message | kind | answered by | sent by | fields |", "| ---: | --- | --- | --- | --- | --- |"]
    for d in decls:
        if d.kind != "message":
            continue
        fields = field_list(d) or "(none)"
        response = f"`{d.response}` ({names[d.response].number})" if d.response else ""
        lines.append(f"| {d.number} | `{d.name}` | {d.role_kind} | {response} | {', '.join(d.roles)} | {fields} |")
    lines.append("")
    lines.append("Structures (nested messages) and enumerations:")
    lines.append("")
    lines.append("| name | fields or values |")
    lines.append("| --- | --- |")
    for d in decls:
        if d.kind == "struct":
            lines.append(f"| `{d.name}` | " + field_list(d) + " |")
        elif d.kind == "enum":
            lines.append(f"| `{d.name}` (enum) | " + ", ".join(f"{n} = {v}" for n, v in d.values) + " |")
    return "\n".join(lines)


def main():
    check = "--check" in sys.argv
    decls, names = parse(os.path.join(ROOT, "Protos", "Schema", "nestor.schema"))
    outputs = {
        os.path.join(ROOT, "Protos", "Messages", "Generated.swift"): generate_swift(decls, names),
        os.path.join(ROOT, "Tests", "WireTests", "GoldenSamples.swift"): generate_samples(decls, names),
    }
    for d in decls:
        if d.kind == "message":
            data = encode_message(d, sample(d, names), names)
            outputs[os.path.join(ROOT, "Tests", "WireTests", "Golden", f"{d.name}.hex")] = data.hex() + "\n"
    spec_path = os.path.join(ROOT, "Protos", "SPEC.md")
    spec = open(spec_path).read()
    begin, end = "<!-- catalogue begin -->", "<!-- catalogue end -->"
    head, rest = spec.split(begin, 1)
    _, tail = rest.split(end, 1)
    outputs[spec_path] = head + begin + "\n" + catalogue_markdown(decls, names) + "\n" + end + tail
    stale = []
    for path, text in outputs.items():
        old = open(path).read() if os.path.exists(path) else None
        if old != text:
            stale.append(os.path.relpath(path, ROOT))
            if not check:
                with open(path, "w") as fh:
                    fh.write(text)
    if check and stale:
        sys.exit("generated files are out of date: " + ", ".join(stale) + " (run Protos/Schema/generate.py)")


if __name__ == "__main__":
    main()
