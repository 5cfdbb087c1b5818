"""What ``return_offsets_mapping=True`` costs on glm4-tokfix's fast path, next to the HF fast tokenizer.

    python benchmarks/bench_offsets.py [--vocab DIR] [--texts 2000] [--repeat 5]

Texts: the deterministic mixed texts of ``bench_encode.py`` (English, Chinese, code, rendered chats).
Each round runs every variant once, in turn, after ``gc.collect()``; figures are medians over rounds:

* ``fixed``: ``tok(texts, padding=True)`` (glm4-tokfix fast path);
* ``fixed+offsets``: the same with ``return_offsets_mapping=True``;
* ``hf-fast``/``hf-fast+offsets``: transformers' Rust tokenizer of the same vocabulary (built here from
  ``tokenizer.model`` by ``glm4_tokfix.convert``, "0414" style), without and with offsets.

It prints medians, tokens/s and the ratios; it asserts nothing about speed.
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

from bench_encode import default_vocab, make_texts


def main() -> None:
    import tokenizers
    import transformers
    from transformers import AutoTokenizer

    import glm4_tokfix
    from glm4_tokfix.convert import write_fast_folder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = default_vocab()
    parser.add_argument("--vocab", type=Path, default=default)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    texts = make_texts(args.texts, seed=0)
    tok = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(args.vocab)
    with tempfile.TemporaryDirectory() as tmp:
        fast = AutoTokenizer.from_pretrained(str(write_fast_folder(args.vocab, Path(tmp) / "fast", "0414")))
    n_tokens = sum(len(ids) for ids in tok(texts).input_ids)
    variants = {
        "fixed": lambda: tok(texts, padding=True),
        "fixed+offsets": lambda: tok(texts, padding=True, return_offsets_mapping=True),
        "hf-fast": lambda: fast(texts, padding=True),
        "hf-fast+offsets": lambda: fast(texts, padding=True, return_offsets_mapping=True),
    }
    times = {name: [] for name in variants}
    for run in variants.values():  # warm up
        run()
    for _ in range(args.repeat):
        for name, run in variants.items():
            gc.collect()
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)

    print(f"vocab {args.vocab}, {len(texts)} texts, {n_tokens} tokens, {args.repeat} rounds")
    print(
        f"python {platform.python_version()}, transformers {transformers.__version__}, tokenizers "
        f"{tokenizers.__version__}, {os.cpu_count()} CPUs, threads for the fixed tokenizer: "
        f"{tok._glm4_thread_count(texts)}"
    )
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"{name:16s} {median * 1000:9.1f} ms  {n_tokens / median / 1e6:6.2f} M tokens/s")
    print(f"offsets cost on the fixed tokenizer: x{medians['fixed+offsets'] / medians['fixed']:.2f}")
    print(f"offsets cost on the HF fast tokenizer: x{medians['hf-fast+offsets'] / medians['hf-fast']:.2f}")
    print(f"fixed+offsets / hf-fast+offsets: x{medians['fixed+offsets'] / medians['hf-fast+offsets']:.2f}")


if __name__ == "__main__":
    main()
