// What a distill checkpoint holds, read without loading its tensors: format, progress, model
// shape, parameter counts, optimizer state, RNG streams, recipe, tokenizer, adapter binding and,
// on request, every dataset with its shape and recorded checksum. `distill inspect` prints it.
//
// Parameter counts: "embedding" is model.embed_tokens.weight plus lm_head.weight when the
// embeddings are untied; "non-embedding" is everything else.

import Foundation
import JSON

package struct InspectReport: Codable {
    package struct Model: Codable {
        package var layers: Int
        package var hidden: Int
        package var intermediate: Int
        package var heads: Int
        package var kvHeads: Int
        package var headDim: Int
        package var vocab: Int
        package var tiedEmbeddings: Bool
        package var maxPositions: Int
    }
    package struct Parameters: Codable {
        package var total: Int
        package var embedding: Int
        package var nonEmbedding: Int
    }
    package struct Optimizer: Codable {
        package var kind: String
        package var step: Int
        package var moments: [String]
    }
    package struct Recipe: Codable {
        package var bytes: Int
        package var name: String?
    }
    package struct Tokenizer: Codable {
        package var bytes: Int
        package var vocabSize: Int?
    }
    package struct TensorEntry: Codable {
        /// The dataset path, e.g. "model/model.norm.weight" or "optimizer/m/model.norm.weight".
        package var path: String
        package var shape: [Int]
        package var dtype: String
        package var checksum: String
    }

    package var path: String
    package var format: String
    package var formatVersion: Int
    package var kind: String
    package var distillVersion: String
    package var created: String
    package var step: Int
    package var tokensSeen: Int
    package var threads: Int
    package var checksumAlgorithm: String
    package var model: Model
    package var parameters: Parameters
    package var optimizer: Optimizer?
    package var rngStreams: [String]
    package var dataCursor: Bool
    package var recipe: Recipe?
    package var tokenizer: Tokenizer?
    package var metadata: [String: String]
    package var baseChecksum: String?
    package var tensors: [TensorEntry]?

    /// Reads the checkpoint's attributes and dataset list, never its tensors.
    package init(url: URL, listTensors: Bool) throws {
        let summary = try readCheckpointSummary(at: url)
        let c = summary.config
        path = url.path
        format = CheckpointFormat.name
        formatVersion = summary.formatVersion
        kind = summary.kind.rawValue
        distillVersion = summary.distillVersion
        created = summary.created
        step = summary.step
        tokensSeen = summary.tokensSeen
        threads = summary.threads
        checksumAlgorithm = summary.checksumAlgorithm
        model = Model(
            layers: c.numHiddenLayers, hidden: c.hiddenSize, intermediate: c.intermediateSize,
            heads: c.numAttentionHeads, kvHeads: c.numKeyValueHeads, headDim: c.headDim, vocab: c.vocabSize,
            tiedEmbeddings: c.tieWordEmbeddings, maxPositions: c.maxPositionEmbeddings)
        let total = summary.parameters.reduce(0) { $0 + $1.elementCount }
        let embedding = summary.parameters.filter { ["model.embed_tokens.weight", "lm_head.weight"].contains($0.name) }
            .reduce(0) { $0 + $1.elementCount }
        parameters = Parameters(total: total, embedding: embedding, nonEmbedding: total - embedding)
        optimizer = summary.optimizerKind.map {
            Optimizer(kind: $0, step: summary.optimizerStep ?? 0, moments: summary.moments.keys.sorted())
        }
        rngStreams = summary.rngStreams
        dataCursor = summary.hasDataCursor
        recipe = summary.recipe.map { text in
            var name: String?
            if case .object(let o)? = try? JSONValue.parse(Array(text.utf8)), case .string(let n)? = o["name"] { name = n }
            return Recipe(bytes: text.utf8.count, name: name)
        }
        if let bytes = summary.tokenizerBytes {
            let text = try readCheckpointTokenizer(at: url)
            tokenizer = Tokenizer(bytes: bytes, vocabSize: text.flatMap(Self.vocabularySize))
        }
        metadata = summary.metadata
        baseChecksum = summary.baseChecksum
        if listTensors {
            var entries = summary.parameters.map { ("model/" + $0.name, $0) }
            for moment in summary.moments.keys.sorted() {
                entries += summary.moments[moment]!.map { ("optimizer/\(moment)/" + $0.name, $0) }
            }
            tensors = entries.map {
                TensorEntry(path: $0.0, shape: $0.1.shape, dtype: $0.1.dtype, checksum: hex($0.1.checksum))
            }
        }
    }

    /// Distinct token ids of a tokenizer.json's model vocabulary and added tokens; nil
    /// when the text is not shaped like one.
    static func vocabularySize(_ text: String) -> Int? {
        guard case .object(let root)? = try? JSONValue.parse(Array(text.utf8)), case .object(let model)? = root["model"],
            case .object(let vocab)? = model["vocab"]
        else { return nil }
        var ids = Set(vocab.entries.compactMap { entry -> Int? in if case .int(let id) = entry.value { id } else { nil } })
        if case .array(let added)? = root["added_tokens"] {
            for case .object(let token) in added { if case .int(let id)? = token["id"] { ids.insert(id) } }
        }
        return ids.count
    }
}
