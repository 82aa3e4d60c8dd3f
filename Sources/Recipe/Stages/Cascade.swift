// The `cascade` stage: the cascade and vote analysis of two models the run evaluated
// (docs/routing.md, *distill verdicts cascade*; docs/recipes.md).

import JSON

/// Analyse cascades, votes at matched compute and adaptive sampling over the run's verdicts.
package struct CascadeStage: StageSettings {
    package static let type = StageType.cascade

    package var name = "cascade"
    /// The two models' names in the run's verdict table (eval arms, sample stages). Required.
    package var weak = ""
    package var strong = ""
    /// Weak samples per request, each >= 1. Default 1, 2, 4, 8.
    package var m = [1, 2, 4, 8]
    /// Thresholds on the winner's share of the m answers, each 0...1.
    package var taus = [0, 0.5, 0.625, 0.75, 0.875, 1]
    /// Adaptive sampling stops when this many samples agree, each >= 2. Default 2, 3.
    package var agree = [2, 3]
    /// The strong model answers by the vote of its first k samples, >= 1. Default 1.
    package var strongK = 1
    /// Share of tasks that calibrate the difficulty bins, 0 ..< 1. Default 0.5.
    package var split = 0.5
    /// Parameter counts for models whose source does not record them.
    package var parameters: [String: Int] = [:]
    /// Bootstrap resamples, >= 0. Default 2000.
    package var resamples = 2000
    /// >= 0. Default: the recipe's seed. Seeds the split and the bootstrap.
    package var seed = 0
    /// The report (JSON); `.md` and `.svg` beside it, and the verdict table (`verdicts.jsonl`).
    /// Default `cascade.json`.
    package var output = "cascade.json"

    package init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, weak, strong, m, taus, agree
        case strongK = "strong_k"
        case split, parameters, resamples, seed, output
    }

    package var checkpointInputs: [CheckpointSource] { [] }
    package var inputFiles: [String] { [] }
}

extension CascadeStage {
    package static func read(_ v: JSONValue, path: String, name: String, seed: Int, log: IssueLog) -> CascadeStage {
        let r = ObjectReader<CascadeStage.CodingKeys>(v, path: path, log: log, alsoAllowed: ["type"])
        var s = CascadeStage()
        s.name = name
        s.seed = seed
        readCommon(r, name: .name, output: .output, into: &s)
        readModelPair(r, weak: .weak, strong: .strong, into: &s.weak, &s.strong)
        if let m = r.numbers(.m, .atLeast(1), integers: true) { s.m = m.map { Int($0) } }
        if let taus = r.numbers(.taus, .closed(0, 1)) { s.taus = taus }
        if let agree = r.numbers(.agree, .atLeast(2), integers: true) { s.agree = agree.map { Int($0) } }
        r.read(.strongK, into: &s.strongK, .atLeast(1))
        r.read(.split, into: &s.split, .halfOpen(0, 1))
        if let counts = r.value(.parameters) {
            if case .object(let object) = counts, case let entries = object.entries,
                case let values = entries.compactMap({ e in ObjectReader<CodingKeys>.integer(e.value).map { (e.key, $0) } }),
                values.count == entries.count, values.allSatisfy({ $0.1 > 0 })
            {
                s.parameters = Dictionary(values, uniquingKeysWith: { a, _ in a })
            } else {
                log.add(.rule("must be an object of model names and positive parameter counts"), at: r.path(.parameters))
            }
        }
        r.read(.resamples, into: &s.resamples, .atLeast(0))
        r.read(.seed, into: &s.seed, .atLeast(0))
        return s
    }

    package var stage: Stage { .cascade(self) }
    package static let producesCheckpoint = false
    package static let readsEarlierStages: [StageType] = [.eval, .sample]

    package mutating func link(_ l: StageLinker) {}
}
