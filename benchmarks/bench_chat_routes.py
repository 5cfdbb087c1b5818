"""The chat routes next to render + one list call: ``apply_chat_template(tokenize=True)`` and ``tokenize_chats``.

    python benchmarks/bench_chat_routes.py [--vocab DIR] [--chats 1000] [--repeat 7] [--fast]

Chats: the deterministic conversations of ``bench_datasets.py`` (system prompt on one in three, 1-3
user/assistant turns built from the mixed texts of ``bench_encode.py``). Each round runs every variant once,
in turn, after ``gc.collect()``; figures are medians over rounds, and each ratio is the median of the
per-round ratios (interleaved, so a slow spell of the machine hits both sides alike):

* ``render``: ``apply_chat_template(chats, tokenize=False)``;
* ``list``: ``tok(rendered, add_special_tokens=False)`` on those rendered texts;
* ``chat-tokenize``: ``apply_chat_template(chats, tokenize=True)`` (the route the targets are about);
* ``chat-tokenize-padded``: the same with ``padding=True, return_tensors="pt"`` (vs render + padded pt call);
* ``tokenize_chats``: ``glm4_tokfix.sft.tokenize_chats(tok, chats)`` (ids, assistant masks, labels);
* ``masks-template``: ``return_assistant_tokens_mask=True`` on a GLM-4-0414-style template without a shipped
  marked copy (the generic marker route).

``--fast`` runs the same on the patched fast (tokenizer.json) tokenizer of the same vocabulary. It prints
figures; it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_datasets import make_chats
from bench_encode import default_vocab

# A GLM-4-0414-style template (written for this benchmark; no shipped marked copy): the generic mask route.
TEMPLATE_0414_STYLE = (
    "[gMASK]<sop>{% for m in messages %}{% if m.role == 'system' %}<|system|>\n{{ m.content }}"
    "{% elif m.role == 'user' %}<|user|>\n{{ m.content }}"
    "{% elif m.role == 'assistant' %}<|assistant|>\n{{ m.content.strip() }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def main() -> None:
    import transformers

    import glm4_tokfix
    from glm4_tokfix.sft import tokenize_chats

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=Path, default=default_vocab())
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--fast", action="store_true", help="the patched fast tokenizer instead of the slow fix")
    args = parser.parse_args()

    if args.fast:
        from transformers import AutoTokenizer

        from glm4_tokfix.convert import write_fast_folder

        with tempfile.TemporaryDirectory() as tmp:
            tok = glm4_tokfix.patch(
                AutoTokenizer.from_pretrained(str(write_fast_folder(args.vocab, Path(tmp) / "f", "chat-hf")))
            )
    else:
        tok = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(args.vocab)
    chats = make_chats(args.chats)
    rendered = tok.apply_chat_template(chats, tokenize=False)
    n_tokens = sum(map(len, tok(rendered, add_special_tokens=False)["input_ids"]))
    variants = {
        "render": lambda: tok.apply_chat_template(chats, tokenize=False),
        "list": lambda: tok(rendered, add_special_tokens=False),
        "list-padded-pt": lambda: tok(rendered, add_special_tokens=False, padding=True, return_tensors="pt"),
        "chat-tokenize": lambda: tok.apply_chat_template(chats, tokenize=True),
        "chat-tokenize-padded": lambda: tok.apply_chat_template(
            chats, tokenize=True, padding=True, return_tensors="pt"
        ),
        "tokenize_chats": lambda: tokenize_chats(tok, chats),
        "masks-template": lambda: tok.apply_chat_template(
            chats, chat_template=TEMPLATE_0414_STYLE, return_dict=True, return_assistant_tokens_mask=True
        ),
    }
    for name, run in list(variants.items()):  # warm up (template compilation, caches)
        try:
            run()
        except ValueError as error:  # an older glm4-tokfix without masks for unmarked templates
            print(f"{name}: {error}")
            del variants[name]
    times = {name: [] for name in variants}
    for _ in range(args.repeat):
        for name, run in variants.items():
            gc.collect()
            start = time.perf_counter()
            result = run()
            times[name].append(time.perf_counter() - start)
            del result

    print(f"vocab {args.vocab}, {len(chats)} chats, {n_tokens} tokens, {args.repeat} rounds, "
          f"{'patched fast' if args.fast else 'ChatGLM4Tokenizer'}")  # fmt: skip
    print(f"python {platform.python_version()}, transformers {transformers.__version__}, {os.cpu_count()} CPUs")
    for name, values in times.items():
        print(f"{name:22s} {statistics.median(values) * 1000:8.1f} ms")

    def ratio(name: str, *base: str) -> float:
        return statistics.median(times[name][k] / sum(times[b][k] for b in base) for k in range(args.repeat))

    print(
        f"chat-tokenize / (render + list):               x{ratio('chat-tokenize', 'render', 'list'):.2f}  (target <= 1.3)"
    )
    print(
        f"chat-tokenize-padded / (render + list-padded):  x{ratio('chat-tokenize-padded', 'render', 'list-padded-pt'):.2f}"
    )
    print(
        f"tokenize_chats / (render + list):               x{ratio('tokenize_chats', 'render', 'list'):.2f}  (target <= 1.5)"
    )
    if "masks-template" in times:
        print(f"masks-template / (render + list):               x{ratio('masks-template', 'render', 'list'):.2f}")


if __name__ == "__main__":
    main()
