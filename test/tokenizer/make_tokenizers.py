#!/usr/bin/env python3
"""Writes the small tokenizers the tokenizer tests use, trained with the
reference libraries, and records the reference encodings (cases.json):

- gpt2-bpe.json   byte-level BPE as GPT-2 writes it (ByteLevel pre-tokenizer
                  with its own expression, merges as "a b" strings);
- llama3-bpe.json as Llama 3: a Split on its expression then ByteLevel,
                  ignore_merges, <|begin_of_text|> added by a template;
- qwen2-bpe.json  as Qwen2: the NFC normalizer and single-digit splits;
- spm.model       a SentencePiece BPE model with byte fallback (the format
                  of Llama 2 and Mistral's tokenizer.model).

The reference ids come from Hugging Face `tokenizers` and Python
`sentencepiece`, so the committed files are the test's independent oracle;
CI only reads them. Needs a venv with tokenizers and sentencepiece:

  build/bench-venv/bin/pip install tokenizers sentencepiece
  build/bench-venv/bin/python test/tokenizer/make_tokenizers.py
"""
import io
import json
import os
import sys

import sentencepiece as spm
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, \
    processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
         r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

MULTILINGUAL = [
    "Le café est très bon, n'est-ce pas? Ça coûte 3,50 €.",
    "Größere Äpfel schmecken süßer als die kleinen.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.",
    "日本語のテキストも少し入れておきます。東京は晴れです。",
    "中文分词需要很多数据，但是这里只有一点点。",
    "한국어 문장도 하나 넣어 둡니다.",
    "Emoji: 🤖🚀✨ and math: ∑ x² ≤ ∞, 1/2 ≈ 0.5",
    "def main():\n    return 42  # the answer\n\n\tif x != y:\n\t\tpass\n",
]

CASES = [
    "Hello world",
    "Hello, world! How's it going? I'LL do it; they'd've said 'no'.",
    "The year 2026 had 1234567 tokens and 3.14159 digits.",
    "  leading spaces and trailing   ",
    "a   b\n\n  c\t\td\r\n e",
    "line one\nline two\n\n\nline five",
    "café naïve résumé",
    "日本語のテキスト",
    "中文分词",
    "Быстрая лиса",
    "🤖 robots 🚀 launch ✨",
    "x² + y² = z²; ∑ᵢ aᵢ",
    "<|endoftext|>",
    "before<|endoftext|>after",
    "tab\there",
    "don't DON'T Don'T",
    "",
    " ",
    "\n",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "http://example.com/path?query=1&other=2",
    "ｆｕｌｌｗｉｄｔｈ ｔｅｘｔ",
    "Ünïcödé ÀÉÎÕÜ ñ",
]


def random_cases(count=40, seed=2026):
    """Strings drawn from the characters the split expressions treat
    differently: letters of several scripts, digit runs, every kind of
    whitespace run, punctuation, apostrophe contractions in both cases."""
    import random
    rng = random.Random(seed)
    palette = (["a", "Z", "é", "ß", "Ж", "λ", "日", "本", "한", "٣", "½", "7", "0", "42", "1234",
                " ", "  ", "\t", "\n", "\r\n", "\n\n", " \n", "\u00a0", "\u3000",
                ".", ",", "!?", "...", "$", "€", "🤖", "✨", "-", "_", "'", "'s", "'LL",
                "'ve", "'D", "\"", "(", ")", "/", "*"] +
               ["the", " the", "token", " Token", "ing", "hasten"])
    return ["".join(rng.choice(palette) for _ in range(rng.randint(1, 24)))
            for _ in range(count)]


# Text whose NFC form differs (a combining acute accent after e).
NFC_CASES = ["cafe\u0301", "e\u0301\u0301", "\u212b ngstrom"]


def corpus():
    lines = []
    for name in ("README.md", os.path.join("docs", "design.md")):
        with open(os.path.join(ROOT, name), encoding="utf-8") as f:
            lines += [l for l in f.read().splitlines() if l.strip()]
    return lines + MULTILINGUAL * 20


# Digit runs, so that the Llama 3 and Qwen2 vocabularies learn multi-digit
# tokens and their digit grouping shows in the ids.
NUMBERS = ["Call 1234567 or 7654321; in 2026 we had 1000000 tokens, 123456 of them "
           "new, at 12:34:56 on 2026-11-30; 3.14159 and 2.71828; 555 1234 99999."] * 40


def byte_level(pattern, name, vocab, ignore_merges=False, bos=None, nfc=False):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if pattern is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>"] + ([bos] if bos else [])
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus() + (NUMBERS if pattern is not None else []), trainer)
    if bos:
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[
                (bos, tok.token_to_id(bos))])])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    path = os.path.join(HERE, name)
    tok.save(path)
    if pattern is None:
        # GPT-2's own tokenizer.json writes each merge as one "a b" string.
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        data["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m
                                   for m in data["model"]["merges"]]
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
        tok = Tokenizer.from_file(path)
    return tok


def main():
    records = []
    for name, tok in [
        # The default model (test/models/default) was trained on this one's
        # ids: it is read, not retrained (training is not reproducible
        # across runs), unless --retrain-gpt2.
        ("gpt2-bpe.json",
         byte_level(None, "gpt2-bpe.json", 700)
         if "--retrain-gpt2" in sys.argv or not os.path.exists(os.path.join(HERE, "gpt2-bpe.json"))
         else Tokenizer.from_file(os.path.join(HERE, "gpt2-bpe.json"))),
        ("llama3-bpe.json", byte_level(LLAMA3, "llama3-bpe.json", 800, ignore_merges=True,
                                       bos="<|begin_of_text|>")),
        ("qwen2-bpe.json", byte_level(QWEN2, "qwen2-bpe.json", 800, nfc=True)),
    ]:
        for text in CASES + random_cases():
            plain = tok.encode(text, add_special_tokens=False).ids
            special = tok.encode(text, add_special_tokens=True).ids
            records.append({"tokenizer": name, "text": text, "ids": plain,
                            "ids_with_special": special,
                            "decoded": tok.decode(special, skip_special_tokens=True)})
        if name.startswith("qwen2"):
            for text in NFC_CASES:
                records.append({"tokenizer": name, "text": text, "nfc_changes": True,
                                "ids": tok.encode(text, add_special_tokens=False).ids})

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_writer=model, vocab_size=600,
        model_type="bpe", byte_fallback=True, character_coverage=0.9995,
        bos_id=1, eos_id=2, unk_id=0, pad_id=-1, minloglevel=2,
        # As Llama 2's tokenizer.model: no NFKC rules (they are most of the file).
        normalization_rule_name="identity", remove_extra_whitespaces=False)
    with open(os.path.join(HERE, "spm.model"), "wb") as f:
        f.write(model.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    for text in CASES + random_cases():
        ids = sp.encode(text)
        records.append({"tokenizer": "spm.model", "text": text, "ids": ids,
                        "ids_with_special": [sp.bos_id()] + ids,
                        "decoded": sp.decode(ids)})

    with open(os.path.join(HERE, "cases.json"), "w", encoding="utf-8") as f:
        json.dump({"generated_by": "test/tokenizer/make_tokenizers.py",
                   "tokenizers": __import__("tokenizers").__version__,
                   "sentencepiece": spm.__version__, "cases": records},
                  f, ensure_ascii=False, indent=1)
    print(f"{len(records)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
