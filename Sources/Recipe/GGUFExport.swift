// GGUF export of a loaded model for llama.cpp, shared by the `export` stage and
// `distill export gguf`. The format itself lives in Formats (GGUF.swift, GGUFLlama.swift).

import Foundation
import Formats
import NN

/// Writes `loaded` (base weights and tokenizer) as a llama.cpp GGUF file; general.name is
/// the checkpoint's file name without extension.
package func exportGGUF(_ loaded: LoadedModel, dtype: GGUFExportType, to path: String) throws {
    let tokenizer = try loaded.requireTokenizer()
    let name = URL(fileURLWithPath: loaded.path).deletingPathExtension().lastPathComponent
    try writeGGUF(model: loaded.model, tokenizer: tokenizer, dtype: dtype, name: name, to: path)
}
