"""Make the PEFT interchange fixture for Tests/FormatsTests, and check distill's PEFT exports.

Writes Tests/FormatsTests/Fixtures/tiny_llama_peft/: a LoRA adapter saved by peft
(adapter_config.json, adapter_model.safetensors) for the tiny_llama fixture (run
tools/make_hf_fixture.py first), rank 4, alpha 8, rsLoRA, on q_proj, v_proj, up_proj and
down_proj, with random non-zero B so the adapter changes the logits, and reference.json:
the text's ids, the mean causal-LM loss and the last-position logits with the adapter, and
the base's loss for contrast, all computed by peft + transformers in float32.

    /tmp/distill-ref/bin/python tools/make_peft_fixture.py

Manual check that peft loads an adapter distill exported onto the Hugging Face export of its
base and computes the logits distill computes (`distill eval --text FILE --last-logits
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
TEXT = "The keeper wrote in her log: wind from the west, two boats in the harbour."


def loss_and_logits(model, ids):
    with torch.no_grad():
        x = torch.tensor([ids])
        out = model(input_ids=x, labels=x)
    return out.loss.item(), out.logits[0, -1].tolist()


def make():
    base = LlamaForCausalLM.from_pretrained(BASE, attn_implementation="eager").float().eval()
    ids = Tokenizer.from_file(os.path.join(BASE, "tokenizer.json")).encode(TEXT).ids
    base_loss, _ = loss_and_logits(base, ids)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, use_rslora=True, task_type="CAUSAL_LM",
                     target_modules=["q_proj", "v_proj", "up_proj", "down_proj"])
    torch.manual_seed(7)
    model = get_peft_model(base, cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.3)
    shutil.rmtree(OUT, ignore_errors=True)
    model.save_pretrained(OUT)
    os.remove(os.path.join(OUT, "README.md"))  # peft's model card template
    # A machine-specific absolute path would make the fixture differ between machines.
    path = os.path.join(OUT, "adapter_config.json")
    config = json.load(open(path))
    config["base_model_name_or_path"] = "../tiny_llama"
    json.dump(config, open(path, "w"), indent=2, sort_keys=True)
    loss, logits = loss_and_logits(model, ids)
    assert abs(loss - base_loss) > 1e-2, "the adapter should change the loss"
    reference = {"text": TEXT, "ids": ids, "loss": loss, "base_loss": base_loss, "last_logits": logits,
                 "peft": __import__("peft").__version__}
    json.dump(reference, open(os.path.join(OUT, "reference.json"), "w"))
    print(f"wrote {OUT}: loss {loss:.6f} (base {base_loss:.6f})")


def check(adapter, base_dir, text_file, expect_file):
    base = LlamaForCausalLM.from_pretrained(base_dir, attn_implementation="eager").float().eval()
    model = PeftModel.from_pretrained(base, adapter).eval()
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
