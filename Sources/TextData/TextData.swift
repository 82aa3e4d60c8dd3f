// TextData: tokenizers (byte-level BPE, Hugging Face tokenizer.json), corpora, chat
// templates, batching and packing. Layer 1: imports only Core.
