// TextData: tokenizers (byte-level BPE, Hugging Face tokenizer.json), chat templates,
// corpora and their settings, the token cache, batching and packing, fine-tune data order.
// Imports Platform, JSON and Core (docs/architecture.md).
