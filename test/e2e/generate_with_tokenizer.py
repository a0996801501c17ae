#!/usr/bin/env python3
"""hasten-run --generate with a tokenizer, as a user runs it: the bundled
default model (test/models/default: a small GPT-2-style decoder trained on
the 700 tokens of test/tokenizer/gpt2-bpe.json), against the numpy
reference decoder run on its weights and the tokenizer's recorded reference
encodings.

Checks:
- --prompt TEXT is encoded as Hugging Face `tokenizers` encodes it (the ids
  recorded in cases.json), the prompt ids decode back to the text, the
  generated ids are the numpy reference's greedy tokens, and what is printed
  is the prompt followed by the decoded tokens;
- --prompt-file FILE and --prompt-file - (stdin) read the same prompt;
- generation stops at the EOS token that tokenizer_config.json names, and
  --ignore-eos goes on;
- --interactive continues the same sequence with each line of input: its
  output is the reference's continuation of the whole conversation;
- --chat renders --system and --prompt through tokenizer_config.json's chat
  template, and --interactive then renders each line as the next user
  message after the assistant's answer; the cached prefix is reused and the
  tokens are the reference's for the whole re-rendered conversation;
- refusals: --prompt without --tokenizer on a 700-token model, a tokenizer
  larger than the model's vocabulary, two prompt sources, --chat without a
  template.

usage: generate_with_tokenizer.py BUILD_DIR
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models"))
sys.path.insert(0, HERE)
import e2e_common as e2e  # noqa: E402
import generation_vs_numpy as gen  # noqa: E402
import hasten_ctypes as hc  # noqa: E402
import make_decoder as md  # noqa: E402

TOKENIZER_DIR = os.path.join(HERE, "..", "tokenizer")
DEFAULT_MODEL = os.path.join(HERE, "..", "models", "default", "model.onnx")
# test/models/train_default.py's architecture.
CONFIG = md.Config(arch="gpt2", layers=2, hidden=128, heads=4, vocab=700, max_positions=256)
PROMPT = "Hello, world! How's it going? I'LL do it; they'd've said 'no'."
COUNT = 12


def run(build, args, stdin=None):
    proc = subprocess.run([os.path.join(build, "bin", "hasten-run")] + args, input=stdin,
                          capture_output=True)
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode()


def ids_line(stdout):
    line = next(l for l in stdout.splitlines() if l.startswith("ids: "))
    return [int(t) for t in line[len("ids: "):].split(",")]


def main():
    build = os.path.abspath(sys.argv[1])
    c = e2e.Checks()
    rt = hc.Runtime(os.path.join(build, "lib"))
    tokenizer_json = os.path.join(TOKENIZER_DIR, "gpt2-bpe.json")
    tok = rt.tokenizer(tokenizer_json)
    with open(os.path.join(TOKENIZER_DIR, "cases.json"), encoding="utf-8") as f:
        reference_ids = next(r["ids_with_special"] for r in json.load(f)["cases"]
                             if r["tokenizer"] == "gpt2-bpe.json" and r["text"] == PROMPT)
    cfg = CONFIG
    weights = {t.name: numpy_helper.to_array(t).copy()
               for t in onnx.load(DEFAULT_MODEL).graph.initializer}

    with tempfile.TemporaryDirectory(prefix="hasten-tokgen-") as work:
        so = os.path.join(work, "default.so")
        subprocess.run([os.path.join(build, "bin", "hasten-compile"), DEFAULT_MODEL, "-o", so,
                        "--kv-capacity=128"], check=True)
        expected = gen.greedy_reference(cfg, weights, reference_ids, COUNT)
        c.check(len(set(expected)) >= 4,
                f"the trained model's greedy tokens vary ({len(set(expected))} distinct)")
        base = [so, "--generate", "--tokenizer", tokenizer_json, "--max-new-tokens", str(COUNT),
                "--print-ids", "--ignore-eos"]

        rc, out, err = run(build, base + ["--prompt", PROMPT])
        ids = ids_line(out) if rc == 0 else []
        c.check(ids[:len(reference_ids)] == reference_ids,
                f"--prompt is encoded as the reference tokenizer does ({len(reference_ids)} "
                f"ids) {err.strip()[-200:] if rc else ''}")
        c.check(tok.decode_bytes(ids[:len(reference_ids)]).decode() == PROMPT,
                "the prompt's ids decode back to the prompt")
        c.check(ids[len(reference_ids):] == expected,
                f"the generated ids are the numpy reference's greedy tokens {expected[:4]}...")
        text = PROMPT + tok.decode_bytes(expected).decode("utf-8", "replace")
        c.check(out.startswith(text + "\nids: "),
                f"it prints the prompt and the decoded tokens: {text[len(PROMPT):]!r}")

        prompt_file = os.path.join(work, "prompt.txt")
        with open(prompt_file, "w", encoding="utf-8") as f:
            f.write(PROMPT)
        rc, out_file, _ = run(build, base + ["--prompt-file", prompt_file])
        rc2, out_stdin, _ = run(build, base + ["--prompt-file", "-"], stdin=PROMPT.encode())
        c.check(rc == rc2 == 0 and ids_line(out_file) == ids == ids_line(out_stdin),
                "--prompt-file FILE and - (stdin) give the same prompt and tokens")

        # EOS: name a token the reference generates third or later (and not
        # before) EOS in a tokenizer_config.json beside the tokenizer.
        folder = os.path.join(work, "tok")
        os.makedirs(folder)
        shutil.copy(tokenizer_json, os.path.join(folder, "tokenizer.json"))
        eos_id = next(t for i, t in enumerate(expected) if i >= 2 and t not in expected[:i])
        eos_token = next(t for t, i in json.load(open(tokenizer_json, encoding="utf-8"))
                         ["model"]["vocab"].items() if i == eos_id)
        with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump({"eos_token": eos_token}, f)
        stop_at = expected.index(eos_id) + 1
        args = [so, "--generate", "--tokenizer", folder, "--max-new-tokens", str(COUNT),
                "--print-ids", "--prompt", PROMPT]
        rc, out, err = run(build, args)
        c.check(rc == 0 and ids_line(out)[len(reference_ids):] == expected[:stop_at] and
                "(stop token)" in err,
                f"generation stops at tokenizer_config.json's EOS ({stop_at} tokens)")
        rc, out, err = run(build, args + ["--ignore-eos"])
        c.check(rc == 0 and ids_line(out)[len(reference_ids):] == expected,
                "--ignore-eos generates past it")

        # Interactive: every line continues the conversation.
        lines = ["And then?", "Tell me more."]
        rc, out, err = run(build, [so, "--generate", "--tokenizer", tokenizer_json,
                                   "--max-new-tokens", "6", "--ignore-eos", "--interactive",
                                   "--prompt", PROMPT], stdin="\n".join(lines).encode() + b"\n")
        ref = gen.Reference(cfg, weights)
        logits = ref.feed(reference_ids)
        want, pending = [PROMPT], None
        for turn in [None] + lines:
            feed = [] if turn is None else [pending] + tok.encode(turn + "\n")
            if feed:
                logits = ref.feed(feed)
            out_ids = []
            for i in range(6):
                token = int(np.argmax(logits))
                out_ids.append(token)
                if i < 5:
                    logits = ref.feed([token])
            pending = out_ids[-1]
            want.append(tok.decode_bytes(out_ids).decode("utf-8", "replace") + "\n")
        want_text = want[0] + "".join(want[1:])
        c.check(rc == 0 and out == want_text,
                f"--interactive: two more turns continue the sequence as the reference does "
                f"{err.strip()[-200:] if rc else ''}")

        # A chat: the template renders the conversation; each turn's tokens
        # are the reference's continuation of the whole rendering.
        chat_dir = os.path.join(work, "chat")
        os.makedirs(chat_dir)
        shutil.copy(tokenizer_json, os.path.join(chat_dir, "tokenizer.json"))
        template = ("{% for m in messages %}{{ m['role'] | upper }}: {{ m['content'] | trim }}\n"
                    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}")
        with open(os.path.join(chat_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump({"eos_token": "<|endoftext|>", "chat_template": template}, f)
        chat_tok = rt.tokenizer(chat_dir)
        conversation = [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Permission is"}]

        def reference_turn(messages, count=6):
            ids = chat_tok.encode(chat_tok.apply_chat_template(messages))
            return ids, gen.greedy_reference(cfg, weights, ids, count)

        first_ids, first_out = reference_turn(conversation)
        rc, out, err = run(build, [so, "--generate", "--tokenizer", chat_dir, "--chat",
                                   "--system", "Be brief.", "--prompt", "Permission is",
                                   "--max-new-tokens", "6", "--ignore-eos", "--print-ids"])
        c.check(rc == 0 and ids_line(out) == first_ids + first_out,
                f"--chat: the rendered conversation's ids, then the reference's tokens "
                f"{err.strip()[-200:] if rc else ''}")
        conversation.append({"role": "assistant",
                             "content": chat_tok.decode_bytes(first_out).decode("utf-8",
                                                                                "replace")})
        conversation.append({"role": "user", "content": "Copyright"})
        _, second_out = reference_turn(conversation)
        rc, out, err = run(build, [so, "--generate", "--tokenizer", chat_dir, "--interactive",
                                   "--system", "Be brief.", "--prompt", "Permission is",
                                   "--max-new-tokens", "6", "--ignore-eos"],
                           stdin=b"Copyright\n")
        want = "".join(chat_tok.decode_bytes(t).decode("utf-8", "replace") + "\n"
                       for t in (first_out, second_out))
        c.check(rc == 0 and out == want,
                f"--interactive with a chat template: the second turn is the reference's "
                f"answer to the re-rendered conversation {out!r} {err.strip()[-200:]}")
        chat_tok.free()
        rc, _, err = run(build, [so, "--generate", "--tokenizer", tokenizer_json, "--chat",
                                 "--prompt", "hi"])
        c.check(rc == 1 and "--chat needs a tokenizer with a chat template" in err,
                f"--chat without a template: {err.strip()}")

        rc, _, err = run(build, [so, "--generate", "--prompt", PROMPT])
        c.check(rc == 1 and "--prompt needs --tokenizer" in err and "700 tokens" in err,
                f"no tokenizer on a 700-token model: {err.strip()}")
        small = os.path.join(work, "g256.so")
        small_onnx = os.path.join(work, "g256.onnx")
        subprocess.run(["/usr/bin/python3", os.path.join(HERE, "..", "models", "make_decoder.py"),
                        "--preset", "gpt2-tiny", "-o", small_onnx], check=True,
                       capture_output=True)
        subprocess.run([os.path.join(build, "bin", "hasten-compile"), small_onnx, "-o", small],
                       check=True)
        rc, _, err = run(build, [small, "--generate", "--tokenizer", tokenizer_json,
                                 "--prompt", "hi"])
        c.check(rc == 1 and "the tokenizer has 700 tokens but the model's vocabulary only 256"
                in err, f"a tokenizer larger than the vocabulary: {err.strip()}")
        rc, _, err = run(build, base + ["--prompt", "a", "--prompt-ids", "1"])
        c.check(rc == 1 and "one of --prompt" in err, f"two prompt sources: {err.strip()}")
        rc, _, err = run(build, base + ["--prompt-file", work])
        c.check(rc == 1 and "not a regular file" in err, f"a folder as --prompt-file: "
                                                          f"{err.strip()}")
    tok.free()
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
