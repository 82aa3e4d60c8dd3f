// Formats: HDF5 checkpoints (HDF5.swift is the only file that imports CHDF5), safetensors,
// GGUF, PEFT and Hugging Face config interchange. Layer 2: imports Core and TextData.
