"""Make the tokenizer fixtures for Tests/TextDataTests with Hugging Face `tokenizers`.

Writes into Tests/TextDataTests/Fixtures/:
  corpus.txt        the small training text (embedded below)
  gpt2_bpe.json     GPT-2 style: ByteLevel pre-tokenizer (GPT-2 regex), trained by HF
  llama3_bpe.json   Llama-3 style: Split(Llama-3 regex) + ByteLevel(use_regex=false),
                    ignore_merges, BOS via TemplateProcessing, trained by HF
  qwen2_bpe.json    Qwen2 style: NFC + Split(Qwen2 regex) + ByteLevel, merges saved as
                    legacy "a b" strings, ChatML special tokens
  cases.json        for each tokenizer: texts with the ids HF produces (with and without
                    special tokens) and HF's decodes; random id sequences with HF's decodes;
                    pre-tokenizer splits of random strings by HF's Oniguruma regexes

    /tmp/distill-ref/bin/python tools/make_tokenizer_fixtures.py

Manual cross-check (not in CI) that HF loads the files distill writes and encodes like distill:
run the CrossCheck test (see Tests/TextDataTests/TokenizerTests.swift) into DIR, then

    /tmp/distill-ref/bin/python tools/make_tokenizer_fixtures.py --crosscheck DIR
"""
import json, os, random

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "TextDataTests", "Fixtures")

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

CORPUS = """First Citizen:
Before we proceed any further, hear me speak.

All:
Speak, speak.

First Citizen:
You are all resolved rather to die than to famish?

All:
Resolved. resolved.

First Citizen:
First, you know Caius Marcius is chief enemy to the people.
We know't, we know't. I'll tell you what we've done: they're here, she's gone, I'm sure he'd say so.
DON'T SHOUT! It's 12:30 on 2024-05-17, and 1,234,567 people paid $89.99 (or 3.14159 each).
The numbers 0 1 22 333 4444 55555 666666 and 12345678901234567890 keep repeating: 12345, 12345.
    Indented line with    runs of   spaces,\ttabs\t\tand trailing spaces   
Windows line\r\nendings\r\n and blank lines


Unicode: café, naïve, façade, Straße, Ærøskøbing, Ελληνικά, русский текст, עברית, العربية.
日本語のテキストです。中文文本也很重要。한국어 문장입니다.
Emoji: 😀 😃 👍🏽 🇫🇷 👨‍👩‍👧‍👦 ❤️ and symbols ©®™ ±×÷ ≤≥≠ → ← ★ ♪.
Code: def f(x): return x**2 + 3*x - 1  # comment
    if (a && b) { print("hello, world"); }
<|endoftext|>Second document starts here. Whose house is this? 'Tis mine.
<|im_start|>user
What is 2+2?<|im_end|>
<|im_start|>assistant
It's 4.<|im_end|>
"""

CASES = [
    "", " ", "  ", "\n", "hello", " hello", "hello ", "  hello  world  ", "hello world",
    "\n\nfoo\n", "a\n\n\nb", "x  \t\n y", "tabs\tand\r\nCRLF\r\n", "end   ",
    "don't you'll I'M we've they'RE she'd it's", "'s 'S 'ſx '' 'hello 'll",
    "12345 1234567 3.14159 -42 1,000,000", "mixed123abc456def", "٣٤٥ ⅫⅣ ²³",
    "日本語のテキスト", "中文文本 한국어", "emoji 😀👍🏽 test 🇫🇷👨‍👩‍👧‍👦", "e\u0301 cafe\u0301 café",
    "<|endoftext|>", "text<|endoftext|>more", "a <|endoftext|> b", "<|im_start|>user\nHi<|im_end|>\n",
    "<|endoftext|><|endoftext|>", "<|endoftext", "First Citizen:\nBefore we proceed any further, hear me speak.",
    "\u00a0nbsp\u00a0 \u3000ideographic\u2003em", "zero\u200bwidth", "ÆØÅ æøå Straße",
    "    if (a && b) { print(\"hello, world\"); }", "Ünïcödé ✓ ★ ♪ →", "\t\t\tindented",
]

POOL = (list("aAbBzZ sS'tTrReElLdDmMvV") + [" ", " ", " ", "\t", "\n", "\r", "\u00a0", "\u3000", "\u2003", "\u000b", "\u0085",
        "ſ", "é", "e\u0301", "ß", "日", "本", "한", "😀", "👍🏽", "0", "1", "9", "٣", "²", "Ⅻ", ".", ",", "!", "?",
        "(", ")", "-", "_", "$", "\u200b", "\u200d", "’", "\"", "<", ">", "|"])


def train(pre_tokenizer, specials, vocab, ignore_merges=False, normalizer=None):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([CORPUS], trainer)
    return tok


def split(pattern):
    return pre_tokenizers.Split(Regex(pattern), behavior="isolated")


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "corpus.txt"), "w", newline="") as f:
        f.write(CORPUS)

    gpt2 = train(pre_tokenizers.ByteLevel(add_prefix_space=False),
                 ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], 600)

    llama3 = train(pre_tokenizers.Sequence([split(LLAMA3), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
                   ["<|begin_of_text|>", "<|end_of_text|>", "<|endoftext|>"], 600, ignore_merges=True)
    bos = llama3.token_to_id("<|begin_of_text|>")
    llama3.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", bos)]),
    ])

    qwen2 = train(pre_tokenizers.Sequence([split(QWEN2), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
                  ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], 500, normalizer=normalizers.NFC())

    files = {"gpt2_bpe.json": gpt2, "llama3_bpe.json": llama3, "qwen2_bpe.json": qwen2}
    for name, tok in files.items():
        tok.save(os.path.join(OUT, name))
    # Qwen2's published file writes merges as "a b" strings: exercise that form too.
    path = os.path.join(OUT, "qwen2_bpe.json")
    doc = json.load(open(path, encoding="utf-8"))
    doc["model"]["merges"] = [" ".join(m) for m in doc["model"]["merges"]]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)

    rng = random.Random(1234)
    corpus_lines = CORPUS.splitlines(keepends=True)
    texts = CASES + ["".join(rng.choice(POOL) for _ in range(rng.randint(1, 24))) for _ in range(60)] + \
        ["".join(corpus_lines[i:i + 3]) for i in range(0, len(corpus_lines), 3)]

    cases = {"tokenizers": {}, "pretokenizers": {}}
    for name, _ in files.items():
        tok = Tokenizer.from_file(os.path.join(OUT, name))
        entries = []
        for t in texts:
            ids = tok.encode(t).ids
            entries.append({"text": t, "ids": ids, "ids_no_special": tok.encode(t, add_special_tokens=False).ids,
                            "decoded": tok.decode(ids, skip_special_tokens=False),
                            "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
        decodes = []
        n = tok.get_vocab_size()
        for _ in range(40):
            ids = [rng.randrange(n + 3) for _ in range(rng.randint(1, 8))]
            decodes.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
        cases["tokenizers"][name] = {"encode": entries, "decode": decodes, "vocab_size": n}

    split_texts = CASES + ["".join(rng.choice(POOL) for _ in range(rng.randint(1, 30))) for _ in range(200)]
    for name, pattern in [("gpt2", GPT2), ("llama3", LLAMA3), ("qwen2", QWEN2)]:
        pt = split(pattern)
        cases["pretokenizers"][name] = [{"text": t, "pieces": [p for p, _ in pt.pre_tokenize_str(t)]}
                                        for t in split_texts]
    with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, separators=(",", ":"))
    print({k: os.path.getsize(os.path.join(OUT, k)) for k in sorted(os.listdir(OUT))})


def crosscheck(directory):
    """Compare distill's ids (DIR/<name>.ids.json) with HF's for every DIR/<name>.json."""
    ok = True
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json") or name.endswith(".ids.json"):
            continue
        tok = Tokenizer.from_file(os.path.join(directory, name))
        ref = json.load(open(os.path.join(directory, name[:-5] + ".ids.json"), encoding="utf-8"))
        bad = [i for i, (t, ids) in enumerate(zip(ref["texts"], ref["ids"])) if tok.encode(t).ids != ids]
        roundtrip = all(tok.decode(tok.encode(t, add_special_tokens=False).ids, skip_special_tokens=False) ==
                        (t if tok.normalizer is None else tok.normalizer.normalize_str(t)) for t in ref["texts"])
        print(f"{name}: vocab {tok.get_vocab_size()}, {len(ref['texts'])} texts ({len(ref['ids'][0])} corpus ids), "
              f"mismatches {bad[:10]}, HF decode round trip {roundtrip}")
        ok = ok and not bad and roundtrip
    print("CROSSCHECK", "OK" if ok else "FAILED")


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 3 and sys.argv[1] == "--crosscheck":
        crosscheck(sys.argv[2])
    else:
        main()
