import Foundation
import JSON
import Testing

/// The three entry points of the JSON parser read a real tokenizer file the same way.
struct TokenizerFileJSONTests {
    @Test func plainAndRecordingParsesAgreeOnATokenizerFile() throws {
        let bytes = Array(try Data(contentsOf: Fixtures.url("gpt2_bpe.json")))
        let plain = try JSONValue.parse(bytes)
        #expect(try JSONValue.parseWithSources(String(decoding: bytes, as: UTF8.self)).0 == plain)
        #expect(try JSONValue.parseRecordingMembers(bytes).value == plain)
    }
}
