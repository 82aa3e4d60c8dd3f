#!/usr/bin/env bash
# The whole test suite: op gradients against finite differences and PyTorch fixtures, the
# composed Llama block, tokenizer and HDF5 interchange, and the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
swift build --build-tests
swift test --skip-build "$@"
