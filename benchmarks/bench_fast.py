"""Fast (tokenizer.json) GLM-4 tokenizers: the fix's cost, beside our slow tokenizer and upstream's remote code.

    python benchmarks/bench_fast.py [--vocab DIR] [--remote-code DIR] [--texts 2000] [--repeat 7] [--json]

A glm-4-9b-chat-hf-style folder (``tokenizer.json`` whose post-processor adds ``[gMASK]<sop>``) is built at run
time from ``--vocab``'s ``tokenizer.model`` (``glm4_tokfix.convert``; nothing is downloaded) and loaded with plain
``AutoTokenizer``. Each figure is the median of ``--repeat`` interleaved rounds of ``tok(texts, padding=True)``:

* ``fast-unpatched``: transformers' built-in fast class, as the hub folder loads (doubles the prefix);
* ``fast-patched``: the same object class after ``glm4_tokfix.patch`` (one prefix; plain texts take the fast route);
* ``fast-patched-rust``: the same with ``glm4_fast_path = False`` (every call through the Rust tokenizer);
* ``fixed-slow``: ``glm4_tokfix.ChatGLM4Tokenizer`` on the same vocabulary;
* ``upstream``: ``--remote-code DIR``'s own ``tokenization_chatglm.py``; without it, our stand-in of upstream's
  current file (``tests/standins/upstream_current.py``, same encode path) in a temporary model folder.

Two batches: ``mixed`` (bench_encode's 2,000 texts: one in five a rendered chat starting with the literal prefix)
and ``chats`` (every text a rendered chat, as in batched inference). It prints medians, tokens/s and the
patched/unpatched and patched/fixed-slow ratios (issue 17's target: patched fast <= 1.10x fixed-slow). It asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_encode import default_vocab, make_texts, median_times  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=Path, default=None)
    parser.add_argument("--remote-code", type=Path, default=None)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    import tokenizers
    import transformers
    from transformers import AutoTokenizer

    import glm4_tokfix
    from glm4_tokfix.convert import write_fast_folder

    vocab = args.vocab or default_vocab()
    with tempfile.TemporaryDirectory(prefix="glm4-bench-fast-") as tmp:
        folder = write_fast_folder(vocab, Path(tmp) / "glm-4-9b-chat-hf", "chat-hf")
        unpatched = AutoTokenizer.from_pretrained(str(folder))
        patched = glm4_tokfix.patch(AutoTokenizer.from_pretrained(str(folder)))
        rust_route = glm4_tokfix.patch(AutoTokenizer.from_pretrained(str(folder)))
        rust_route.glm4_fast_path = False  # the Rust route of the patched tokenizer (the fix before issue 17)
        slow = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(vocab)
        if args.remote_code is not None:
            remote, upstream_label = args.remote_code, str(args.remote_code)
        else:
            from standins import make_model_folder

            remote = make_model_folder(Path(tmp) / "upstream", "current", vocab)
            upstream_label = "stand-in of upstream's current tokenization_chatglm.py"
        upstream = AutoTokenizer.from_pretrained(str(remote), trust_remote_code=True)

        mixed = make_texts(args.texts, args.seed)
        prefix = "[gMASK]<sop>"
        chats = [t if t.startswith(prefix) else f"{prefix}<|user|>\n{t}<|assistant|>" for t in mixed]
        batches = {"mixed": mixed, "chats": chats}
        tokenizers_under_test = {
            "fast-unpatched": unpatched,
            "fast-patched": patched,
            "fast-patched-rust": rust_route,
            "fixed-slow": slow,
            "upstream": upstream,
        }
        report = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "versions": {
                "transformers": transformers.__version__,
                "tokenizers": tokenizers.__version__,
                "glm4-tokfix": glm4_tokfix.__version__,
            },
            "vocab": str(vocab),
            "upstream": upstream_label,
            "repeat": args.repeat,
            "batches": {},
        }
        for label, texts in batches.items():
            n_tokens = sum(len(slow(t, add_special_tokens=False)["input_ids"]) for t in texts)
            runs = {name: (lambda tok=tok, texts=texts: tok(texts, padding=True)) for name, tok in
                    tokenizers_under_test.items()}  # fmt: skip
            for fn in runs.values():  # warm-up
                fn()
            seconds = median_times(runs, args.repeat)
            report["batches"][label] = {
                "texts": len(texts),
                "tokens": n_tokens,
                "seconds": seconds,
                "tokens_per_second": {name: n_tokens / s for name, s in seconds.items()},
                "ratios": {
                    "fast-patched / fast-unpatched (target <= 1.10)": seconds["fast-patched"]
                    / seconds["fast-unpatched"],
                    "fast-patched / fixed-slow (target <= 1.10)": seconds["fast-patched"] / seconds["fixed-slow"],
                    "fast-patched Rust route / fixed-slow": seconds["fast-patched-rust"] / seconds["fixed-slow"],
                    "upstream / fast-patched": seconds["upstream"] / seconds["fast-patched"],
                },
            }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    print(f"{report['machine']}; {versions}")
    print(f"vocab {vocab}; upstream: {upstream_label}; median of {args.repeat} interleaved rounds")
    for label, figures in report["batches"].items():
        print(f"\n{label}: {figures['texts']} texts, {figures['tokens']} tokens, tok(texts, padding=True)")
        print(f"  {'run':<16}{'median s':>10}{'tokens/s':>14}")
        for name, s in figures["seconds"].items():
            print(f"  {name:<16}{s:>10.3f}{figures['tokens'] / s:>14,.0f}")
        for name, value in figures["ratios"].items():
            print(f"  {name:<48}{value:>7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
