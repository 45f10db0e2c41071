/// How a value someone typed (or sent) is echoed back in a message: control and other
/// invisible characters escaped, so that a message is always one printable line, and a long
/// value cut, so that a message stays short whatever came in.
public enum InputText {
    /// `text` escaped (`\n`, `\t`, `\u{1B}`...) and cut after `limit` characters, saying how
    /// many more there were.
    public static func shown(_ text: String, limit: Int = 64) -> String {
        var out = ""
        var count = 0
        for character in text {
            if count == limit {
                return out + "... (\(text.count - limit) more characters)"
            }
            out += escaped(character)
            count += 1
        }
        return out
    }

    /// Every control or invisible character of `line` escaped; the rest kept as it is.
    public static func printable(_ line: String) -> String { line.map(escaped).joined() }

    static func escaped(_ character: Character) -> String {
        switch character {
        case "\n": return "\\n"
        case "\r": return "\\r"
        case "\t": return "\\t"
        case "\r\n": return "\\r\\n"
        default:
            let visible = character.unicodeScalars.allSatisfy { scalar in
                switch scalar.properties.generalCategory {
                case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .privateUse, .unassigned: return false
                default: return true
                }
            }
            if visible { return String(character) }
            return character.unicodeScalars.map { "\\u{\(String($0.value, radix: 16, uppercase: true))}" }.joined()
        }
    }
}
