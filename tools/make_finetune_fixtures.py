"""Reference values for distill's preference and distillation losses, computed by TRL's own code.

Writes Tests/TrainingTests/Fixtures/preference.json and distillation.json. Run from the
repository root with /tmp/distill-ref/bin/python tools/make_finetune_fixtures.py (a few
seconds). Deterministic (fixed seed). Inputs are float32 values; the references are computed in
float64 from those values.

preference.json: one batch of P pairs (logits [2P, T, V] already aligned with the targets,
chosen rows first, -100 outside completions) and reference log-probs; for each case the loss,
TRL's six metrics and d loss / d logits. The DPO-family cases run DPOTrainer._compute_loss
itself (with a stand-in trainer and a stand-in model that returns TRL's per-token log-probs
from the fixture logits); cDPO and SimPO run CPOTrainer.cpo_loss (cDPO is CPO's label-smoothed
`sigmoid` fed with policy-reference log-ratios).

distillation.json: student and teacher logits [N, V] with an ignore mask; for each beta and
temperature GKDTrainer.generalized_jsd_loss and its gradient with respect to the student. The
top-k cases keep the teacher's K most likely tokens (log-probs at the temperature) and take the
divergence over K + 1 buckets with TRL's server-distillation `_add_tail_bucket` and
`_jsd_divergence` (masked mean over positions, as its `_reduce_divergence_loss` batchmean).

chat_templates.json (Tests/TextDataTests/Fixtures): conversations rendered by transformers'
render_jinja_template with TRL's training templates (llama3_training.jinja and
qwen2_5_training.jinja, whose {% generation %} blocks mark the assistant-only loss): the text and
the character spans of the generation blocks.
"""

import json
import math
import types
from collections import defaultdict

import torch
import torch.nn.functional as F
from trl.experimental.cpo.cpo_trainer import CPOTrainer
from trl.experimental.gkd.gkd_trainer import GKDTrainer
from trl.experimental.server_distillation.server_distillation_trainer import _add_tail_bucket, _jsd_divergence
from trl.trainer.dpo_trainer import DPOTrainer
from trl.trainer.utils import selective_log_softmax
from transformers.utils.chat_template_utils import render_jinja_template
import os
import trl

torch.manual_seed(20261123)
OUT = "Tests/TrainingTests/Fixtures/"


def f32(t):
    return t.float().double()


def per_token(logits, labels):
    """TRL's per-token log-probs with 0 where the label is -100."""
    mask = labels != -100
    lp = selective_log_softmax(logits, torch.where(mask, labels, 0))
    return lp * mask


def preference():
    P, T, V = 3, 5, 7
    logits0 = f32(torch.randn(2 * P, T, V) * 1.5)
    # input_ids has T + 1 columns: column 0 is prompt; shifted completion mask = completion_mask[:, 1:].
    input_ids = torch.randint(0, V, (2 * P, T + 1))
    starts = [2, 1, 3, 2, 4, 1]  # first completion column (>= 1) per row
    ends = [6, 5, 6, 4, 6, 6]  # one past the last completion column
    completion_mask = torch.zeros(2 * P, T + 1, dtype=torch.long)
    for r in range(2 * P):
        completion_mask[r, starts[r] : ends[r]] = 1
    labels = input_ids[:, 1:].masked_fill(completion_mask[:, 1:] == 0, -100)
    ref = f32(torch.randn(2 * P) * 2 - 8)
    ref_chosen, ref_rejected = ref[:P], ref[P:]

    def dpo_case(kind, beta, eps, sft_weight=0.0):
        logits = logits0.clone().requires_grad_(True)
        lp = per_token(logits, labels)
        model = lambda **kw: types.SimpleNamespace(
            log_probs=lp,
            entropy=torch.zeros_like(lp),
            mean_logits=torch.zeros_like(lp),
            is_top1=torch.zeros_like(lp, dtype=torch.bool),
        )
        stub = types.SimpleNamespace(
            model=types.SimpleNamespace(training=True),
            accelerator=types.SimpleNamespace(device="cpu", gather_for_metrics=lambda x: x, gather=lambda x: x),
            aux_loss_enabled=False, ld_alpha=None, precompute_ref_logps=True, f_divergence_type="reverse_kl",
            loss_types=[kind] + (["sft"] if sft_weight else []), loss_weights=[1.0] + ([sft_weight] if sft_weight else []), beta=beta, label_smoothing=eps, use_weighting=False,
            _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0, _tp_size=1,
        )
        inputs = {
            "input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "completion_mask": completion_mask, "ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected,
        }
        loss = DPOTrainer._compute_loss(stub, model, inputs, False)
        loss.backward()
        m = stub._metrics["train"]
        names = ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"]
        return loss.item(), {k: m[k][0] for k in names}, logits.grad

    def cpo_case(kind, beta, eps, gamma, inputs_are):
        logits = logits0.clone().requires_grad_(True)
        lp = per_token(logits, labels)
        mask = (labels != -100).double()
        seq = lp.sum(1) / mask.sum(1) if inputs_are == "mean" else lp.sum(1)
        if inputs_are == "logratio":
            seq = seq - ref
        chosen, rejected = seq[:P], seq[P:]
        stub = types.SimpleNamespace(
            alpha=0.0, loss_type=kind, simpo_gamma=gamma, beta=beta, label_smoothing=eps,
            accelerator=types.SimpleNamespace(device="cpu"),
        )
        losses, cr, rr = CPOTrainer.cpo_loss(stub, chosen, rejected)
        loss = losses.mean()
        loss.backward()
        logps = lp.sum(1) / mask.sum(1) if inputs_are == "mean" else lp.sum(1)
        if inputs_are == "logratio":  # DPO-style rewards: beta * log-ratio
            cr, rr = beta * (logps[:P] - ref_chosen), beta * (logps[P:] - ref_rejected)
        metrics = {
            "rewards/chosen": cr.mean().item(), "rewards/rejected": rr.mean().item(),
            "rewards/accuracies": (cr > rr).double().mean().item(), "rewards/margins": (cr - rr).mean().item(),
            "logps/chosen": logps[:P].mean().item(), "logps/rejected": logps[P:].mean().item(),
        }
        return loss.item(), metrics, logits.grad

    cases = []
    for kind, beta, eps in [("sigmoid", 0.1, 0.0), ("sigmoid", 0.5, 0.0), ("hinge", 0.3, 0.0), ("ipo", 0.2, 0.0), ("robust", 0.1, 0.2)]:
        loss, metrics, grad = dpo_case(kind, beta, eps)
        cases.append({"kind": kind, "beta": beta, "labelSmoothing": eps, "simpoGamma": 0.5, "loss": loss, "metrics": metrics, "grad": grad.flatten().tolist()})
    # RPO: DPO plus TRL's "sft" loss type (the chosen completions' token-mean NLL), weighted.
    loss, metrics, grad = dpo_case("sigmoid", 0.1, 0.0, sft_weight=0.7)
    cases.append({"kind": "sigmoid", "beta": 0.1, "labelSmoothing": 0.0, "simpoGamma": 0.5, "sftWeight": 0.7, "loss": loss, "metrics": metrics, "grad": grad.flatten().tolist()})
    loss, metrics, grad = cpo_case("sigmoid", 0.1, 0.25, 0.0, "logratio")
    cases.append({"kind": "conservative", "beta": 0.1, "labelSmoothing": 0.25, "simpoGamma": 0.5, "loss": loss, "metrics": metrics, "grad": grad.flatten().tolist()})
    for eps in [0.0, 0.1]:
        loss, metrics, grad = cpo_case("simpo", 2.0, eps, 0.8, "mean")
        cases.append({"kind": "simpo", "beta": 2.0, "labelSmoothing": eps, "simpoGamma": 0.8, "loss": loss, "metrics": metrics, "grad": grad.flatten().tolist()})

    # The sums distill's sequenceLogProbs must reproduce (TRL: per-token log-probs summed).
    seq = per_token(logits0, labels).sum(1)
    return {
        "pairs": P, "length": T, "vocab": V,
        "logits": logits0.flatten().tolist(), "targets": labels.flatten().tolist(),
        "refChosen": ref_chosen.tolist(), "refRejected": ref_rejected.tolist(),
        "sequenceLogProbs": seq.tolist(), "cases": cases,
    }


def distillation():
    N, V = 6, 9
    student0 = f32(torch.randn(N, V) * 2)
    teacher = f32(torch.randn(N, V) * 2)
    labels = torch.tensor([3, -100, 0, 8, -100, 5])
    cases = []
    for beta in [0.0, 0.5, 0.9, 1.0]:
        for temperature in [1.0, 2.0]:
            s = student0.clone().requires_grad_(True)
            loss = GKDTrainer.generalized_jsd_loss(s[None], teacher[None], labels=labels[None], beta=beta, temperature=temperature)
            loss.backward()
            cases.append({"beta": beta, "temperature": temperature, "loss": loss.item(), "grad": s.grad.flatten().tolist()})
    K = 3
    topk_cases = []
    for beta in [0.0, 0.5, 1.0]:
        for temperature in [1.0, 2.0]:
            t_lp, t_ids = torch.topk(F.log_softmax(teacher / temperature, dim=-1), K, dim=-1)
            s = student0.clone().requires_grad_(True)
            s_lp = F.log_softmax(s / temperature, dim=-1).gather(-1, t_ids)
            valid = torch.ones_like(t_lp, dtype=torch.bool)
            s_sparse, support = _add_tail_bucket(s_lp, valid)
            t_sparse, _ = _add_tail_bucket(t_lp, valid)
            per_row = _jsd_divergence(s_sparse, t_sparse, beta, support_mask=support).sum(-1)
            mask = labels != -100
            loss = per_row[mask].sum() / mask.sum()
            loss.backward()
            topk_cases.append({
                "beta": beta, "temperature": temperature, "k": K, "ids": t_ids.flatten().tolist(),
                "logProbs": t_lp.flatten().tolist(), "loss": loss.item(), "grad": s.grad.flatten().tolist(),
            })
    return {
        "rows": N, "vocab": V, "student": student0.flatten().tolist(), "teacher": teacher.flatten().tolist(),
        "targets": labels.tolist(), "cases": cases, "topKCases": topk_cases,
    }


def chat_templates():
    folder = os.path.join(os.path.dirname(trl.__file__), "chat_templates")
    conversations = [
        [
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
        ],
        [
            {"role": "system", "content": "You answer in French."}, {"role": "user", "content": "Thanks"},
            {"role": "assistant", "content": "De rien, avec plaisir."},
        ],
    ]
    cases = []
    for template, name in [("chatml", "qwen2_5_training.jinja"), ("llama3", "llama3_training.jinja")]:
        with open(os.path.join(folder, name)) as f:
            jinja = f.read()
        for conv in conversations:
            text, spans = render_jinja_template(
                conversations=[conv], chat_template=jinja, return_assistant_tokens_mask=True, bos_token="<|begin_of_text|>")
            cases.append({"template": template, "source": "trl/chat_templates/" + name, "messages": conv,
                          "text": text[0], "generation": [list(s) for s in spans[0]]})
    return {"cases": cases}


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    outputs = [
        (OUT + "preference.json", preference()), (OUT + "distillation.json", distillation()),
        ("Tests/TextDataTests/Fixtures/chat_templates.json", chat_templates()),
    ]
    for path, data in outputs:
        with open(path, "w") as f:
            json.dump(data, f, separators=(",", ":"))
            f.write("\n")
        print("wrote", path)
