// distill's checkpoint: one self-describing HDF5 file per committed training state.
// The layout, the checksum and the versioning policy are documented in
// docs/checkpoints.md; keep the two in step. The commit protocol (temporary file, fsync,
// rename, verify) is in CheckpointCommit.swift.
//
//   /                    attributes: format, format_version, distill_version, created,
//                        kind, step, tokens_seen, threads, checksum_algorithm, config
//                        (HF config.json text), base_checksum (adapters; reserved)
//   /model/<HF name>     float32, HF shape ([out, in] for linear weights)
//   /optimizer           attributes: kind, step
//   /optimizer/<moment>/<HF name>   float32, same shape as the parameter
//   /state/rng/<stream>  uint64 [4], xoshiro256** state
//   /state/data_cursor, /state/recipe, /state/tokenizer   uint8, UTF-8 text
//   /metadata            attributes: free-form strings
//
// Every dataset carries a `checksum` attribute: the CRC-32 (zlib's) of its little-endian
// bytes in row-major order.

import Core
import Formats
import Foundation
import JSON
import NN
import Platform

// MARK: - Contents

/// What a checkpoint holds: `kind` "model" is a whole model; "adapter" (reserved for
/// LoRA) holds adapter tensors only and names its base model by `baseChecksum`.
package enum CheckpointKind: String, Sendable, Hashable, CaseIterable {
    case model
    case adapter
}

/// An optimizer's state: per-parameter moment tensors keyed by moment name ("m", "v"
/// for AdamW) and then by the parameter's HF name.
package struct OptimizerState {
    /// "adamw", ...
    package var kind: String
    /// The optimizer's own step count (bias correction), which may differ from the
    /// trainer's step after a reset.
    package var step: Int
    package var moments: [String: [(name: String, tensor: Tensor)]]

    package init(kind: String, step: Int, moments: [String: [(name: String, tensor: Tensor)]]) {
        self.kind = kind
        self.step = step
        self.moments = moments
    }
}

package struct CheckpointContents {
    package var kind: CheckpointKind
    package var config: LlamaConfig
    /// HF parameter names in the order of `config.parameterShapes` for a model.
    package var parameters: [(name: String, tensor: Tensor)]
    package var optimizer: OptimizerState?
    /// Optimizer steps taken.
    package var step: Int
    /// Training tokens consumed so far.
    package var tokensSeen: Int
    /// Named random streams ("init", "data", "dropout", ...).
    package var rng: [String: RNG]
    /// The data pipeline's position, as JSON it reads back itself.
    package var dataCursor: String?
    /// The resolved recipe, JSON.
    package var recipe: String?
    /// The tokenizer, as HF tokenizer.json text.
    package var tokenizer: String?
    /// The thread count the run used; resuming bit-identically needs the same count.
    package var threads: Int
    /// Free-form strings (stage name, ...).
    package var metadata: [String: String]
    /// For `.adapter`: the base model's identity. Reserved; its format is defined with
    /// LoRA support.
    package var baseChecksum: String?
    /// When the file was written (ISO 8601 UTC); filled in when reading, ignored when
    /// writing (the time of writing is recorded).
    package var created: String?
    /// The distill version that wrote the file; filled in when reading, ignored when
    /// writing (the running version is recorded).
    package var distillVersion: String?

    package init(
        kind: CheckpointKind = .model, config: LlamaConfig, parameters: [(name: String, tensor: Tensor)],
        optimizer: OptimizerState? = nil, step: Int = 0, tokensSeen: Int = 0, rng: [String: RNG] = [:],
        dataCursor: String? = nil, recipe: String? = nil, tokenizer: String? = nil, threads: Int,
        metadata: [String: String] = [:], baseChecksum: String? = nil
    ) {
        self.kind = kind
        self.config = config
        self.parameters = parameters
        self.optimizer = optimizer
        self.step = step
        self.tokensSeen = tokensSeen
        self.rng = rng
        self.dataCursor = dataCursor
        self.recipe = recipe
        self.tokenizer = tokenizer
        self.threads = threads
        self.metadata = metadata
        self.baseChecksum = baseChecksum
        self.created = nil
        self.distillVersion = nil
    }
}

// MARK: - Format constants

package enum CheckpointFormat {
    package static let name = "distill-checkpoint"
    /// Bumped whenever a reader of the previous version would misread a new file.
    package static let version = 1
    package static let checksumAlgorithm = "crc32"

    static let modelGroup = "model"
    static let optimizerGroup = "optimizer"
    static let rngGroup = "state/rng"
    static let dataCursorPath = "state/data_cursor"
    static let recipePath = "state/recipe"
    static let tokenizerPath = "state/tokenizer"
    static let metadataGroup = "metadata"
    static let checksumAttribute = "checksum"
    /// CRC32 of every attribute of the root, optimizer and metadata groups (config, step,
    /// kind, tokens seen, base checksum, fingerprint, ...): datasets carry their own
    /// checksums, and a flipped bit in an attribute would otherwise change the model or a
    /// resume silently. Absent in files written before it (then not checked).
    static let attributesChecksumAttribute = "attributes_crc32"
}

// MARK: - Writing the file (no commit protocol; see CheckpointCommit.swift)

/// Checks `contents` before anything is written: names HDF5 can hold, shapes that match
/// the config, moments shaped like their parameters.
func validate(_ contents: CheckpointContents, path: String) throws {
    func invalid(_ problem: String) -> CheckpointError {
        CheckpointError(.invalidContents, path: path, problem: problem, fix: "nothing was written")
    }
    func checkName(_ name: String, what: String) throws {
        guard !name.isEmpty, !name.contains("/"), name != ".", name != "..", !name.utf8.contains(0) else {
            throw invalid("\(what) name '\(name)' cannot be an HDF5 link name (empty, '/', '.', '..' or NUL)")
        }
    }
    let configProblems = contents.config.problems()
    guard configProblems.isEmpty else { throw invalid("invalid config: " + configProblems.joined(separator: "; ")) }
    guard contents.step >= 0, contents.tokensSeen >= 0, contents.threads >= 1 else {
        throw invalid(
            "step (\(contents.step)) and tokens_seen (\(contents.tokensSeen)) must be >= 0 and threads "
                + "(\(contents.threads)) >= 1")
    }
    var shapes: [String: [Int]] = [:]
    for (name, tensor) in contents.parameters {
        try checkName(name, what: "parameter")
        guard shapes.updateValue(tensor.shape, forKey: name) == nil else {
            throw invalid("parameter \(name) appears twice")
        }
    }
    if contents.kind == .model {
        let found = contents.parameters.map { (name: $0.name, shape: $0.tensor.shape, isFloat32: true) }
        if let problem = shapeProblems(found: found, config: contents.config) { throw invalid(problem) }
    }
    if let optimizer = contents.optimizer {
        guard optimizer.step >= 0 else { throw invalid("optimizer step must be >= 0, got \(optimizer.step)") }
        for (moment, tensors) in optimizer.moments {
            try checkName(moment, what: "optimizer moment")
            var seen = Set<String>()
            for (name, tensor) in tensors {
                guard seen.insert(name).inserted else {
                    throw invalid("optimizer moment \(moment): \(name) appears twice")
                }
                guard let shape = shapes[name] else {
                    throw invalid("optimizer moment \(moment) has \(name), which is not a parameter")
                }
                guard shape == tensor.shape else {
                    throw invalid(
                        "optimizer moment \(moment)/\(name) has shape \(tensor.shape), the parameter \(shape)")
                }
            }
        }
    }
    for name in contents.rng.keys { try checkName(name, what: "RNG stream") }
    for (name, value) in contents.metadata {
        guard !name.isEmpty, !name.utf8.contains(0), !value.utf8.contains(0) else {
            throw invalid("metadata key '\(name)' or its value is empty or contains NUL")
        }
    }
    for text in [contents.recipe, contents.dataCursor, contents.tokenizer, contents.baseChecksum] {
        if let text, text.utf8.contains(0) { throw invalid("a text field contains a NUL byte") }
    }
}

/// The HF config.json text of `config` (with `model_type` and `architectures`, so
/// transformers reads it as is), keys sorted.
package func configJSON(_ config: LlamaConfig) throws -> String {
    let encoded = try JSONEncoder().encode(config)
    guard var object = try JSONSerialization.jsonObject(with: encoded) as? [String: Any] else {
        preconditionFailure("LlamaConfig must encode as a JSON object")
    }
    object["model_type"] = "llama"
    object["architectures"] = ["LlamaForCausalLM"]
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
    return String(decoding: data, as: UTF8.self)
}

/// CRC32 over every attribute of the root, optimizer and metadata groups but the checksum
/// itself, as `object/name=value` lines in sorted order (`attributesChecksumAttribute`).
func attributesChecksum(_ file: HDF5File) throws -> UInt32 {
    var lines: [String] = []
    for object in ["/", CheckpointFormat.optimizerGroup, CheckpointFormat.metadataGroup] {
        guard try object == "/" || file.objectKind(at: object) == .group else { continue }
        for name in try file.attributeNames(at: object).sorted() where name != CheckpointFormat.attributesChecksumAttribute {
            let value: String
            switch try file.attribute(name, at: object) {
            case .int(let i): value = "int:\(i)"
            case .double(let d): value = "double:\(d.bitPattern)"
            case .string(let s): value = "string:\(s.utf8.count):" + s
            }
            lines.append("\(object)/\(name)=\(value)")
        }
    }
    return CRC32.checksum(Array(lines.joined(separator: "\n").utf8))
}

/// Writes `contents` into a new HDF5 file at `path` and closes it (no fsync: the
/// commit protocol does that).
func writeCheckpointFile(_ contents: CheckpointContents, path: String) throws {
    do {
        let file = try HDF5File.create(path: path, userBlock: HDF5Seal.blockSize)
        let created = ISO8601DateFormatter().string(from: Date())
        try file.setAttribute("format", .string(CheckpointFormat.name))
        try file.setAttribute("format_version", .int(Int64(CheckpointFormat.version)))
        try file.setAttribute("distill_version", .string(DistillVersion.string))
        try file.setAttribute("created", .string(created))
        try file.setAttribute("kind", .string(contents.kind.rawValue))
        try file.setAttribute("step", .int(Int64(contents.step)))
        try file.setAttribute("tokens_seen", .int(Int64(contents.tokensSeen)))
        try file.setAttribute("threads", .int(Int64(contents.threads)))
        try file.setAttribute("checksum_algorithm", .string(CheckpointFormat.checksumAlgorithm))
        try file.setAttribute("config", .string(try configJSON(contents.config)))
        if let base = contents.baseChecksum { try file.setAttribute("base_checksum", .string(base)) }

        func writeTensor(_ tensor: Tensor, to path: String) throws {
            let values = UnsafeBufferPointer(tensor.storage.buffer)
            try file.write(values, shape: tensor.shape, to: path)
            try file.setAttribute(
                CheckpointFormat.checksumAttribute, .int(Int64(CRC32.checksum(values))), at: path)
        }
        func writeText(_ text: String, to path: String) throws {
            let bytes = Array(text.utf8)
            try file.writeBytes(bytes, to: path)
            try file.setAttribute(CheckpointFormat.checksumAttribute, .int(Int64(CRC32.checksum(bytes))), at: path)
        }

        try file.createGroup(CheckpointFormat.modelGroup)
        for (name, tensor) in contents.parameters {
            try writeTensor(tensor, to: CheckpointFormat.modelGroup + "/" + name)
        }
        if let optimizer = contents.optimizer {
            try file.createGroup(CheckpointFormat.optimizerGroup)
            try file.setAttribute("kind", .string(optimizer.kind), at: CheckpointFormat.optimizerGroup)
            try file.setAttribute("step", .int(Int64(optimizer.step)), at: CheckpointFormat.optimizerGroup)
            for (moment, tensors) in optimizer.moments.sorted(by: { $0.key < $1.key }) {
                let group = CheckpointFormat.optimizerGroup + "/" + moment
                try file.createGroup(group)
                for (name, tensor) in tensors { try writeTensor(tensor, to: group + "/" + name) }
            }
        }
        try file.createGroup(CheckpointFormat.rngGroup)
        for (name, rng) in contents.rng.sorted(by: { $0.key < $1.key }) {
            let path = CheckpointFormat.rngGroup + "/" + name
            try file.write(rng.state, shape: [rng.state.count], to: path)
            let checksum = rng.state.withUnsafeBufferPointer { CRC32.checksum($0) }
            try file.setAttribute(CheckpointFormat.checksumAttribute, .int(Int64(checksum)), at: path)
        }
        if let cursor = contents.dataCursor { try writeText(cursor, to: CheckpointFormat.dataCursorPath) }
        if let recipe = contents.recipe { try writeText(recipe, to: CheckpointFormat.recipePath) }
        if let tokenizer = contents.tokenizer { try writeText(tokenizer, to: CheckpointFormat.tokenizerPath) }
        try file.createGroup(CheckpointFormat.metadataGroup)
        for (key, value) in contents.metadata.sorted(by: { $0.key < $1.key }) {
            try file.setAttribute(key, .string(value), at: CheckpointFormat.metadataGroup)
        }
        try file.setAttribute(
            CheckpointFormat.attributesChecksumAttribute, .int(Int64(try attributesChecksum(file))))
        try file.close()
        try HDF5Seal.seal(path: path)
    } catch let error as HDF5Error {
        throw CheckpointError.from(error, path: path, reading: false)
    }
}

// MARK: - Reading

/// A dataset as the file declares it, without its data.
package struct CheckpointTensorInfo: Sendable, Hashable, Codable {
    /// The HF name (or stream name for RNG states).
    package var name: String
    package var shape: [Int]
    package var dtype: String
    /// The recorded CRC-32.
    package var checksum: UInt32

    package var elementCount: Int { shape.reduce(1, *) }
}

/// What `distill inspect` shows: everything but the tensors' data.
package struct CheckpointSummary: Sendable {
    package var path: String
    package var formatVersion: Int
    package var kind: CheckpointKind
    package var distillVersion: String
    package var created: String
    package var step: Int
    package var tokensSeen: Int
    package var threads: Int
    package var checksumAlgorithm: String
    package var config: LlamaConfig
    package var configJSON: String
    package var baseChecksum: String?
    /// In `config.parameterShapes` order for a model, sorted for an adapter.
    package var parameters: [CheckpointTensorInfo]
    package var optimizerKind: String?
    package var optimizerStep: Int?
    /// Moment name → tensors, in parameter order.
    package var moments: [String: [CheckpointTensorInfo]]
    package var rngStreams: [String]
    package var hasDataCursor: Bool
    package var recipe: String?
    package var tokenizerBytes: Int?
    package var metadata: [String: String]
}

/// Reads a checkpoint's description (attributes, shapes, recorded checksums and the
/// recipe text) without loading or verifying tensors. Validates the format, version and
/// every tensor's shape against the config.
package func readCheckpointSummary(at url: URL) throws -> CheckpointSummary {
    let reader = try CheckpointReader(path: url.path)
    return try reader.summary()
}

/// Reads and validates a whole checkpoint. With `verify`, every dataset's checksum is
/// checked and a mismatch names the tensor.
package func readCheckpoint(at url: URL, verify: Bool = true) throws -> CheckpointContents {
    let reader = try CheckpointReader(path: url.path)
    return try reader.contents(verify: verify)
}

/// Reads the tokenizer.json text stored in a checkpoint, nil when there is none.
package func readCheckpointTokenizer(at url: URL, verify: Bool = true) throws -> String? {
    let reader = try CheckpointReader(path: url.path)
    _ = try reader.header()
    return try reader.text(CheckpointFormat.tokenizerPath, verify: verify)
}

/// Validates a checkpoint completely (format, shapes, every checksum) without keeping
/// its tensors: the commit protocol's read-back.
package func verifyCheckpoint(at url: URL) throws {
    let reader = try CheckpointReader(path: url.path)
    try reader.verifyAll()
}

/// Problems of the model tensors `found` against the config's parameter list: missing,
/// unexpected, mis-shaped and non-float32 tensors, listed together; nil when none.
func shapeProblems(found: [(name: String, shape: [Int], isFloat32: Bool)], config: LlamaConfig) -> String? {
    let expected = config.parameterShapes
    let expectedShapes = Dictionary(uniqueKeysWithValues: expected.map { ($0.name, $0.shape) })
    let foundNames = Set(found.map(\.name))
    func list(_ items: [String]) -> String {
        items.count <= 8
            ? items.joined(separator: ", ") : items.prefix(8).joined(separator: ", ") + " and \(items.count - 8) more"
    }
    var parts: [String] = []
    let missing = expected.map(\.name).filter { !foundNames.contains($0) }
    if !missing.isEmpty { parts.append("missing: " + list(missing)) }
    let unexpected = found.map(\.name).filter { expectedShapes[$0] == nil }
    if !unexpected.isEmpty { parts.append("unexpected: " + list(unexpected)) }
    let misShaped = found.compactMap { item -> String? in
        guard let shape = expectedShapes[item.name], shape != item.shape else { return nil }
        return "\(item.name) is \(item.shape), the config needs \(shape)"
    }
    if !misShaped.isEmpty { parts.append("wrong shape: " + list(misShaped)) }
    let wrongType = found.filter { !$0.isFloat32 }.map(\.name)
    if !wrongType.isEmpty { parts.append("not float32: " + list(wrongType)) }
    guard !parts.isEmpty else { return nil }
    let c = config
    return "model tensors do not match the config (\(c.numHiddenLayers) layers, hidden \(c.hiddenSize), "
        + "heads \(c.numAttentionHeads)/\(c.numKeyValueHeads), vocab \(c.vocabSize), tied "
        + "\(c.tieWordEmbeddings)): " + parts.joined(separator: "; ")
}

/// The root attributes.
struct CheckpointHeader {
    var formatVersion: Int
    var kind: CheckpointKind
    var distillVersion: String
    var created: String
    var step: Int
    var tokensSeen: Int
    var threads: Int
    var checksumAlgorithm: String
    var config: LlamaConfig
    var configJSON: String
    var baseChecksum: String?
}

/// One open checkpoint being read. Every HDF5 failure becomes a `CheckpointError`
/// naming the file.
final class CheckpointReader {
    let path: String
    let file: HDF5File
    private var cachedHeader: CheckpointHeader?

    init(path: String) throws {
        self.path = path
        do {
            file = try HDF5File.open(path: path)
        } catch let error as HDF5Error {
            throw CheckpointError.from(error, path: path, reading: true)
        }
    }

    /// Runs `body`, turning HDF5 errors into checkpoint errors.
    @discardableResult
    private func hdf5<R>(_ body: () throws -> R) throws -> R {
        do {
            return try body()
        } catch let error as HDF5Error {
            throw CheckpointError.from(error, path: path, reading: true)
        }
    }

    private func malformed(_ problem: String) -> CheckpointError {
        CheckpointError(
            .malformed, path: path, problem: problem,
            fix: "the file is damaged or was not written by distill; restore it from a copy, or remove it and rerun the stage that wrote it")
    }

    private func intAttribute(_ name: String, at object: String = "/", minimum: Int = 0) throws -> Int {
        guard try hdf5({ try file.hasAttribute(name, at: object) }) else {
            throw malformed("attribute '\(name)' of \(object) is missing")
        }
        guard case .int(let value) = try hdf5({ try file.attribute(name, at: object) }), let int = Int(exactly: value),
            int >= minimum
        else { throw malformed("attribute '\(name)' of \(object) is not an integer >= \(minimum)") }
        return int
    }

    private func stringAttribute(_ name: String, at object: String = "/") throws -> String {
        guard try hdf5({ try file.hasAttribute(name, at: object) }) else {
            throw malformed("attribute '\(name)' of \(object) is missing")
        }
        guard case .string(let value) = try hdf5({ try file.attribute(name, at: object) }) else {
            throw malformed("attribute '\(name)' of \(object) is not a string")
        }
        return value
    }

    func header() throws -> CheckpointHeader {
        if let cachedHeader { return cachedHeader }
        guard try hdf5({ try file.hasAttribute("format") }),
            case .string(let format) = try hdf5({ try file.attribute("format") }), format == CheckpointFormat.name
        else {
            throw CheckpointError(
                .notCheckpoint, path: path,
                problem:
                    "an HDF5 file but not a distill checkpoint (no root attribute format=\"\(CheckpointFormat.name)\")",
                fix: "pass a checkpoint written by distill; Hugging Face weights are imported, not opened")
        }
        let version = try intAttribute("format_version", minimum: 1)
        guard version <= CheckpointFormat.version else {
            let writer = (try? stringAttribute("distill_version")) ?? "unknown"
            throw CheckpointError(
                .newerVersion, path: path,
                problem: "written by a newer distill (\(writer), checkpoint format version \(version)); this "
                    + "distill \(DistillVersion.string) reads format versions up to \(CheckpointFormat.version)",
                fix: "upgrade distill")
        }
        let kindName = try stringAttribute("kind")
        guard let kind = CheckpointKind(rawValue: kindName) else {
            throw malformed("unknown kind '\(kindName)' (expected model or adapter)")
        }
        let algorithm = try stringAttribute("checksum_algorithm")
        guard algorithm == CheckpointFormat.checksumAlgorithm else {
            throw malformed(
                "unknown checksum_algorithm '\(algorithm)' (expected \(CheckpointFormat.checksumAlgorithm))")
        }
        let configText = try stringAttribute("config")
        let config: LlamaConfig
        do {
            config = try JSONDecoder().decode(LlamaConfig.self, from: Data(configText.utf8))
        } catch {
            throw malformed("attribute 'config' is not a Llama config.json: \(error)")
        }
        let problems = config.problems()
        guard problems.isEmpty else { throw malformed("invalid model config: " + problems.joined(separator: "; ")) }
        let base = try hdf5({ try file.hasAttribute("base_checksum") }) ? try stringAttribute("base_checksum") : nil
        if try hdf5({ try file.hasAttribute(CheckpointFormat.attributesChecksumAttribute) }) {
            let recorded = UInt32(truncatingIfNeeded: try intAttribute(CheckpointFormat.attributesChecksumAttribute))
            let actual = try hdf5({ try attributesChecksum(file) })
            if actual != recorded { throw checksumMismatch("attributes of /, optimizer and metadata", recorded: recorded, actual: actual) }
        }
        let header = CheckpointHeader(
            formatVersion: version, kind: kind, distillVersion: try stringAttribute("distill_version"),
            created: try stringAttribute("created"), step: try intAttribute("step"),
            tokensSeen: try intAttribute("tokens_seen"), threads: try intAttribute("threads", minimum: 1),
            checksumAlgorithm: algorithm, config: config, configJSON: configText, baseChecksum: base)
        cachedHeader = header
        return header
    }

    /// Dataset paths grouped by role, after the header has been validated.
    struct Layout {
        var parameters: [CheckpointTensorInfo]
        var optimizer: (kind: String, step: Int)?
        var moments: [String: [CheckpointTensorInfo]]
        var rng: [CheckpointTensorInfo]
    }

    private func info(_ object: String, name: String) throws -> CheckpointTensorInfo {
        let shape = try hdf5({ try file.shape(of: object) })
        let dtype = try hdf5({ try file.dtype(of: object) })
        guard try hdf5({ try file.hasAttribute(CheckpointFormat.checksumAttribute, at: object) }),
            case .int(let value) = try hdf5({ try file.attribute(CheckpointFormat.checksumAttribute, at: object) }),
            let checksum = UInt32(exactly: value)
        else { throw malformed("dataset /\(object) has no valid 'checksum' attribute (a 32-bit CRC)") }
        return CheckpointTensorInfo(name: name, shape: shape, dtype: dtype.description, checksum: checksum)
    }

    func layout() throws -> Layout {
        let header = try header()
        guard try hdf5({ try file.objectKind(at: CheckpointFormat.modelGroup) }) == .group else {
            throw malformed("group /\(CheckpointFormat.modelGroup) is missing")
        }
        let names = try hdf5({ try file.datasetNames() })
        var parameters: [String: CheckpointTensorInfo] = [:]
        var moments: [String: [String: CheckpointTensorInfo]] = [:]
        var rng: [CheckpointTensorInfo] = []
        for object in names {
            let parts = object.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            switch (parts.first, parts.count) {
            case (CheckpointFormat.modelGroup, 2):
                parameters[parts[1]] = try info(object, name: parts[1])
            case (CheckpointFormat.optimizerGroup, 3):
                moments[parts[1], default: [:]][parts[2]] = try info(object, name: parts[2])
            case ("state", 3) where parts[1] == "rng":
                rng.append(try info(object, name: parts[2]))
            case (CheckpointFormat.modelGroup, _), (CheckpointFormat.optimizerGroup, _):
                throw malformed("unexpected dataset /\(object)")
            default:
                continue  // state blobs are read by path; anything else is ignored
            }
        }

        // Parameters: a model must match its config exactly; an adapter is checked by
        // the LoRA code that knows its ranks.
        let ordered: [CheckpointTensorInfo]
        switch header.kind {
        case .model:
            let found = parameters.values.sorted { $0.name < $1.name }.map {
                (name: $0.name, shape: $0.shape, isFloat32: $0.dtype == "float32")
            }
            if let problem = shapeProblems(found: found, config: header.config) {
                throw CheckpointError(
                    .shapeMismatch, path: path, problem: problem,
                    fix: "the file was written for a different model, or is damaged")
            }
            ordered = header.config.parameterShapes.map { parameters[$0.name]! }
        case .adapter:
            ordered = parameters.values.sorted { $0.name < $1.name }
            for item in ordered where item.dtype != "float32" {
                throw malformed("/model/\(item.name) is \(item.dtype), expected float32")
            }
        }

        var optimizer: (kind: String, step: Int)?
        if try hdf5({ try file.objectKind(at: CheckpointFormat.optimizerGroup) }) == .group {
            optimizer = (
                try stringAttribute("kind", at: CheckpointFormat.optimizerGroup),
                try intAttribute("step", at: CheckpointFormat.optimizerGroup)
            )
        } else if !moments.isEmpty {
            throw malformed("optimizer moments without an /optimizer group")
        }
        var orderedMoments: [String: [CheckpointTensorInfo]] = [:]
        for (moment, tensors) in moments {
            var problems: [String] = []
            for (name, tensor) in tensors.sorted(by: { $0.key < $1.key }) {
                guard let parameter = parameters[name] else {
                    problems.append("\(name) is not a parameter")
                    continue
                }
                if tensor.shape != parameter.shape {
                    problems.append("\(name) is \(tensor.shape), the parameter \(parameter.shape)")
                }
                if tensor.dtype != "float32" { problems.append("\(name) is \(tensor.dtype), not float32") }
            }
            guard problems.isEmpty else {
                throw CheckpointError(
                    .shapeMismatch, path: path,
                    problem: "optimizer moment '\(moment)' does not match the parameters: "
                        + problems.joined(separator: "; "),
                    fix: "the file is damaged or was not written by distill")
            }
            orderedMoments[moment] = ordered.compactMap { tensors[$0.name] }
        }
        for stream in rng where stream.dtype != "uint64" || stream.shape != [4] {
            throw malformed(
                "RNG stream /\(CheckpointFormat.rngGroup)/\(stream.name) is \(stream.dtype) \(stream.shape), expected uint64 [4]"
            )
        }
        return Layout(
            parameters: ordered, optimizer: optimizer, moments: orderedMoments, rng: rng.sorted { $0.name < $1.name })
    }

    private func checksumMismatch(_ object: String, recorded: UInt32, actual: UInt32) -> CheckpointError {
        CheckpointError(
            .checksumMismatch, path: path,
            problem: "checksum mismatch in /\(object): recorded crc32 \(hex(recorded)), data has \(hex(actual))",
            fix: "the file is damaged; restore it from a copy, or remove it and rerun the stage that wrote it")
    }

    /// Reads a float32 dataset into a new tensor, checking its checksum.
    func tensor(
        _ object: String, info: CheckpointTensorInfo, verify: Bool, in arena: HugePageArena? = nil
    ) throws -> Tensor {
        let tensor = Tensor.empty(info.shape, in: arena)
        try hdf5({ try file.read(from: object, into: tensor.storage.buffer) })
        if verify {
            let actual = CRC32.checksum(UnsafeBufferPointer(tensor.storage.buffer))
            if actual != info.checksum { throw checksumMismatch(object, recorded: info.checksum, actual: actual) }
        }
        return tensor
    }

    func rngState(_ info: CheckpointTensorInfo, verify: Bool) throws -> RNG {
        let object = CheckpointFormat.rngGroup + "/" + info.name
        let state = try hdf5({ try file.read(UInt64.self, from: object) }).values
        if verify {
            let actual = state.withUnsafeBufferPointer { CRC32.checksum($0) }
            if actual != info.checksum { throw checksumMismatch(object, recorded: info.checksum, actual: actual) }
        }
        guard state.contains(where: { $0 != 0 }) else {
            throw malformed("RNG stream /\(object) is all zeros, which xoshiro256** cannot leave")
        }
        var rng = RNG(seed: 0)
        rng.state = state
        return rng
    }

    /// A UTF-8 text blob, nil when absent.
    func text(_ object: String, verify: Bool) throws -> String? {
        guard try hdf5({ try file.objectKind(at: object) }) != nil else { return nil }
        let info = try info(object, name: object)
        guard info.dtype == "uint8", info.shape.count == 1 else {
            throw malformed(
                "/\(object) is \(info.dtype) \(info.shape), expected a one-dimensional uint8 (UTF-8) dataset")
        }
        let bytes = try hdf5({ try file.readBytes(object) })
        if verify {
            let actual = CRC32.checksum(bytes)
            if actual != info.checksum { throw checksumMismatch(object, recorded: info.checksum, actual: actual) }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw malformed("/\(object) is not valid UTF-8")
        }
        return text
    }

    func metadata() throws -> [String: String] {
        guard try hdf5({ try file.objectKind(at: CheckpointFormat.metadataGroup) }) == .group else { return [:] }
        var metadata: [String: String] = [:]
        for key in try hdf5({ try file.attributeNames(at: CheckpointFormat.metadataGroup) }) {
            metadata[key] = try stringAttribute(key, at: CheckpointFormat.metadataGroup)
        }
        return metadata
    }

    /// Refuses to load tensors declaring more bytes than `file.maxReadBytes` (the
    /// machine's memory) before allocating any of them.
    private func checkLoadable(_ tensors: [CheckpointTensorInfo], all: Bool) throws {
        var total = 0
        for info in tensors {
            let (bytes, overflow) = info.elementCount.multipliedReportingOverflow(by: MemoryLayout<Float>.stride)
            let (sum, overflowSum) = (all ? total : 0).addingReportingOverflow(bytes)
            guard !overflow, !overflowSum else {
                throw CheckpointError(
                    .malformed, path: path, problem: "the tensors' declared sizes overflow; refusing to allocate them",
                    fix: "the file is damaged")
            }
            guard sum <= file.maxReadBytes else {
                throw UserError(
                    path: path,
                    problem: "loading its tensors needs at least \(MemoryBudget.format(Double(sum))), more than "
                        + "\(MemoryBudget.limit.source) (\(MemoryBudget.format(Double(file.maxReadBytes))))",
                    fix: "use a smaller model, or a machine with more memory", kind: .usage)
            }
            total = sum
        }
    }

    func contents(verify: Bool) throws -> CheckpointContents {
        let header = try header()
        let layout = try layout()
        try checkLoadable(layout.parameters + layout.moments.values.flatMap { $0 }, all: true)
        let arena = HugePageArena()  // the weights in file order, on huge pages (HugePageArena)
        let parameters = try layout.parameters.map { info in
            (
                name: info.name,
                tensor: try tensor(CheckpointFormat.modelGroup + "/" + info.name, info: info, verify: verify, in: arena)
            )
        }
        var optimizer: OptimizerState?
        if let state = layout.optimizer {
            var moments: [String: [(name: String, tensor: Tensor)]] = [:]
            for (moment, infos) in layout.moments {
                let group = CheckpointFormat.optimizerGroup + "/" + moment
                moments[moment] = try infos.map { info in
                    (name: info.name, tensor: try tensor(group + "/" + info.name, info: info, verify: verify))
                }
            }
            optimizer = OptimizerState(kind: state.kind, step: state.step, moments: moments)
        }
        var rng: [String: RNG] = [:]
        for info in layout.rng { rng[info.name] = try rngState(info, verify: verify) }
        var contents = CheckpointContents(
            kind: header.kind, config: header.config, parameters: parameters, optimizer: optimizer, step: header.step,
            tokensSeen: header.tokensSeen, rng: rng,
            dataCursor: try text(CheckpointFormat.dataCursorPath, verify: verify),
            recipe: try text(CheckpointFormat.recipePath, verify: verify),
            tokenizer: try text(CheckpointFormat.tokenizerPath, verify: verify), threads: header.threads,
            metadata: try metadata(), baseChecksum: header.baseChecksum)
        contents.created = header.created
        contents.distillVersion = header.distillVersion
        return contents
    }

    func summary() throws -> CheckpointSummary {
        let header = try header()
        let layout = try layout()
        var tokenizerBytes: Int?
        if try hdf5({ try file.objectKind(at: CheckpointFormat.tokenizerPath) }) != nil {
            tokenizerBytes = try hdf5({ try file.shape(of: CheckpointFormat.tokenizerPath) }).reduce(1, *)
        }
        return CheckpointSummary(
            path: path, formatVersion: header.formatVersion, kind: header.kind, distillVersion: header.distillVersion,
            created: header.created, step: header.step, tokensSeen: header.tokensSeen, threads: header.threads,
            checksumAlgorithm: header.checksumAlgorithm, config: header.config, configJSON: header.configJSON,
            baseChecksum: header.baseChecksum, parameters: layout.parameters, optimizerKind: layout.optimizer?.kind,
            optimizerStep: layout.optimizer?.step, moments: layout.moments, rngStreams: layout.rng.map(\.name),
            hasDataCursor: try hdf5({ try file.objectKind(at: CheckpointFormat.dataCursorPath) }) != nil,
            recipe: try text(CheckpointFormat.recipePath, verify: true), tokenizerBytes: tokenizerBytes,
            metadata: try metadata())
    }

    /// Checks every dataset's checksum through one scratch buffer, keeping nothing.
    func verifyAll() throws {
        _ = try header()
        let layout = try layout()
        var tensors = layout.parameters.map { (CheckpointFormat.modelGroup + "/" + $0.name, $0) }
        for (moment, infos) in layout.moments {
            tensors += infos.map { (CheckpointFormat.optimizerGroup + "/" + moment + "/" + $0.name, $0) }
        }
        try checkLoadable(tensors.map(\.1), all: false)
        let largest = tensors.map { $0.1.elementCount }.max() ?? 0
        let scratch = UnsafeMutableBufferPointer<Float>.allocate(capacity: largest)
        defer { scratch.deallocate() }
        for (object, info) in tensors {
            let buffer = UnsafeMutableBufferPointer(rebasing: scratch[0..<info.elementCount])
            try hdf5({ try file.read(from: object, into: buffer) })
            let actual = CRC32.checksum(UnsafeBufferPointer(buffer))
            if actual != info.checksum { throw checksumMismatch(object, recorded: info.checksum, actual: actual) }
        }
        for info in layout.rng { _ = try rngState(info, verify: true) }
        for object in [CheckpointFormat.dataCursorPath, CheckpointFormat.recipePath, CheckpointFormat.tokenizerPath] {
            _ = try text(object, verify: true)
        }
        _ = try metadata()
    }
}

/// "0x1a2b3c4d".
package func hex(_ checksum: UInt32) -> String { "0x" + hexDigits(checksum) }
