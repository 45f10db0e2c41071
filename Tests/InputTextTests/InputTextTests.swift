import InputText
import Testing

@Suite struct InputTextTests {
    @Test(arguments: [
        ("plain", "plain"), ("tab\there", "tab\\there"), ("new\nline", "new\\nline"), ("crlf\r\n", "crlf\\r\\n"),
        ("esc\u{1B}[2J", "esc\\u{1B}[2J"), ("nul\u{0}", "nul\\u{0}"), ("bidi\u{202E}txt", "bidi\\u{202E}txt"),
        ("zero\u{200B}width", "zero\\u{200B}width"), ("héllo wörld", "héllo wörld"), ("", ""),
    ])
    func controlAndInvisibleCharactersAreEscaped(_ text: String, _ shown: String) {
        #expect(InputText.shown(text) == shown)
        #expect(InputText.printable(text) == shown)
    }

    @Test func longValuesAreCutSayingHowMuchIsLeft() {
        #expect(InputText.shown(String(repeating: "a", count: 100), limit: 10) == "aaaaaaaaaa... (90 more characters)")
        #expect(InputText.shown(String(repeating: "a", count: 10), limit: 10) == "aaaaaaaaaa")
        #expect(InputText.shown("a\nb", limit: 1) == "a... (2 more characters)")
    }
}
