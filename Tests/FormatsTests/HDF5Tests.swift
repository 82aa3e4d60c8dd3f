// Tests for Sources/Formats/HDF5.swift: round trips of every dataset and attribute
// kind, files made by h5py (Fixtures/, written by tools/make_h5_fixture.py, whose
// values are repeated here), and the refusals that protect against untrusted files.

import Foundation
import Platform
import Testing

@testable import Formats

// MARK: - Helpers

/// A fresh directory removed when the test ends.
private func withTemporaryDirectory<R>(_ body: (URL) throws -> R) throws -> R {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("distill-hdf5-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    return try body(directory)
}

private func fixture(_ name: String) throws -> String {
    let url = try #require(Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures"))
    return url.path
}

/// Runs `body`, expecting an HDF5Error, and returns it.
private func expectHDF5Error(
    _ kind: HDF5Error.Kind, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) -> HDF5Error? {
    do {
        try body()
        Issue.record("expected HDF5Error.\(kind), nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as HDF5Error {
        #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected HDF5Error.\(kind), got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

// MARK: - Library

@Test func libraryVersionIsReadAtRunTime() {
    let parts = HDF5Library.version.split(separator: ".")
    #expect(parts.count == 3)
    #expect(parts.allSatisfy { Int($0) != nil })
    #expect(parts.first == "1")
}

// MARK: - Round trips

@Test(arguments: [[], [0], [5], [2, 3], [0, 3], [3, 0, 2], [2, 3, 4], [1, 1, 1, 1]] as [[Int]])
func float32RoundTrip(shape: [Int]) throws {
    try withTemporaryDirectory { directory in
        let path = directory.appendingPathComponent("f32.h5").path
        let count = shape.reduce(1, *)
        let values = (0..<count).map { Float($0) * 0.5 - 3 }
        let file = try HDF5File.create(path: path)
        try file.write(values, shape: shape, to: "x")
        try file.close()

        let reread = try HDF5File.open(path: path)
        let array = try reread.read(Float.self, from: "x")
        #expect(array.shape == shape)
        #expect(array.values == values)
        #expect(try reread.shape(of: "x") == shape)
        #expect(try reread.dtype(of: "x") == .float32)
    }
}

@Test func integerDoubleAndByteRoundTrip() throws {
    try withTemporaryDirectory { directory in
        let path = directory.appendingPathComponent("kinds.h5").path
        let int64s: [Int64] = [0, 1, -1, .max, .min, 1 << 40]
        let int32s: [Int32] = [.min, -7, 0, 7, .max, 42]
        let bytes = (0...255).map { UInt8($0) }
        let doubles: [Double] = [0.1, -1e300, .infinity, .leastNonzeroMagnitude]
        let uint64s: [UInt64] = [0, 1, .max, 1 << 63]
        let file = try HDF5File.create(path: path)
        try file.write(uint64s, shape: [4], to: "u64")
        try file.write(int64s, shape: [2, 3], to: "i64")
        try file.write(int32s, shape: [3, 2], to: "i32")
        try file.writeBytes(bytes, to: "blob")
        try file.writeBytes([], to: "empty_blob")
        try file.write(doubles, shape: [4], to: "f64")
        try file.write([Float.nan], shape: [], to: "nan")
        try file.close()

        let reread = try HDF5File.open(path: path)
        #expect(try reread.read(Int64.self, from: "i64") == HDF5Array(shape: [2, 3], values: int64s))
        #expect(try reread.read(Int32.self, from: "i32") == HDF5Array(shape: [3, 2], values: int32s))
        #expect(try reread.readBytes("blob") == bytes)
        #expect(try reread.readBytes("empty_blob") == [])
        #expect(try reread.read(Double.self, from: "f64").values == doubles)
        #expect(try reread.read(Float.self, from: "nan").values.first?.isNaN == true)
        #expect(try reread.dtype(of: "i64") == .int64)
        #expect(try reread.dtype(of: "i32") == .int32)
        #expect(try reread.dtype(of: "blob") == .uint8)
        #expect(try reread.dtype(of: "f64") == .float64)
        #expect(try reread.read(UInt64.self, from: "u64").values == uint64s)
        #expect(try reread.dtype(of: "u64") == .uint64)
        #expect(try reread.datasetNames() == ["blob", "empty_blob", "f64", "i32", "i64", "nan", "u64"])
    }
}

@Test func readIntoBufferChecksTheElementCount() throws {
    try withTemporaryDirectory { directory in
        let path = directory.appendingPathComponent("buffer.h5").path
        let file = try HDF5File.create(path: path)
        try file.write([1, 2, 3, 4, 5, 6] as [Float], shape: [2, 3], to: "w")

        var exact = [Float](repeating: 0, count: 6)
        let shape = try exact.withUnsafeMutableBufferPointer { try file.read(from: "w", into: $0) }
        #expect(shape == [2, 3])
        #expect(exact == [1, 2, 3, 4, 5, 6])

        var short = [Float](repeating: 0, count: 5)
        let error = expectHDF5Error(.shapeMismatch) {
            try short.withUnsafeMutableBufferPointer { _ = try file.read(from: "w", into: $0) }
        }
        #expect(error?.hint.contains("[2, 3]") == true)
        #expect(short == [0, 0, 0, 0, 0])

        var wrongType = [Int32](repeating: 0, count: 6)
        _ = expectHDF5Error(.typeMismatch) {
            try wrongType.withUnsafeMutableBufferPointer { _ = try file.read(from: "w", into: $0) }
        }
        try file.close()
    }
}

@Test func attributesOnRootGroupsAndDatasets() throws {
    try withTemporaryDirectory { directory in
        let path = directory.appendingPathComponent("attrs.h5").path
        let long = String(repeating: "{\"k\": \"v\"} ", count: 100_000)  // 1.1 MB, e.g. a recipe
        let file = try HDF5File.create(path: path)
        try file.write([1, 2] as [Float], shape: [2], to: "model/layers/0/mlp.up_proj.weight")
        try file.setAttribute("format_version", .int(3))
        try file.setAttribute("lr", .double(3e-4))
        try file.setAttribute("name", .string("distill"))
        try file.setAttribute("unicode", .string("héllo ✓ 日本"))
        try file.setAttribute("empty", .string(""))
        try file.setAttribute("recipe", .string(long))
        try file.setAttribute("min", .int(.min))
        try file.setAttribute("n_layers", .int(1), at: "model")
        try file.setAttribute("note", .string("up"), at: "/model/layers/0/mlp.up_proj.weight")
        try file.setAttribute("step", .int(1))
        try file.setAttribute("step", .int(2))  // replaces
        try file.close()

        let reread = try HDF5File.open(path: path)
        #expect(try reread.attribute("format_version") == .int(3))
        #expect(try reread.intAttribute("format_version") == 3)
        #expect(try reread.doubleAttribute("lr") == 3e-4)
        #expect(try reread.doubleAttribute("format_version") == 3)
        #expect(try reread.stringAttribute("name") == "distill")
        #expect(try reread.stringAttribute("unicode") == "héllo ✓ 日本")
        #expect(try reread.stringAttribute("empty") == "")
        #expect(try reread.stringAttribute("recipe") == long)
        #expect(try reread.intAttribute("min") == .min)
        #expect(try reread.intAttribute("step") == 2)
        #expect(try reread.intAttribute("n_layers", at: "model") == 1)
        #expect(try reread.stringAttribute("note", at: "model/layers/0/mlp.up_proj.weight") == "up")
        #expect(
            try reread.attributeNames()
                == ["empty", "format_version", "lr", "min", "name", "recipe", "step", "unicode"])
        #expect(try reread.attributeNames(at: "model/layers") == [])
        #expect(try reread.hasAttribute("lr"))
        #expect(try !reread.hasAttribute("lr", at: "model"))

        let missing = expectHDF5Error(.notFound) { _ = try reread.attribute("nope", at: "model") }
        #expect(missing?.hint.contains("n_layers") == true)
        #expect(missing?.attribute == "nope")
        _ = expectHDF5Error(.typeMismatch) { _ = try reread.stringAttribute("step") }
        _ = expectHDF5Error(.notFound) { _ = try reread.attribute("x", at: "model/nothing") }
    }
}

@Test func stringAttributeWithNULIsRefused() throws {
    try withTemporaryDirectory { directory in
        let file = try HDF5File.create(path: directory.appendingPathComponent("nul.h5").path)
        _ = expectHDF5Error(.invalidArgument) { try file.setAttribute("s", .string("a\u{0}b")) }
        #expect(try !file.hasAttribute("s"))
    }
}

@Test func nestedGroupsAndDottedNames() throws {
    try withTemporaryDirectory { directory in
        let path = directory.appendingPathComponent("names.h5").path
        let names = [
            "model/embed_tokens.weight",
            "model/layers/0/self_attn.q_proj.weight",
            "model/layers/3/self_attn.q_proj.weight",
            "model/layers/3/input_layernorm.weight",
            "lm_head.weight",
        ]
        let file = try HDF5File.create(path: path)
        for (index, name) in names.enumerated() {
            try file.write([Float(index)], shape: [1], to: name)
        }
        try file.createGroup("optimizer/moments")
        try file.createGroup("optimizer/moments")  // idempotent
        try file.createGroup("/model/layers")  // existing
        #expect(try file.datasetNames() == names.sorted())
        #expect(try file.objectKind(at: "model/layers/3") == .group)
        #expect(try file.objectKind(at: "/model/layers/3/self_attn.q_proj.weight") == .dataset)
        #expect(try file.objectKind(at: "model/layers/3/self_attn") == nil)
        #expect(try file.objectKind(at: "lm_head.weight/child") == nil)
        #expect(try file.objectKind(at: "/") == .group)
        #expect(try file.exists("optimizer/moments"))
        #expect(try !file.exists("optimizer/velocity"))
        #expect(try file.read(Float.self, from: "/model/layers/3/self_attn.q_proj.weight").values == [2])

        _ = expectHDF5Error(.alreadyExists) { try file.write([1] as [Float], shape: [1], to: "lm_head.weight") }
        _ = expectHDF5Error(.alreadyExists) { try file.createGroup("lm_head.weight") }
        _ = expectHDF5Error(.invalidArgument) { try file.write([1] as [Float], shape: [1], to: "lm_head.weight/x") }
        for bad in ["a//b", "a/./b", "../x", "a/", "/"] {
            _ = expectHDF5Error(.invalidArgument) { try file.write([1] as [Float], shape: [1], to: bad) }
        }
        _ = expectHDF5Error(.typeMismatch) { _ = try file.read(Float.self, from: "model/layers") }
        try file.close()
        try file.close()  // idempotent
    }
}

@Test func reopenForWritingAndReadOnlyRefusal() throws {
    try withTemporaryDirectory { directory in
        let path = directory.appendingPathComponent("reopen.h5").path
        let first = try HDF5File.create(path: path)
        try first.write([1, 2] as [Int64], shape: [2], to: "a/b")
        try first.close()

        let writable = try HDF5File.open(path: path, writable: true)
        #expect(writable.isWritable)
        try writable.write([3] as [Int64], shape: [1], to: "a/c")
        try writable.setAttribute("step", .int(7), at: "a")
        try writable.flush()
        try writable.close()

        let readOnly = try HDF5File.open(path: path)
        #expect(try readOnly.datasetNames() == ["a/b", "a/c"])
        #expect(try readOnly.intAttribute("step", at: "a") == 7)
        _ = expectHDF5Error(.readOnly) { try readOnly.write([4] as [Int64], shape: [1], to: "a/d") }
        _ = expectHDF5Error(.readOnly) { try readOnly.setAttribute("x", .int(1)) }
        _ = expectHDF5Error(.readOnly) { try readOnly.createGroup("g") }
    }
}

@Test func filesOnSeparateThreadsAreSerialised() async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("distill-hdf5-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let sums = try await withThrowingTaskGroup(of: Float.self) { group in
        for task in 0..<4 {
            let path = directory.appendingPathComponent("t\(task).h5").path
            group.addTask {
                let file = try HDF5File.create(path: path)
                for index in 0..<20 {
                    try file.write([Float](repeating: Float(task), count: 100), shape: [10, 10], to: "d/\(index)")
                    try file.setAttribute("i", .int(Int64(index)), at: "d/\(index)")
                }
                try file.close()
                let reread = try HDF5File.open(path: path)
                var sum: Float = 0
                for name in try reread.datasetNames() {
                    sum += try reread.read(Float.self, from: name).values.reduce(0, +)
                }
                return sum
            }
        }
        var sums: [Float] = []
        for try await sum in group { sums.append(sum) }
        return sums.sorted()
    }
    #expect(sums == [0, 2000, 4000, 6000])
}

// MARK: - Files made by h5py (tools/make_h5_fixture.py)

@Test func readsFileMadeByH5py() throws {
    let file = try HDF5File.open(path: try fixture("h5py_made.h5"))
    #expect(
        try file.datasetNames() == [
            "data/blob", "data/f64", "data/gzipped", "data/lengths", "data/tokens", "empty",
            "model/embed_tokens.weight", "model/layers/0/self_attn.q_proj.weight", "scalar",
        ])
    #expect(
        try file.read(Float.self, from: "model/layers/0/self_attn.q_proj.weight")
            == HDF5Array(shape: [2, 3], values: [0.5, -1.25, 2.0, 3.5, 0.0, -0.125]))
    #expect(try file.read(Float.self, from: "model/embed_tokens.weight").values == [0, 0.25, 0.5, 0.75])
    #expect(try file.read(Int64.self, from: "data/tokens").values == [0, 1, -2, 1 << 40, -(1 << 62)])
    #expect(try file.read(Int32.self, from: "data/lengths") == HDF5Array(shape: [2, 2], values: [1, 2, 3, -4]))
    #expect(try file.readBytes("data/blob") == Array("hello\u{0}".utf8) + [0xFF])
    #expect(try file.read(Double.self, from: "data/f64").values == [1.5, 2.5, -3.0])
    #expect(try file.read(Float.self, from: "data/gzipped").values == (0..<100).map(Float.init))
    #expect(try file.read(Float.self, from: "empty") == HDF5Array(shape: [0, 3], values: []))
    #expect(try file.read(Float.self, from: "scalar") == HDF5Array(shape: [], values: [7.5]))

    #expect(try file.intAttribute("format_version") == 1)
    #expect(try file.stringAttribute("name") == "tiny-llama")
    #expect(try file.stringAttribute("greeting") == "h\u{e9}llo \u{2713}")
    #expect(try file.stringAttribute("fixed") == "fixed-ascii")  // fixed-length ASCII
    #expect(try file.doubleAttribute("lr") == 0.001)
    #expect(try file.intAttribute("step32") == -7)
    #expect(try file.intAttribute("n_layers", at: "model") == 1)
    #expect(try file.stringAttribute("note", at: "model/layers/0/self_attn.q_proj.weight") == "q")
    #expect(try file.objectKind(at: "model/layers/0") == .group)

    let mismatch = expectHDF5Error(.typeMismatch) { _ = try file.read(Float.self, from: "data/f64") }
    #expect(mismatch?.hint.contains("float64") == true)
}

@Test func missingDatasetListsWhatExists() throws {
    let path = try fixture("h5py_made.h5")
    let file = try HDF5File.open(path: path)
    let error = expectHDF5Error(.notFound) {
        _ = try file.read(Float.self, from: "model/layers/1/self_attn.q_proj.weight")
    }
    let text = error.map(String.init(describing:)) ?? ""
    #expect(text.contains(path))
    #expect(text.contains("model/layers/1/self_attn.q_proj.weight"))
    #expect(text.contains("model/layers/1 does not exist"))
    #expect(text.contains("model/embed_tokens.weight"))
    #expect(text.contains("data/tokens"))
}

// MARK: - Untrusted and broken files

@Test func externalLinksAreRefused() throws {
    let file = try HDF5File.open(path: try fixture("h5py_hostile.h5"))
    #expect(try file.datasetNames() == ["huge", "lzf", "ok"])  // links are not followed
    #expect(try file.objectKind(at: "ext") == .externalLink)
    #expect(try file.objectKind(at: "extgroup/layers") == nil)
    #expect(try file.read(Float.self, from: "soft").values == [1, 2])  // soft links are fine

    let direct = expectHDF5Error(.externalLink) { _ = try file.read(Float.self, from: "ext") }
    #expect(direct?.description.contains("external link") == true)
    _ = expectHDF5Error(.externalLink) {
        _ = try file.read(Float.self, from: "extgroup/layers/0/self_attn.q_proj.weight")
    }
    _ = expectHDF5Error(.externalLink) { _ = try file.shape(of: "ext") }
    _ = expectHDF5Error(.externalLink) { _ = try file.attribute("n_layers", at: "extgroup") }
}

@Test func externalLinkTraversalFailsInsideHDF5Too() throws {
    // "soft_to_ext" is a soft link to "/extgroup/embed_tokens.weight": distill's own
    // link-by-link lookup sees only a soft link, so HDF5's traversal (the link-access
    // callback) is what must refuse to open the other file.
    let file = try HDF5File.open(path: try fixture("h5py_hostile.h5"))
    var buffer = [Float](repeating: 0, count: 4)
    let error = expectHDF5Error(.externalLink) {
        try buffer.withUnsafeMutableBufferPointer { _ = try file.read(from: "soft_to_ext", into: $0) }
    }
    #expect(error?.object == "soft_to_ext")
    #expect(buffer == [0, 0, 0, 0])
    #expect(try file.objectKind(at: "soft_to_ext") == .other)
}

@Test func absurdDeclaredSizesAreRefusedBeforeAllocating() throws {
    let file = try HDF5File.open(path: try fixture("h5py_hostile.h5"))
    #expect(try file.shape(of: "huge") == [1 << 40])  // 4 TiB of float32 in a 2 KB file
    let error = expectHDF5Error(.tooLarge) { _ = try file.read(Float.self, from: "huge") }
    #expect(error?.hint.contains("maxReadBytes") == true)

    file.maxReadBytes = 4
    _ = expectHDF5Error(.tooLarge) { _ = try file.read(Float.self, from: "ok") }  // 8 bytes
    file.maxReadBytes = 8
    #expect(try file.read(Float.self, from: "ok").values == [1, 2])
}

@Test func unavailableCompressionFilterIsReported() throws {
    let file = try HDF5File.open(path: try fixture("h5py_hostile.h5"))
    #expect(try file.shape(of: "lzf") == [4096])
    let error = expectHDF5Error(.typeMismatch) { _ = try file.read(Float.self, from: "lzf") }
    #expect(error?.hint.contains("filter") == true)
}

@Test func notAnHDF5FileNamesThePath() throws {
    try withTemporaryDirectory { directory in
        let path = directory.appendingPathComponent("notes.h5").path
        try Data("this is not HDF5\n".utf8).write(to: URL(fileURLWithPath: path))
        let error = expectHDF5Error(.notHDF5File) { _ = try HDF5File.open(path: path) }
        #expect(error?.description.contains(path) == true)
        #expect(error?.description.contains("not an HDF5 file") == true)

        _ = expectHDF5Error(.notHDF5File) { _ = try HDF5File.open(path: directory.path) }
        let missing = expectHDF5Error(.fileNotFound) {
            _ = try HDF5File.open(path: directory.appendingPathComponent("absent.h5").path)
        }
        #expect(missing?.description.contains("absent.h5") == true)
        _ = expectHDF5Error(.fileNotFound) {
            _ = try HDF5File.create(path: directory.appendingPathComponent("no/such/dir.h5").path)
        }
    }
}

@Test func truncatedFileFailsWithAnError() throws {
    try withTemporaryDirectory { directory in
        let path = directory.appendingPathComponent("truncated.h5").path
        let file = try HDF5File.create(path: path)
        try file.write([Float](repeating: 1, count: 10_000), shape: [100, 100], to: "model/w")
        try file.setAttribute("name", .string("x"))
        try file.close()

        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        for keep in [bytes.count / 2, 3000, 600, 100] {
            try bytes.prefix(keep).write(to: URL(fileURLWithPath: path))
            do {
                let broken = try HDF5File.open(path: path)
                _ = try broken.read(Float.self, from: "model/w")
                Issue.record("reading a file truncated to \(keep) bytes succeeded")
            } catch let error as HDF5Error {
                #expect(error.kind == .damaged, "\(error)")
                #expect(error.description.contains(path))
            }
        }
    }
}
