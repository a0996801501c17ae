#!/usr/bin/env python3
"""The runtime's tokenizers against the reference libraries' output recorded
in cases.json (Hugging Face `tokenizers` for the three byte-level BPE
tokenizer.json files, Python `sentencepiece` for spm.model; see
make_tokenizers.py), through the C API.

Checks, for each tokenizer:
- every recorded text encodes to the reference ids, with and without the
  special tokens the template adds, and the reference ids decode to the
  reference text (23 chosen texts and 40 random ones each);
- decode(encode(text)) gives the text back, byte for byte (byte-level BPE);
- a text stream releases only whole UTF-8 characters, holds back a
  character split across tokens, and its pieces add up to the full decode;
- text that NFC would change is refused by a tokenizer with the NFC
  normalizer, naming the code point;
- chat templates (Llama 3, Llama 2, Mistral, Qwen2, Zephyr, Gemma, Phi-3 and
  one using namespace, loop controls, slices, tests and filters) render as
  jinja2 renders them for Hugging Face (chat_cases.json), and the templates'
  raise_exception and Jinja hasten does not implement are errors that say so;
- tokenizer_config.json's EOS and chat template are read; bad files (missing,
  malformed, unsupported model or expression, a corrupt SentencePiece model,
  a folder without a tokenizer), ids outside the vocabulary and short output
  buffers are refused with messages that name the problem.

usage: tokenizer_vs_reference.py BUILD_DIR
"""
import ctypes
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import e2e_common as e2e  # noqa: E402
import hasten_ctypes as hc  # noqa: E402


def strict_utf8(data):
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def refused(c, rt, path, expect, what):
    try:
        rt.tokenizer(path).free()
        c.check(False, f"{what}: loaded, but should be refused")
    except hc.HastenError as e:
        c.check(expect in str(e), f"{what}: refused ({str(e)[:150]})")


def check_chat_templates(c, rt):
    with open(os.path.join(HERE, "chat_cases.json"), encoding="utf-8") as f:
        data = json.load(f)
    with tempfile.TemporaryDirectory(prefix="hasten-chat-") as work:
        shutil.copy(os.path.join(HERE, "spm.model"), os.path.join(work, "tokenizer.model"))
        results = {}
        for case in data["cases"]:
            name = case["template"]
            with open(os.path.join(work, "tokenizer_config.json"), "w", encoding="utf-8") as f:
                json.dump({"bos_token": "<s>", "eos_token": "</s>",
                           "chat_template": data["templates"][name]}, f)
            tok = rt.tokenizer(work)
            messages = data["conversations"][case["conversation"]]
            try:
                got, error = tok.apply_chat_template(messages, case["add_generation_prompt"]), None
            except hc.HastenError as e:
                got, error = None, str(e)
            tok.free()
            if name == "features":
                ok = error is not None and "loop filters" in error
            elif "error" in case:
                # raise_exception's message, as jinja2 raised it.
                ok = error is not None and case["error"].split(": ", 1)[1] in error
            else:
                ok = got == case["text"]
            results.setdefault(name, []).append((ok, case, got, error))
        hostile = {
            "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}": "nested more than 100 deep",
            "{{ " + " ~ ".join(["'a'"] * 3000) + " }}": "more than 1000 operations",
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}"
            "{% endfor %}": "did not finish within",
            "{{ range(1000000) | length }}": "range() of more than 100000 numbers",
            "{% set ns = namespace(s='ab') %}{% for i in range(64) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}": "longer than",
            "{{ 'x' * 100000000000 }}": "longer than",
            "{% for m in messages %}{{ m.content }": "unclosed '{{'",
            "{% if true %}x": "has no {% endif %}",
            "{{ messages | shuffle }}": "unsupported filter '| shuffle'",
            "{% macro f() %}{% endmacro %}": "unsupported statement {% macro %}",
            "{{ 1.5 }}": "floating-point numbers are not supported",
        }
        for source, expect in hostile.items():
            with open(os.path.join(work, "tokenizer_config.json"), "w", encoding="utf-8") as f:
                json.dump({"chat_template": source}, f)
            tok = rt.tokenizer(work)
            try:
                tok.apply_chat_template([{"role": "user", "content": "hi"}])
                c.check(False, f"hostile template {source[:40]!r}... should be refused")
            except hc.HastenError as e:
                c.check(expect in str(e), f"hostile template refused: {str(e)[:110]}")
            tok.free()
        for name, runs in results.items():
            bad = [(r[1]["conversation"], r[2], r[3]) for r in runs if not r[0]]
            what = ("refused: loop filters are not implemented" if name == "features"
                    else "renders as jinja2 does")
            c.check(not bad, f"chat template {name}: {len(runs)} renders, {what} "
                             f"{bad[:1] if bad else ''}")


def main():
    build = sys.argv[1]
    rt = hc.Runtime(os.path.join(build, "lib"))
    c = e2e.Checks()
    with open(os.path.join(HERE, "cases.json"), encoding="utf-8") as f:
        cases = json.load(f)["cases"]

    by_name = {}
    for case in cases:
        by_name.setdefault(case["tokenizer"], []).append(case)
    for name, group in by_name.items():
        tok = rt.tokenizer(os.path.join(HERE, name))
        normal = [g for g in group if not g.get("nfc_changes")]
        wrong = [g["text"] for g in normal if tok.encode(g["text"]) != g["ids"]]
        c.check(not wrong, f"{name} ({tok.kind}): {len(normal)} texts encode to the reference "
                           f"ids (wrong: {wrong[:3]})")
        wrong = [g["text"] for g in normal
                 if tok.encode(g["text"], add_special_tokens=True) != g["ids_with_special"]]
        c.check(not wrong, f"{name}: with the template's special tokens too "
                           f"(wrong: {wrong[:3]})")
        wrong = [g["text"] for g in normal
                 if tok.decode_bytes(g["ids_with_special"]).decode("utf-8", "replace")
                 != g["decoded"]]
        c.check(not wrong, f"{name}: the reference ids decode to the reference text "
                           f"(wrong: {wrong[:3]})")
        if tok.kind == "byte-level BPE":
            wrong = [g["text"] for g in normal
                     if tok.decode_bytes(tok.encode(g["text"]), skip_special_tokens=False)
                     != g["text"].encode()]
            c.check(not wrong, f"{name}: decode(encode(text)) is the text, byte for byte "
                               f"(wrong: {wrong[:3]})")

        # Streams: whole characters only, and the same text in the end.
        held = mismatched = broken = 0
        for g in normal:
            ids = g["ids"]
            pieces = tok.stream(ids)
            full = tok.decode_bytes(ids)
            mismatched += b"".join(pieces) != full
            broken += not all(strict_utf8(p) for p in pieces[:-1])
            if tok.kind == "byte-level BPE":
                held += any(not strict_utf8(tok.decode_bytes([t])) for t in ids)
        c.check(not mismatched and not broken,
                f"{name}: streamed pieces are whole UTF-8 and add up to the decode "
                f"({mismatched} differ, {broken} split a character)")
        if tok.kind == "byte-level BPE":
            c.check(held > 0, f"{name}: {held} texts have a character split across tokens, "
                              "which the stream held back until complete")

        for g in group:
            if g.get("nfc_changes"):
                try:
                    tok.encode(g["text"])
                    c.check(False, f"{name}: {g['text']!r} needs NFC but was encoded")
                except hc.HastenError as e:
                    c.check("NFC" in str(e) and "U+" in str(e),
                            f"{name}: {g['text']!r} refused ({str(e)[:90]}...)")
        tok.free()

    gpt2 = rt.tokenizer(os.path.join(HERE, "gpt2-bpe.json"))
    c.check(gpt2.eos_id == gpt2.token_id("<|endoftext|>") >= 0 and gpt2.bos_id == -1,
            f"gpt2-bpe: EOS is <|endoftext|> ({gpt2.eos_id}), no BOS")
    for bad_ids, expect in (([5, 700], "token id 700 is not in the vocabulary"),
                            ([-1], "token id -1")):
        try:
            gpt2.decode_bytes(bad_ids)
            c.check(False, f"decoding {bad_ids} should fail")
        except hc.HastenError as e:
            c.check(expect in str(e), f"decoding {bad_ids} refused ({e})")
    ids = (ctypes.c_int64 * 2)()
    count = ctypes.c_size_t()
    status = rt.lib.hasten_tokenizer_encode(gpt2.handle, b"Hello world", 11, 0, ids, 2,
                                            ctypes.byref(count))
    c.check(status == 1 and count.value == len(gpt2.encode("Hello world")) and
            "room for 2" in rt.lib.hasten_last_error().decode(),
            f"a short id buffer is refused and the needed count reported ({count.value})")

    with tempfile.TemporaryDirectory(prefix="hasten-tok-") as work:
        model_dir = os.path.join(work, "model")
        os.makedirs(model_dir)
        shutil.copy(os.path.join(HERE, "llama3-bpe.json"),
                    os.path.join(model_dir, "tokenizer.json"))
        with open(os.path.join(model_dir, "tokenizer_config.json"), "w") as f:
            json.dump({"bos_token": "<|begin_of_text|>",
                       "eos_token": {"content": "<|endoftext|>"},
                       "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"},
                      f)
        tok = rt.tokenizer(model_dir)
        template = rt.lib.hasten_tokenizer_chat_template
        template.argtypes, template.restype = [ctypes.c_void_p], ctypes.c_char_p
        c.check(tok.bos_id == tok.token_id("<|begin_of_text|>") and
                tok.eos_id == tok.token_id("<|endoftext|>") and
                template(tok.handle).startswith(b"{% for m in messages"),
                "a folder: tokenizer.json with tokenizer_config.json's BOS, EOS and chat "
                "template")
        tok.free()
        with open(os.path.join(model_dir, "tokenizer_config.json"), "w") as f:
            json.dump({"eos_token": "<|no such token|>"}, f)
        refused(c, rt, model_dir, "eos_token '<|no such token|>' is not a token",
                "tokenizer_config.json naming a token the tokenizer lacks")

        def variant(name, edit):
            with open(os.path.join(HERE, "llama3-bpe.json"), encoding="utf-8") as f:
                data = json.load(f)
            edit(data)
            path = os.path.join(work, name)
            with open(path, "w", encoding="utf-8") as f:
                json.dump(data, f)
            return path

        refused(c, rt, os.path.join(work, "missing.json"), "missing.json", "a missing file")
        empty_dir = os.path.join(work, "empty")
        os.makedirs(empty_dir)
        refused(c, rt, empty_dir, "neither tokenizer.json nor tokenizer.model",
                "a folder without a tokenizer")
        truncated = os.path.join(work, "truncated.json")
        with open(os.path.join(HERE, "gpt2-bpe.json"), "rb") as f:
            data = f.read()
        with open(truncated, "wb") as f:
            f.write(data[:len(data) // 2])
        refused(c, rt, truncated, "truncated.json: not a valid tokenizer.json",
                "a truncated tokenizer.json")
        refused(c, rt, variant("wordpiece.json",
                               lambda d: d["model"].update(type="WordPiece")),
                "the model is 'WordPiece', not BPE", "a WordPiece tokenizer.json")
        refused(c, rt, variant("regex.json", lambda d: d["pre_tokenizer"]["pretokenizers"][0]
                               ["pattern"].update(Regex=r"\w+|\s+")),
                "not one hasten implements", "a split expression hasten does not implement")
        refused(c, rt, variant("lowercase.json",
                               lambda d: d.update(normalizer={"type": "Lowercase"})),
                "the normalizer 'Lowercase' is not supported", "a Lowercase normalizer")
        refused(c, rt, variant("nobyte.json", lambda d: d["model"]["vocab"].pop("Ā")),
                "lacks the byte-level token for byte 0", "a vocabulary missing a byte")
        refused(c, rt, variant("badid.json", lambda d: d["model"]["vocab"].update(x=-5)),
                "has id -5", "a negative token id")
        corrupt = os.path.join(work, "corrupt.model")
        with open(os.path.join(HERE, "spm.model"), "rb") as f:
            data = bytearray(f.read())
        with open(corrupt, "wb") as f:
            f.write(data[:len(data) // 3])
        refused(c, rt, corrupt, "corrupt.model: not a SentencePiece model",
                "a truncated SentencePiece model")

    check_chat_templates(c, rt)
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
