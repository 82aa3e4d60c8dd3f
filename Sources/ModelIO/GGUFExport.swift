// GGUF export for llama.cpp, shared by the `export` stage and `distill export gguf`. The
// container is Formats' (GGUF.swift); the Llama tensors and metadata are GGUFLlama.swift.

import Foundation

/// Writes `loaded` as a llama.cpp GGUF model file with its tokenizer; an adapter checkpoint
/// is folded into its base first (as the Hugging Face export does). general.name is the
/// checkpoint's file name without extension; the model's chat style, when it has one, is
/// written as tokenizer.chat_template (the published template it was recognised from).
package func exportGGUF(_ loaded: LoadedModel, dtype: GGUFExportType, to path: String) throws {
    let tokenizer = try loaded.requireTokenizer()
    try writeGGUF(
        model: loaded.model, tokenizer: tokenizer, dtype: dtype, name: ggufName(loaded.path), chatTemplate: loaded.chat?.jinja,
        to: path)
}

/// Writes the adapter of `loaded` (an adapter checkpoint loaded onto its base) as a llama.cpp
/// GGUF LoRA adapter, to be used with the base exported by `exportGGUF` (llama.cpp's
/// `--lora`, llama-cpp-python's `lora_path`).
package func exportGGUFAdapter(_ loaded: LoadedModel, dtype: GGUFExportType, to path: String) throws {
    let info = try loaded.requireAdapter(for: "export gguf --adapter")
    try writeGGUFAdapter(model: loaded.model, lora: info.lora, dtype: dtype, name: ggufName(loaded.path), to: path)
}

private func ggufName(_ path: String) -> String {
    URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
}
