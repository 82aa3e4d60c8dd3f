#!/usr/bin/env bash
# The main job: build distill in release mode, report what it sees, and run the kernel
# benchmark as a demonstration of the core (Tensor matmul against raw sgemm, GQA attention).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
swift build -c release --product distill
bin=.build/release/distill
"$bin" doctor
echo
"$bin" bench kernels --repeats 5
