// Formats: file containers only, each validated before any large allocation: HDF5
// (HDF5.swift is the only file that imports CHDF5), safetensors and GGUF (with its
// dequantizers). What the files mean as models, adapters and checkpoints is ModelIO's
// (docs/architecture.md).
