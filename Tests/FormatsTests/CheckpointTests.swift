// Tests for the checkpoint layer: the CRC-32, the round trip of every field, the
// refusals (damaged tensor, wrong shapes, newer format, not a checkpoint), the commit
// protocol's file dance, the sweep of orphaned temporaries and the run-directory lock.
// The kill -9 test lives in Tests/CLITests (it needs the distill binary).

import Core
import Foundation
import JSON
import NN
import Platform
import Testing

@testable import Formats
@testable import ModelIO

// MARK: - Helpers

private func withTemporaryDirectory<R>(_ body: (URL) throws -> R) throws -> R {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("distill-ckpt-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    return try body(directory)
}

/// Two layers, grouped-query attention, untied head: every kind of parameter.
private let tinyConfig = LlamaConfig(
    vocabSize: 11, hiddenSize: 8, intermediateSize: 12, numHiddenLayers: 2, numAttentionHeads: 2,
    numKeyValueHeads: 1, tieWordEmbeddings: false, bosTokenId: 1, eosTokenId: 2)

private func randomTensors(_ config: LlamaConfig, rng: inout RNG) -> [(name: String, tensor: Tensor)] {
    config.parameterShapes.map { (name: $0.name, tensor: Tensor.randn($0.shape, rng: &rng)) }
}

private func sampleContents(step: Int = 7, seed: UInt64 = 1) -> CheckpointContents {
    var rng = RNG(seed: seed)
    let parameters = randomTensors(tinyConfig, rng: &rng)
    // Values whose bits must survive exactly: NaN payload, -0, infinities, subnormals.
    let special: [Float] = [
        .nan, Float(bitPattern: 0x7FC0_1234), -0.0, .infinity, -.infinity, .leastNonzeroMagnitude,
        .greatestFiniteMagnitude,
        1,
    ]
    parameters[0].tensor.data.update(from: special, count: special.count)
    let m = parameters.map { (name: $0.name, tensor: Tensor.randn($0.tensor.shape, rng: &rng)) }
    let v = parameters.map { (name: $0.name, tensor: Tensor.uniform($0.tensor.shape, low: 0, high: 1, rng: &rng)) }
    var data = RNG(seed: 99)
    _ = data.next()
    return CheckpointContents(
        config: tinyConfig, parameters: parameters,
        optimizer: OptimizerState(kind: "adamw", step: step - 1, moments: ["m": m, "v": v]), step: step,
        tokensSeen: 123_456_789_012, rng: ["init": RNG(seed: 5), "data": data, "dropout-é": RNG(seed: 6)],
        dataCursor: #"{"file":"corpus.jsonl","offset":4096,"epoch":1}"#,
        recipe: #"{"name":"tiny-📚","stages":[{"pretrain":{"lr":0.001}}]}"#,
        tokenizer: #"{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ç":2},"merges":[]},"added_tokens":[]}"#,
        threads: 2, metadata: ["stage": "pretrain", "note": "ünïcødé ✓"])
}

private func bits(_ tensor: Tensor) -> [UInt32] { tensor.values.map(\.bitPattern) }

private func expectSameTensors(
    _ a: [(name: String, tensor: Tensor)], _ b: [(name: String, tensor: Tensor)],
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(a.map(\.name) == b.map(\.name), sourceLocation: sourceLocation)
    for (x, y) in zip(a, b) {
        #expect(x.tensor.shape == y.tensor.shape, "\(x.name)", sourceLocation: sourceLocation)
        #expect(bits(x.tensor) == bits(y.tensor), "\(x.name)", sourceLocation: sourceLocation)
    }
}

/// Runs `body`, expecting a CheckpointError of `kind`, and returns it.
@discardableResult
private func expectCheckpointError(
    _ kind: CheckpointError.Kind, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) -> CheckpointError? {
    do {
        try body()
        Issue.record("expected CheckpointError.\(kind), nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as CheckpointError {
        #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected CheckpointError.\(kind), got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// Flips one byte of `tensor`'s data inside the file, found by its byte pattern.
private func corrupt(_ tensor: Tensor, inFileAt url: URL) throws {
    let bytes = try Data(contentsOf: url)
    let pattern = Data(bytes: tensor.data, count: min(tensor.count, 8) * 4)
    let range = try #require(bytes.range(of: pattern), "tensor bytes not found in \(url.path)")
    let handle = try FileHandle(forUpdating: url)
    defer { try? handle.close() }
    try handle.seek(toOffset: UInt64(range.lowerBound + 1))
    try handle.write(contentsOf: [bytes[range.lowerBound + 1] ^ 0x40])
}

/// Removes a checkpoint's seal (both copies of its magic), leaving what a distill from
/// before seals wrote, so the checks behind the seal can be exercised.
private func unseal(_ url: URL) throws {
    let handle = try FileHandle(forUpdating: url)
    defer { try? handle.close() }
    for offset in [0, HDF5Seal.blockSize - 8] {
        try handle.seek(toOffset: UInt64(offset))
        try handle.write(contentsOf: [UInt8](repeating: 0, count: 8))
    }
}

private func directoryListing(_ directory: URL) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
}

// MARK: - CRC-32

@Test func crc32MatchesTheStandardCheckValue() {
    // The CRC catalogue's check value of CRC-32/ISO-HDLC (zlib.crc32(b"123456789")).
    #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
    #expect(CRC32.checksum([]) == 0)
    #expect(CRC32.checksum(Array("The quick brown fox jumps over the lazy dog".utf8)) == 0x414F_A339)
}

@Test func crc32SlicingAgreesWithTheBitwiseDefinition() {
    var rng = RNG(seed: 3)
    let bytes = (0..<1000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    func bitwise(_ data: ArraySlice<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in data {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }
    for length in [0, 1, 7, 8, 9, 15, 16, 17, 63, 999, 1000] {
        #expect(CRC32.checksum(Array(bytes[0..<length])) == bitwise(bytes[0..<length]), "length \(length)")
    }
    // Continuing from a previous result equals checksumming the whole.
    let whole = CRC32.checksum(bytes)
    let first = bytes[0..<333].withUnsafeBytes { CRC32.checksum($0) }
    let both = bytes[333...].withUnsafeBytes { CRC32.checksum($0, continuing: first) }
    #expect(both == whole)
}

// MARK: - Round trip

@Test func everyFieldRoundTripsBitExactly() throws {
    try withTemporaryDirectory { directory in
        let url = directory.appendingPathComponent("ckpt.h5")
        let original = sampleContents()
        try writeCheckpoint(original, to: url)
        let read = try readCheckpoint(at: url)

        #expect(read.kind == .model)
        #expect(read.config == original.config)
        expectSameTensors(read.parameters, original.parameters)
        let optimizer = try #require(read.optimizer)
        #expect(optimizer.kind == "adamw")
        #expect(optimizer.step == 6)
        #expect(optimizer.moments.keys.sorted() == ["m", "v"])
        for moment in ["m", "v"] {
            expectSameTensors(optimizer.moments[moment]!, original.optimizer!.moments[moment]!)
        }
        #expect(read.step == 7)
        #expect(read.tokensSeen == 123_456_789_012)
        #expect(read.rng == original.rng)
        #expect(read.dataCursor == original.dataCursor)
        #expect(read.recipe == original.recipe)
        #expect(read.tokenizer == original.tokenizer)
        #expect(read.threads == 2)
        #expect(read.metadata == original.metadata)
        #expect(read.baseChecksum == nil)
        #expect(read.distillVersion == DistillVersion.string)
        #expect(ISO8601DateFormatter().date(from: try #require(read.created)) != nil)

        // A restored generator continues the same sequence.
        var a = original.rng["data"]!
        var b = read.rng["data"]!
        #expect((0..<5).map { _ in a.next() } == (0..<5).map { _ in b.next() })
    }
}

@Test func optionalFieldsMayBeAbsentOrEmpty() throws {
    try withTemporaryDirectory { directory in
        let url = directory.appendingPathComponent("bare.h5")
        var rng = RNG(seed: 2)
        let tied = LlamaConfig(
            vocabSize: 5, hiddenSize: 4, intermediateSize: 6, numHiddenLayers: 1, numAttentionHeads: 2)
        let contents = CheckpointContents(
            config: tied, parameters: randomTensors(tied, rng: &rng), recipe: "", threads: 1)
        try writeCheckpoint(contents, to: url)
        let read = try readCheckpoint(at: url)
        #expect(read.optimizer == nil)
        #expect(read.rng.isEmpty && read.metadata.isEmpty)
        #expect(read.dataCursor == nil && read.tokenizer == nil)
        #expect(read.recipe == "")
        #expect(!read.parameters.contains { $0.name == "lm_head.weight" })
        expectSameTensors(read.parameters, contents.parameters)
    }
}

@Test func adaptersHoldAnyTensorsAndNameTheirBase() throws {
    try withTemporaryDirectory { directory in
        let url = directory.appendingPathComponent("adapter.h5")
        var rng = RNG(seed: 4)
        let lora = [
            (name: "model.layers.0.self_attn.q_proj.lora_A.weight", tensor: Tensor.randn([4, 8], rng: &rng)),
            (name: "model.layers.0.self_attn.q_proj.lora_B.weight", tensor: Tensor.zeros([8, 4])),
        ]
        let contents = CheckpointContents(
            kind: .adapter, config: tinyConfig, parameters: lora,
            optimizer: OptimizerState(kind: "adamw", step: 1, moments: ["m": [lora[1]]]), threads: 1,
            baseChecksum: "crc32:0x12345678")
        try writeCheckpoint(contents, to: url)
        let read = try readCheckpoint(at: url)
        #expect(read.kind == .adapter && read.baseChecksum == "crc32:0x12345678")
        expectSameTensors(read.parameters, lora)  // sorted by name, as written here
        expectSameTensors(read.optimizer!.moments["m"]!, [lora[1]])
    }
}

@Test func summaryDescribesWithoutLoading() throws {
    try withTemporaryDirectory { directory in
        let url = directory.appendingPathComponent("ckpt.h5")
        let original = sampleContents()
        try writeCheckpoint(original, to: url)
        let summary = try readCheckpointSummary(at: url)
        #expect(summary.formatVersion == CheckpointFormat.version)
        #expect(summary.kind == .model && summary.step == 7 && summary.threads == 2)
        #expect(summary.checksumAlgorithm == "crc32")
        #expect(summary.parameters.map(\.name) == tinyConfig.parameterShapes.map(\.name))
        #expect(summary.parameters.map(\.shape) == tinyConfig.parameterShapes.map(\.shape))
        for (info, parameter) in zip(summary.parameters, original.parameters) {
            #expect(info.checksum == CRC32.checksum(UnsafeBufferPointer(parameter.tensor.storage.buffer)))
            #expect(info.dtype == "float32")
        }
        #expect(summary.optimizerKind == "adamw" && summary.optimizerStep == 6)
        #expect(summary.moments["v"]?.count == original.parameters.count)
        #expect(summary.rngStreams == ["data", "dropout-é", "init"])
        #expect(summary.hasDataCursor)
        #expect(summary.recipe == original.recipe)
        #expect(summary.tokenizerBytes == original.tokenizer!.utf8.count)
        #expect(summary.metadata["stage"] == "pretrain")
        #expect(summary.configJSON.contains("\"architectures\""))
    }
}

// MARK: - Refusals

@Test func aDamagedTensorIsNamed() throws {
    try withTemporaryDirectory { directory in
        let url = directory.appendingPathComponent("ckpt.h5")
        let contents = sampleContents()
        try writeCheckpoint(contents, to: url)
        try unseal(url)  // the per-dataset checksums are what is tested
        let victim = contents.parameters.first { $0.name == "model.layers.1.mlp.down_proj.weight" }!
        try corrupt(victim.tensor, inFileAt: url)

        let error = expectCheckpointError(.checksumMismatch) { _ = try readCheckpoint(at: url) }
        #expect(error?.description.contains("/model/model.layers.1.mlp.down_proj.weight") == true)
        #expect(error?.category == .data)
        expectCheckpointError(.checksumMismatch) { try verifyCheckpoint(at: url) }
        // Without verification the damaged file still loads (for forensics).
        #expect(throws: Never.self) { _ = try readCheckpoint(at: url, verify: false) }
    }
}

/// The seal (Sources/Formats/HDF5Seal.swift): a flipped bit anywhere in the file, HDF5's
/// own metadata included (superblock, object headers, B-trees, heaps), is refused before
/// the HDF5 library reads the file; a truncated file too.
@Test func theSealCatchesEveryFlippedBitBeforeHDF5ReadsTheFile() throws {
    try withTemporaryDirectory { directory in
        let url = directory.appendingPathComponent("ckpt.h5")
        try writeCheckpoint(sampleContents(), to: url)
        let bytes = try Data(contentsOf: url)
        // The seal is what Python checks with zlib.crc32 (docs/checkpoints.md).
        #expect(bytes.prefix(8) == Data("DSTLSEAL".utf8) && bytes[504..<512] == Data("DSTLSEAL".utf8))
        let recorded = bytes[24..<28].enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * $1.offset) }
        #expect(CRC32.checksum(Array(bytes[512...])) == recorded)
        #expect(try HDF5Seal.verify(path: url.path) == .intact)

        let damaged = directory.appendingPathComponent("damaged.h5")
        // Every byte of the seal, then every 7th byte of the rest (the first 4 KiB, where
        // HDF5 keeps the superblock and root group, byte by byte).
        let offsets = Array(0..<4096) + Array(stride(from: 4096, to: bytes.count, by: 7))
        var refused = 0
        for offset in offsets {
            var copy = bytes
            copy[offset] ^= UInt8(1) << UInt8(offset % 8)
            try copy.write(to: damaged)
            do {
                _ = try readCheckpoint(at: damaged)
                Issue.record("a flipped bit at byte \(offset) was not noticed")
            } catch let error as CheckpointError {
                #expect(error.category == .data && error.description.hasPrefix(damaged.path), "\(error)")
                refused += 1
            }
        }
        #expect(refused == offsets.count)

        try bytes.prefix(bytes.count - 100).write(to: damaged)
        let truncated = expectCheckpointError(.malformed) { _ = try readCheckpointSummary(at: damaged) }
        #expect(truncated?.description.contains("(truncated)") == true)

        // The message does not promise a previous checkpoint; readCommittedCheckpoint uses
        // one only when a .prev exists.
        let error = expectCheckpointError(.malformed) { _ = try readCommittedCheckpoint(at: damaged) }
        #expect(error?.description.contains("previous") == false)
    }
}

/// Without a seal (files from before it), a checkpoint reads as before.
@Test func anUnsealedCheckpointStillReads() throws {
    try withTemporaryDirectory { directory in
        let url = directory.appendingPathComponent("ckpt.h5")
        let contents = sampleContents()
        try writeCheckpoint(contents, to: url)
        try unseal(url)
        #expect(try HDF5Seal.verify(path: url.path) == .unsealed)
        expectSameTensors(try readCheckpoint(at: url).parameters, contents.parameters)
    }
}

@Test func aDamagedMomentIsNamed() throws {
    try withTemporaryDirectory { directory in
        let url = directory.appendingPathComponent("ckpt.h5")
        let contents = sampleContents()
        try writeCheckpoint(contents, to: url)
        try unseal(url)
        try corrupt(contents.optimizer!.moments["v"]![3].tensor, inFileAt: url)
        let error = expectCheckpointError(.checksumMismatch) { try verifyCheckpoint(at: url) }
        #expect(error?.description.contains("/optimizer/v/\(contents.parameters[3].name)") == true)
    }
}

@Test func shapesAreCheckedAgainstTheConfigAllAtOnce() throws {
    try withTemporaryDirectory { directory in
        let url = directory.appendingPathComponent("ckpt.h5")
        try writeCheckpoint(sampleContents(), to: url)
        // Claim a third layer and a wider MLP, and slip in a tensor no Llama has.
        var other = tinyConfig
        other.numHiddenLayers = 3
        other.intermediateSize = 16
        let file = try HDF5File.open(path: url.path, writable: true)
        try file.setAttribute("config", .string(try configJSON(other)))
        try file.write([1, 2] as [Float], shape: [2], to: "model/model.extra.weight")
        try file.setAttribute("checksum", .int(0), at: "model/model.extra.weight")
        // A consistent writer's attributes checksum, so the shapes are what is wrong.
        try file.setAttribute(CheckpointFormat.attributesChecksumAttribute, .int(Int64(try attributesChecksum(file))))
        try file.close()
        try HDF5Seal.seal(path: url.path)

        let error = expectCheckpointError(.shapeMismatch) { _ = try readCheckpoint(at: url) }
        let text = error?.description ?? ""
        #expect(text.contains("missing: model.layers.2."))
        #expect(text.contains("unexpected: model.extra.weight"))
        #expect(text.contains("model.layers.0.mlp.gate_proj.weight is [12, 8], the config needs [16, 8]"))
        expectCheckpointError(.shapeMismatch) { _ = try readCheckpointSummary(at: url) }
    }
}

/// Attributes are covered by a checksum too: a changed step, config or metadata value is a
/// damaged file (exit 65), not a different model; files from before the checksum still read.
@Test func aChangedAttributeIsDamage() throws {
    try withTemporaryDirectory { directory in
        let url = directory.appendingPathComponent("ckpt.h5")
        var contents = sampleContents()
        contents.metadata = ["fingerprint": "abc"]
        for (name, value, object) in [
            ("step", HDF5AttributeValue.int(8), "/"), ("fingerprint", .string("abd"), "metadata"),
            ("config", .string(try configJSON(contents.config).replacingOccurrences(of: "\"rope_theta\" : 10000", with: "\"rope_theta\" : 10001")), "/"),
        ] {
            try writeCheckpoint(contents, to: url)
            try unseal(url)  // the attributes' checksum is what is tested
            let file = try HDF5File.open(path: url.path, writable: true)
            try file.setAttribute(name, value, at: object)
            try file.close()
            let error = expectCheckpointError(.checksumMismatch) { _ = try readCheckpoint(at: url) }
            #expect(error?.description.contains("checksum mismatch in /attributes of /, optimizer and metadata") == true, "\(name)")
        }
        // A file written before the checksum (no attributes_crc32) reads as before.
        try writeCheckpoint(contents, to: url)
        try unseal(url)
        let file = try HDF5File.open(path: url.path, writable: true)
        try file.deleteAttribute(CheckpointFormat.attributesChecksumAttribute)
        try file.close()
        #expect(try readCheckpoint(at: url).step == contents.step)
    }
}

@Test func aNewerFormatIsRefusedClearly() throws {
    try withTemporaryDirectory { directory in
        let url = directory.appendingPathComponent("ckpt.h5")
        try writeCheckpoint(sampleContents(), to: url)
        let file = try HDF5File.open(path: url.path, writable: true)
        try file.setAttribute("format_version", .int(Int64(CheckpointFormat.version + 1)))
        try file.close()
        try HDF5Seal.seal(path: url.path)
        let error = expectCheckpointError(.newerVersion) { _ = try readCheckpointSummary(at: url) }
        #expect(error?.description.contains("written by a newer distill") == true)
        #expect(error?.fix == "upgrade distill")
    }
}

@Test func tensorsLargerThanMemoryAreRefusedBeforeAllocating() throws {
    try withTemporaryDirectory { directory in
        let url = directory.appendingPathComponent("ckpt.h5")
        try writeCheckpoint(sampleContents(), to: url)
        let reader = try CheckpointReader(path: url.path)
        reader.file.maxReadBytes = 300  // stands in for a machine too small for the model
        // A model too large for the machine is a usage error (exit 2) with the need and the limit.
        for body in [{ _ = try reader.contents(verify: true) }, { try reader.verifyAll() }] {
            #expect {
                try body()
            } throws: { error in
                guard let error = error as? UserError else { return false }
                return error.kind == .usage && error.problem.contains("needs at least") && error.problem.contains("300 bytes")
            }
        }
        #expect(throws: Never.self) { _ = try reader.summary() }  // inspect still works
    }
}

@Test func foreignFilesAreNotCheckpoints() throws {
    try withTemporaryDirectory { directory in
        let plain = directory.appendingPathComponent("plain.h5")
        let file = try HDF5File.create(path: plain.path)
        try file.write([1] as [Float], shape: [1], to: "x")
        try file.close()
        expectCheckpointError(.notCheckpoint) { _ = try readCheckpoint(at: plain) }

        let text = directory.appendingPathComponent("notes.txt")
        try Data("hello".utf8).write(to: text)
        expectCheckpointError(.notCheckpoint) { _ = try readCheckpointSummary(at: text) }

        let missing = expectCheckpointError(.io) {
            _ = try readCheckpoint(at: directory.appendingPathComponent("nope.h5"))
        }
        #expect(missing?.category == .io)

        let truncated = directory.appendingPathComponent("cut.h5")
        try writeCheckpoint(sampleContents(), to: truncated)
        let bytes = try Data(contentsOf: truncated)
        try bytes.prefix(bytes.count / 2).write(to: truncated)
        let error = expectCheckpointError(.malformed) { _ = try readCheckpoint(at: truncated) }
        #expect(error?.category == .data)
    }
}

@Test func inconsistentContentsAreRefusedBeforeWriting() throws {
    try withTemporaryDirectory { directory in
        let url = directory.appendingPathComponent("ckpt.h5")
        var contents = sampleContents()
        contents.optimizer!.moments["m"]![0].tensor = Tensor.zeros([3])
        let error = expectCheckpointError(.invalidContents) { try writeCheckpoint(contents, to: url) }
        #expect(error?.description.contains("optimizer moment m/model.embed_tokens.weight") == true)

        var missing = sampleContents()
        missing.parameters.removeLast()
        expectCheckpointError(.invalidContents) { try writeCheckpoint(missing, to: url) }
        var slash = sampleContents()
        slash.rng["a/b"] = RNG(seed: 1)
        expectCheckpointError(.invalidContents) { try writeCheckpoint(slash, to: url) }
        let listing = try directoryListing(directory)
        #expect(listing.isEmpty)
    }
}

// MARK: - Commit protocol

@Test func aSuccessfulCommitLeavesOnlyTheCheckpoint() throws {
    try withTemporaryDirectory { directory in
        let url = directory.appendingPathComponent("ckpt.h5")
        try writeCheckpoint(sampleContents(step: 1), to: url)
        try writeCheckpoint(sampleContents(step: 2, seed: 2), to: url)
        #expect(try directoryListing(directory) == ["ckpt.h5"])
        let read = try readCheckpoint(at: url)
        #expect(read.step == 2)
        expectSameTensors(read.parameters, sampleContents(step: 2, seed: 2).parameters)
    }
}

@Test func withoutHardLinksThePreviousIsKeptByRename() throws {
    try withTemporaryDirectory { directory in
        let url = directory.appendingPathComponent("ckpt.h5")
        let hooks = CheckpointCommitHooks(withoutHardLinks: true)
        try writeCheckpoint(sampleContents(step: 1), to: url, hooks: hooks)
        try writeCheckpoint(sampleContents(step: 2), to: url, hooks: hooks)
        #expect(try directoryListing(directory) == ["ckpt.h5"])
        #expect(try readCheckpoint(at: url).step == 2)
    }
}

@Test(arguments: [false, true])
func aFailedVerificationKeepsThePreviousCheckpoint(withoutHardLinks: Bool) throws {
    try withTemporaryDirectory { directory in
        let url = directory.appendingPathComponent("ckpt.h5")
        let first = sampleContents(step: 1)
        try writeCheckpoint(first, to: url)

        let second = sampleContents(step: 2, seed: 2)
        let hooks = CheckpointCommitHooks(
            afterRename: { committed in
                try corrupt(second.parameters[4].tensor, inFileAt: committed)
            }, withoutHardLinks: withoutHardLinks)
        let error = expectCheckpointError(.verificationFailed) { try writeCheckpoint(second, to: url, hooks: hooks) }
        #expect(error?.description.contains("previous checkpoint was restored") == true)
        #expect(error?.category == .io)
        #expect(try directoryListing(directory) == ["ckpt.h5"])
        let read = try readCheckpoint(at: url)
        #expect(read.step == 1)
        expectSameTensors(read.parameters, first.parameters)

        // With nothing to fall back on, nothing is committed.
        let fresh = directory.appendingPathComponent("fresh.h5")
        let none = expectCheckpointError(.verificationFailed) { try writeCheckpoint(second, to: fresh, hooks: hooks) }
        #expect(none?.description.contains("nothing was committed") == true)
        #expect(try directoryListing(directory) == ["ckpt.h5"])
    }
}

@Test func aPreviousLeftByAnInterruptedCommitIsResolved() throws {
    try withTemporaryDirectory { directory in
        let url = directory.appendingPathComponent("ckpt.h5")
        let previous = directory.appendingPathComponent("ckpt.h5.prev")
        // Killed between the rename fallback and the commit: only .prev exists.
        try writeCheckpoint(sampleContents(step: 1), to: url)
        try FileManager.default.moveItem(at: url, to: previous)
        let (contents, source) = try readCommittedCheckpoint(at: url)
        #expect(contents.step == 1 && source == previous)

        // The next commit replaces both with the new checkpoint.
        try writeCheckpoint(sampleContents(step: 2), to: url)
        #expect(try directoryListing(directory) == ["ckpt.h5"])

        // Killed before removing .prev: both exist and the destination verifies.
        try FileManager.default.copyItem(at: url, to: previous)
        try writeCheckpoint(sampleContents(step: 3), to: url)
        #expect(try directoryListing(directory) == ["ckpt.h5"])
        #expect(try readCheckpoint(at: url).step == 3)

        // A damaged destination falls back to .prev when reading.
        try FileManager.default.copyItem(at: url, to: previous)
        try corrupt(sampleContents(step: 3).parameters[2].tensor, inFileAt: url)
        #expect(try readCommittedCheckpoint(at: url).url == previous)

        // Both damaged: the error is the destination's and says the previous one is bad too.
        try corrupt(sampleContents(step: 3).parameters[2].tensor, inFileAt: previous)
        let both = expectCheckpointError(.checksumMismatch) { _ = try readCommittedCheckpoint(at: url) }
        #expect(both?.description.hasPrefix(url.path) == true)
        #expect(both?.fix?.contains("previous checkpoint \(previous.path) does not read either") == true)
    }
}

@Test func orphanedTemporariesAreSwept() throws {
    try withTemporaryDirectory { directory in
        // A writer killed mid-write: a real half-written file under a dead pid.
        let deadPID: Int32 = 999_999_999  // above any pid_max
        let orphan = directory.appendingPathComponent(".ckpt.h5.tmp-\(deadPID)-0badf00d")
        let mine = directory.appendingPathComponent(temporaryName(for: "ckpt.h5"))
        try writeCheckpoint(sampleContents(), to: directory.appendingPathComponent("ckpt.h5"))
        let bytes = try Data(contentsOf: directory.appendingPathComponent("ckpt.h5"))
        try bytes.prefix(1000).write(to: orphan)
        try Data().write(to: mine)
        let lookalikes = [
            ".ckpt.h5.tmp-12-xyz", "ckpt.h5.tmp-\(deadPID)-0badf00d", ".tmp-\(deadPID)-0badf00d", "notes.txt",
        ]
        for name in lookalikes { try Data().write(to: directory.appendingPathComponent(name)) }

        #expect(temporaryFileWriter(mine.lastPathComponent) == getpid())
        let removed = try sweepOrphanedTemporaries(in: directory)
        #expect(removed.map(\.lastPathComponent) == [orphan.lastPathComponent])
        #expect(try directoryListing(directory) == ([mine.lastPathComponent, "ckpt.h5"] + lookalikes).sorted())
        #expect(try sweepOrphanedTemporaries(in: directory).isEmpty)
    }
}

