// The router file (R.h5): a sealed HDF5 file (Formats' HDF5Seal: a CRC-32 of the whole file,
// checked before the library reads it) holding a trained router, what it was trained for, its
// thresholds and the cached embeddings of every task it was trained, calibrated and tested on
// (docs/routing.md, *The router file*). Readable by h5py.
//
//   /                      attributes: format "distill-router", format_version 1, distill_version,
//                          kind, weak, strong, weak_checksum, weak_identity, strong_identity,
//                          settings (JSON: split, label, features, l2, k, alpha, bias), thresholds (JSON)
//   /model/mean, scale, weights     logistic: float64 [d]
//   /model/embeddings, labels       knn: float32 [n, e], float64 [n]
//   /model/centroids, weak_accuracy, strong_accuracy   kmeans: float32 [c, e], float64 [c]
//   /cache/embeddings      float32 [N, e]: every task's embedding
//   /cache/prompt_tokens   int64 [N]
//   /cache/task_ids        uint8: the task ids as a JSON array of strings
//
// Written to a temporary file, sealed, then put in place by the one atomic write.

import Core
import Formats
import Foundation
import JSON
import Platform

extension Router {
    package static let fileFormat = "distill-router"
    package static let fileVersion: Int64 = 1

    /// The settings stored as one JSON attribute.
    struct Settings: Codable {
        var split: RouterSplit
        var label: RouterLabel?
        var features: [RouterFeature]?
        var l2: Double?
        var bias: Double?
        var k: Int?
        var alpha: Double?
    }

    /// Writes the router to `path` (atomically).
    package func write(to path: String) throws {
        let folder = (path as NSString).deletingLastPathComponent
        let scratch = (folder.isEmpty ? "" : folder + "/") + temporaryName(for: (path as NSString).lastPathComponent + ".build")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        do {
            let file = try HDF5File.create(path: scratch, userBlock: HDF5Seal.blockSize)
            try file.setAttribute("format", .string(Self.fileFormat))
            try file.setAttribute("format_version", .int(Self.fileVersion))
            try file.setAttribute("distill_version", .string(DistillVersion.string))
            try file.setAttribute("kind", .string(model.kind.rawValue))
            try file.setAttribute("weak", .string(weak))
            try file.setAttribute("strong", .string(strong))
            try file.setAttribute("weak_checksum", .string(weakChecksum))
            if let weakIdentity { try file.setAttribute("weak_identity", .string(weakIdentity)) }
            if let strongIdentity { try file.setAttribute("strong_identity", .string(strongIdentity)) }
            var settings = Settings(split: split, label: label)
            try file.createGroup("/model")
            switch model {
            case .logistic(let m):
                (settings.features, settings.l2, settings.bias) = (m.features, m.l2, m.bias)
                try file.write(m.mean, shape: [m.mean.count], to: "/model/mean")
                try file.write(m.scale, shape: [m.scale.count], to: "/model/scale")
                try file.write(m.weights, shape: [m.weights.count], to: "/model/weights")
            case .knn(let m):
                settings.k = m.k
                try file.write(m.embeddings.flatMap { $0 }, shape: [m.embeddings.count, m.embeddings.first?.count ?? 0], to: "/model/embeddings")
                try file.write(m.labels, shape: [m.labels.count], to: "/model/labels")
            case .kmeans(let m):
                settings.alpha = m.alpha
                try file.write(m.centroids.flatMap { $0 }, shape: [m.centroids.count, m.centroids.first?.count ?? 0], to: "/model/centroids")
                try file.write(m.weakAccuracy, shape: [m.weakAccuracy.count], to: "/model/weak_accuracy")
                try file.write(m.strongAccuracy, shape: [m.strongAccuracy.count], to: "/model/strong_accuracy")
            }
            try file.setAttribute("settings", .string(reportJSON(settings)))
            try file.setAttribute("thresholds", .string(reportJSON(thresholds)))
            let ids = cache.keys.sorted()
            let width = cache.values.first?.embedding.count ?? 0
            try file.createGroup("/cache")
            try file.write(ids.flatMap { cache[$0]!.embedding }, shape: [ids.count, width], to: "/cache/embeddings")
            try file.write(ids.map { Int64(cache[$0]!.promptTokens) }, shape: [ids.count], to: "/cache/prompt_tokens")
            try file.writeBytes(Array(JSONValue.array(ids.map { .string($0) }).compact().utf8), to: "/cache/task_ids")
            try file.close()
            try HDF5Seal.seal(path: scratch)
        } catch let e as HDF5Error {
            throw UserError(path: path, problem: "cannot write the router: \(e)", kind: .io)
        }
        try writeAtomically(try readFile(scratch), to: path)
    }

    /// Reads a router file; a file that is not one, or is damaged, is a bad-data error naming it.
    package static func read(path: String) throws -> Router {
        func bad(_ problem: String) -> UserError {
            UserError(path: path, problem: problem, fix: "give a router written by `distill route train`", kind: .badData)
        }
        guard FileManager.default.fileExists(atPath: path) else {
            throw UserError(path: path, problem: "no such router file", fix: "train one with `distill route train`", kind: .io)
        }
        do {
            let file = try HDF5File.open(path: path)
            defer { try? file.close() }
            guard try file.hasAttribute("format"), try file.stringAttribute("format") == fileFormat else {
                throw bad("is not a router file (no format \"\(fileFormat)\")")
            }
            let version = try file.intAttribute("format_version")
            guard version == fileVersion else { throw bad("router format version \(version); this distill reads \(fileVersion)") }
            func optional(_ name: String) throws -> String? { try file.hasAttribute(name) ? try file.stringAttribute(name) : nil }
            guard let settingsText = try optional("settings"), let thresholdsText = try optional("thresholds"),
                let settings = try? JSONDecoder().decode(Settings.self, from: Data(settingsText.utf8)),
                let thresholds = try? JSONDecoder().decode([Threshold].self, from: Data(thresholdsText.utf8))
            else { throw bad("its settings or thresholds are not readable JSON") }
            func doubles(_ p: String) throws -> [Double] { try file.read(Double.self, from: p).values }
            func matrix(_ p: String) throws -> [[Float]] {
                let a = try file.read(Float.self, from: p)
                guard a.shape.count == 2, a.shape[0] * a.shape[1] == a.values.count else { throw bad("\(p) is not a matrix") }
                return (0..<a.shape[0]).map { Array(a.values[($0 * a.shape[1])..<(($0 + 1) * a.shape[1])]) }
            }
            let kindText = try file.stringAttribute("kind")
            let model: Model
            switch RouterKind(rawValue: kindText) {
            case .logistic:
                let (mean, scale, weights) = (try doubles("/model/mean"), try doubles("/model/scale"), try doubles("/model/weights"))
                guard let features = settings.features, let l2 = settings.l2, let bias = settings.bias, mean.count == weights.count,
                    scale.count == weights.count, scale.allSatisfy({ $0 > 0 })
                else { throw bad("its logistic model is incomplete") }
                model = .logistic(LogisticRouter(features: features, mean: mean, scale: scale, weights: weights, bias: bias, l2: l2))
            case .knn:
                let (embeddings, labels) = (try matrix("/model/embeddings"), try doubles("/model/labels"))
                guard let k = settings.k, embeddings.count == labels.count, !labels.isEmpty, (1...labels.count).contains(k) else {
                    throw bad("its neighbour model is incomplete")
                }
                model = .knn(NeighbourRouter(k: k, embeddings: embeddings, labels: labels, normalise: false))
            case .kmeans:
                let centroids = try matrix("/model/centroids")
                let (weak, strong) = (try doubles("/model/weak_accuracy"), try doubles("/model/strong_accuracy"))
                guard let alpha = settings.alpha, !centroids.isEmpty, weak.count == centroids.count, strong.count == centroids.count else {
                    throw bad("its cluster model is incomplete")
                }
                model = .kmeans(ClusterRouter(centroids: centroids, weakAccuracy: weak, strongAccuracy: strong, alpha: alpha))
            case nil:
                throw bad("unknown router kind \"\(kindText)\"")
            }
            var router = Router(
                model: model, weak: try file.stringAttribute("weak"), strong: try file.stringAttribute("strong"),
                weakChecksum: try file.stringAttribute("weak_checksum"), weakIdentity: try optional("weak_identity"),
                strongIdentity: try optional("strong_identity"), split: settings.split)
            router.thresholds = thresholds
            router.label = settings.label ?? .weak
            let embeddings = try matrix("/cache/embeddings")
            let tokens = try file.read(Int64.self, from: "/cache/prompt_tokens").values
            guard case .array(let idValues)? = try? JSONValue.parse(try file.readBytes("/cache/task_ids")),
                idValues.count == embeddings.count, tokens.count == embeddings.count
            else { throw bad("its embedding cache is inconsistent") }
            for (i, v) in idValues.enumerated() {
                guard case .string(let id) = v else { throw bad("its embedding cache is inconsistent") }
                router.cache[id] = RouterInput(embedding: embeddings[i], promptTokens: Int(tokens[i]))
            }
            return router
        } catch let e as HDF5Error {
            throw UserError(
                path: path, problem: "is not a readable router file: \(e)", fix: "give a router written by `distill route train`",
                kind: e.kind == .fileNotFound || e.kind == .permissionDenied ? .io : .badData)
        }
    }

    /// Refuses a weak model other than the one the router was trained for.
    package func requireWeak(checksum: String, name: String) throws {
        guard checksum == weakChecksum else {
            throw UserError(
                path: name,
                problem: "the router was trained on the embeddings of the weak model \(weakChecksum), not this one (\(checksum))",
                fix: "route with the model the router was trained for, or train a router for this one", kind: .usage)
        }
    }
}
