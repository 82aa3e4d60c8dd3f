#!/usr/bin/env bash
# The main job: build distill in release mode, report what it sees, and run the quickstart
# recipe (train a tokenizer and a small Llama on Data/stories.txt, evaluate it, sample from
# it, export it to Hugging Face format) into Checkpoints/quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
swift build -c release --product distill
bin=.build/release/distill
"$bin" doctor
echo
"$bin" run Recipes/quickstart.json "$@"
