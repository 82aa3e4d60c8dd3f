// The `export` stage: a checkpoint written as a Hugging Face folder, a PEFT adapter or a
// llama.cpp GGUF file (ModelIO does the writing).

import Foundation
import ModelIO
import Recipe

struct ExportExecutor: StageExecutor {
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .export(let s) = stage else { mismatch(stage, .export) }
        let loaded = try loadModel(from: context.path(of: s.checkpoint))
        switch s.format {
        case .hf:
            try exportHF(loaded, to: s.output)
        case .peft:
            try exportPEFT(loaded, to: s.output)
        case .gguf:
            try exportGGUF(loaded, dtype: .f32, to: s.output)
        case .ggufAdapter:
            try exportGGUFAdapter(loaded, dtype: .f32, to: s.output)
        }
        emit(.message("wrote \(s.format.rawValue) export to \(s.output)"))
        return StageOutputs(files: [s.output], summary: ["format": .string(s.format.rawValue)])
    }
}
