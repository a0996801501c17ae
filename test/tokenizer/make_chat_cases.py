#!/usr/bin/env python3
"""Records how Jinja renders chat templates, as Hugging Face's
apply_chat_template does (jinja2's sandbox with trim_blocks, lstrip_blocks
and loop controls; raise_exception; messages, add_generation_prompt,
bos_token, eos_token), into chat_cases.json: the oracle for hasten's own
template renderer. The templates are those of Llama 3, Llama 2, Mistral,
Qwen2 (ChatML), Zephyr, Gemma and Phi-3, plus small ones for the Jinja
features templates use. Needs jinja2 (in the bench venv):

  build/bench-venv/bin/pip install jinja2
  build/bench-venv/bin/python test/tokenizer/make_chat_cases.py
"""
import json
import os
import sys

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))

TEMPLATES = {
    "llama3": (
        "{% set loop_messages = messages %}{% for message in loop_messages %}"
        "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
        "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
        "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
        "{% endif %}"),
    "llama2": (
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
        "{% set system_message = messages[0]['content'] %}{% else %}"
        "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
        "{% for message in loop_messages %}"
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
        "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
        "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
        "{% else %}{% set content = message['content'] %}{% endif %}"
        "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
        "{% endif %}{% endfor %}"),
    "mistral": (
        "{{ bos_token }}{% for message in messages %}"
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
        "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
        "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
        "{% endif %}{% endfor %}"),
    "qwen2": (
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
        "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"),
    "zephyr": (
        "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
        "{{ '<|user|>\\n' + message['content'] + eos_token }}\n"
        "{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token }}\n"
        "{% elif message['role'] == 'assistant' %}\n"
        "{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n{% endif %}\n"
        "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
        "{% endfor %}"),
    "gemma": (
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
        "{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
        "{% else %}{% set role = message['role'] %}{% endif %}"
        "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"),
    "phi3": (
        "{% for message in messages %}{% if message['role'] == 'system' %}"
        "{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}"
        "{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}"
        "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}"
        "{% else %}{{ eos_token }}{% endif %}"),
    # Jinja that hasten refuses (a loop filter), and the features that
    # templates beyond the ones above use.
    "features": (
        "{#- a comment -#}\n"
        "{%- set ns = namespace(count=0, last='') %}\n"
        "{%- for m in messages if true %}{% endfor %}"),
    "features-ok": (
        "{%- set ns = namespace(count=0, last='') -%}\n"
        "{%- for m in messages -%}\n"
        "    {%- if m.role == 'system' %}{% continue %}{% endif -%}\n"
        "    {%- set ns.count = ns.count + 1 -%}\n"
        "    {%- set ns.last = m['content'] | upper -%}\n"
        "    [{{ loop.index }}/{{ loop.length }}{{ '*' if loop.last else '' }}] {{ m.role ~ ': ' ~ m.content | length }}\n"
        "    {%- if ns.count >= 3 %}{% break %}{% endif %}\n"
        "{% endfor -%}\n"
        "count={{ ns.count }} last={{ ns.last }} first2={{ messages[:2] | length }}\n"
        "{{ messages[-1]['content'][:5] }}|{{ 'x' in 'xyz' }}|{{ 'q' not in ['a', 'b'] }}"
        "|{{ messages.nonexistent is not defined }}|{{ (7 // 2) ~ (-7 % 3) }}"
        "|{{ messages[0].content.startswith('Hel') }}|{{ '  pad  '.strip() }}|"
        "{{ {'k': [1, 2]} | tojson }}|{{ none is none }}|{{ range(3) | join(',') }}\n"
        "  {% if add_generation_prompt -%}\n"
        "  GEN\n"
        "  {%- endif %}\n"
        "tail"),
}

CONVERSATIONS = {
    "system-user": [{"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "Hello, who are you?"}],
    "multi-turn": [{"role": "user", "content": "Hello there"},
                   {"role": "assistant", "content": "  Hi! How can I help?  "},
                   {"role": "user", "content": "Name a prime: 7? \u00e9t\u00e9 \U0001F916"}],
    "bad-order": [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}],
}


def main():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])

    def raise_exception(message):
        raise TemplateError(message)

    env.globals["raise_exception"] = raise_exception
    cases = []
    for name, source in TEMPLATES.items():
        for conv_name, messages in CONVERSATIONS.items():
            for gen in (True, False):
                record = {"template": name, "conversation": conv_name,
                          "add_generation_prompt": gen}
                try:
                    record["text"] = env.from_string(source).render(
                        messages=messages, add_generation_prompt=gen,
                        bos_token="<s>", eos_token="</s>")
                except Exception as e:  # noqa: BLE001 - recorded as the expected refusal
                    record["error"] = f"{type(e).__name__}: {e}"
                cases.append(record)
    with open(os.path.join(HERE, "chat_cases.json"), "w", encoding="utf-8") as f:
        json.dump({"generated_by": "test/tokenizer/make_chat_cases.py",
                   "templates": TEMPLATES, "conversations": CONVERSATIONS, "cases": cases},
                  f, ensure_ascii=False, indent=1)
    print(f"{len(cases)} cases, {sum('error' in c for c in cases)} refusals")
    return 0


if __name__ == "__main__":
    sys.exit(main())
