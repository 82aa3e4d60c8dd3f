"""Make the PEFT interchange fixture for Tests/FormatsTests, and check distill's PEFT exports.

Writes Tests/FormatsTests/Fixtures/tiny_llama_peft/: a LoRA adapter saved by peft
(adapter_config.json, adapter_model.safetensors) for the tiny_llama fixture (run
tools/make_hf_fixture.py first), rank 4, alpha 8, rsLoRA, on q_proj, v_proj, up_proj and
down_proj, with random non-zero B so the adapter changes the logits, and reference.json:
the text's ids, the mean causal-LM loss and the last-position logits with the adapter, and
the base's loss for contrast, all computed by peft + transformers in float32.

Also writes Tests/FormatsTests/Fixtures/tiny_llama_peft_pattern/, the same kind of adapter
(rank 4, alpha 8, plain scaling) whose target_modules is a regex covering only some modules
of some layers (PATTERN below: layer 0's down_proj, layer 1's q_proj and v_proj), with its
reference.json, which also lists the modules peft adapted.

    /tmp/distill-ref/bin/python tools/make_peft_fixture.py

Manual check that peft loads an adapter distill exported onto the Hugging Face export of its
base, adapts exactly the modules whose tensors the export holds (no more: extra modules would
get B = 0 and hide from the logits), and computes the logits distill computes (`distill eval --text FILE --last-logits
--json` on the adapter checkpoint):

    /tmp/distill-ref/bin/python tools/make_peft_fixture.py --check-export ADAPTER_DIR \
        --base BASE_HF_DIR --text FILE --expect EVAL.json
"""
import argparse, json, os, shutil

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from tokenizers import Tokenizer
from transformers import LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "Tests", "FormatsTests", "Fixtures")
BASE = os.path.join(FIXTURES, "tiny_llama")
OUT = os.path.join(FIXTURES, "tiny_llama_peft")
OUT_PATTERN = os.path.join(FIXTURES, "tiny_llama_peft_pattern")
PATTERN = r".*\.0\.mlp\.down_proj|.*\.1\.self_attn\.(q|v)_proj"
TEXT = "The keeper wrote in her log: wind from the west, two boats in the harbour."


def loss_and_logits(model, ids):
    with torch.no_grad():
        x = torch.tensor([ids])
        out = model(input_ids=x, labels=x)
    return out.loss.item(), out.logits[0, -1].tolist()


def adapted_modules(model):
    """The module paths (model.layers.0.mlp.down_proj) peft put a LoRA layer on."""
    from peft.tuners.lora import LoraLayer
    prefix = "base_model.model."
    return sorted(n[len(prefix):] for n, m in model.named_modules() if isinstance(m, LoraLayer))


def make_one(out, target_modules, use_rslora, seed):
    base = LlamaForCausalLM.from_pretrained(BASE, attn_implementation="eager").float().eval()
    ids = Tokenizer.from_file(os.path.join(BASE, "tokenizer.json")).encode(TEXT).ids
    base_loss, _ = loss_and_logits(base, ids)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, use_rslora=use_rslora, task_type="CAUSAL_LM",
                     target_modules=target_modules)
    torch.manual_seed(seed)
    model = get_peft_model(base, cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.3)
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out)
    os.remove(os.path.join(out, "README.md"))  # peft's model card template
    # A machine-specific absolute path would make the fixture differ between machines.
    path = os.path.join(out, "adapter_config.json")
    config = json.load(open(path))
    config["base_model_name_or_path"] = "../tiny_llama"
    json.dump(config, open(path, "w"), indent=2, sort_keys=True)
    loss, logits = loss_and_logits(model, ids)
    assert abs(loss - base_loss) > 1e-2, "the adapter should change the loss"
    reference = {"text": TEXT, "ids": ids, "loss": loss, "base_loss": base_loss, "last_logits": logits,
                 "peft": __import__("peft").__version__}
    if isinstance(target_modules, str):
        reference["adapted_modules"] = adapted_modules(model)
    json.dump(reference, open(os.path.join(out, "reference.json"), "w"))
    print(f"wrote {out}: loss {loss:.6f} (base {base_loss:.6f})")


def make():
    make_one(OUT, ["q_proj", "v_proj", "up_proj", "down_proj"], use_rslora=True, seed=7)
    make_one(OUT_PATTERN, PATTERN, use_rslora=False, seed=11)


def check(adapter, base_dir, text_file, expect_file):
    base = LlamaForCausalLM.from_pretrained(base_dir, attn_implementation="eager").float().eval()
    model = PeftModel.from_pretrained(base, adapter).eval()
    from safetensors import safe_open
    with safe_open(os.path.join(adapter, "adapter_model.safetensors"), "pt") as f:
        saved = sorted({k[len("base_model.model."):].rsplit(".lora_", 1)[0] for k in f.keys()})
    built = adapted_modules(model)
    print(f"target_modules {json.load(open(os.path.join(adapter, 'adapter_config.json')))['target_modules']!r}: "
          f"peft adapted {len(built)} modules, the file holds {len(saved)}")
    if built != saved:
        raise SystemExit(f"MISMATCH: peft adapted {sorted(set(built) - set(saved))} without tensors, "
                         f"and not {sorted(set(saved) - set(built))}")
    text = open(text_file).read()
    ids = Tokenizer.from_file(os.path.join(base_dir, "tokenizer.json")).encode(text).ids
    loss, logits = loss_and_logits(model, ids)
    expect = json.load(open(expect_file))
    diff = max(abs(a - b) for a, b in zip(logits, expect["last_logits"]))
    print(f"peft {__import__('peft').__version__}: loss {loss:.7f} vs distill {expect['loss']:.7f} "
          f"(diff {abs(loss - expect['loss']):.2e}); last logits max |diff| {diff:.2e} over {len(logits)}")
    if diff > 1e-4 or abs(loss - expect["loss"]) > 1e-4:
        raise SystemExit("MISMATCH")
    print("OK")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-export")
    ap.add_argument("--base")
    ap.add_argument("--text")
    ap.add_argument("--expect")
    a = ap.parse_args()
    if a.check_export:
        check(a.check_export, a.base, a.text, a.expect)
    else:
        make()
