import Foundation
import JSON
import Testing

@testable import TextData

/// The repository's Data/ directory (these tests read only files inside the repository).
let dataDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Data")

@Suite struct ShippedCorpus {
    /// Data/stories.txt is one document, Data/stories.jsonl 300; both tokenize and batch.
    @Test func storiesLoadAndBatch() throws {
        let tok = try Fixtures.tokenizer("gpt2_bpe.json")
        let eot = try #require(tok.id(for: "<|endoftext|>"))
        let txt = dataDirectory.appendingPathComponent("stories.txt").path
        let jsonl = dataDirectory.appendingPathComponent("stories.jsonl").path
        let source = CorpusSource(paths: [txt, jsonl])
        let stream = try source.tokenStream(tokenizer: tok, separator: eot, cacheDirectory: nil)
        #expect(stream.documents == 301)
        #expect(stream.tokens.filter { $0 == eot }.count == 301)
        let text = try String(contentsOfFile: txt, encoding: .utf8)
        let first = try #require(stream.tokens.firstIndex(of: eot))
        #expect(tok.decode(Array(stream.tokens[..<first])) == text)
        var batcher = try TokenBatcher(tokens: stream.tokens, config: .init(batchSize: 16, seqLen: 128), seed: 0)
        #expect(batcher.next().inputs.count == 16 * 128)
        #expect(!batcher.validationBatches(count: 4).isEmpty)
    }
}

/// Opt-in timing of the data pipeline on the shipped corpus (not a timed test):
///   DISTILL_CORPUS_BENCH=1 swift test -c release -Xswiftc -enable-testing \
///     --filter TextDataTests.CorpusBenchmark
/// Set DISTILL_CORPUS_BENCH to a file path instead of 1 to also time that corpus (for example a
/// 100 MB JSONL file) with the 4096 tokenizer.
@Suite struct CorpusBenchmark {
    @Test func pipelineSpeed() throws {
        guard ProcessInfo.processInfo.environment["DISTILL_CORPUS_BENCH"] != nil else { return }
        let txt = dataDirectory.appendingPathComponent("stories.txt").path
        let jsonl = dataDirectory.appendingPathComponent("stories.jsonl").path
        let text = try String(contentsOfFile: txt, encoding: .utf8)
        let clock = ContinuousClock()
        func ms(_ d: Duration) -> String {
            String(format: "%.1f ms", (Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18) * 1e3)
        }
        let scratch = try Scratch()
        defer { scratch.cleanup() }
        for vocab in [1024, 4096] {
            var trained: ByteLevelBPETokenizer?
            let trainTime = try clock.measure {
                trained = try BPETrainer(.init(vocabSize: vocab, specialTokens: ["<|endoftext|>"])).train(text)
            }
            // A freshly loaded copy, so the word cache starts cold as in a new run.
            let tok = try ByteLevelBPETokenizer(jsonData: try #require(trained).jsonData())
            let eot = try #require(tok.id(for: "<|endoftext|>"))
            let cache = scratch.url.appendingPathComponent("cache-\(vocab)")
            var line = "bench vocab \(vocab) (trained in \(ms(trainTime))):"
            var inputs = [("stories.txt", [txt]), ("stories.jsonl", [jsonl])]
            if let extra = ProcessInfo.processInfo.environment["DISTILL_CORPUS_BENCH"], extra != "1", vocab == 4096 {
                inputs.append(((extra as NSString).lastPathComponent, [extra]))
            }
            for (name, paths) in inputs {
                let source = CorpusSource(paths: paths)
                var stream: TokenStream?
                let build = try clock.measure {
                    stream = try source.tokenStream(tokenizer: tok, separator: eot, cacheDirectory: cache)
                }
                var hit: TokenStream?
                let load = try clock.measure {
                    hit = try source.tokenStream(tokenizer: tok, separator: eot, cacheDirectory: cache)
                }
                #expect(stream?.cacheStatus == .built && hit?.cacheStatus == .hit)
                line += " \(name) \(stream!.tokens.count) tokens: tokenize+cache \(ms(build)), cache hit \(ms(load));"
            }
            print(line)
        }
        if let extra = ProcessInfo.processInfo.environment["DISTILL_CORPUS_BENCH"], extra != "1",
            CorpusSource.formatByExtension(extra) == .jsonl
        {
            var bytes = 0
            let read = try clock.measure {
                try JSONLReader.forEach(path: extra) { bytes += try $0.string("text").utf8.count }
            }
            print("bench: reading and parsing \(extra) alone (\(bytes) text bytes): \(ms(read))")
        }
    }
}
