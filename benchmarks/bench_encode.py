"""Batch-encoding speed: glm4-tokfix vs upstream's remote code vs raw tiktoken, in one run.

    python benchmarks/bench_encode.py [--vocab DIR] [--remote-code DIR] [--texts 2000] [--repeat 5]

* ``--vocab DIR``: a GLM-4 tokenizer folder (tokenizer.model + tokenizer_config.json) for the fixed
  tokenizer. Default: ../shared/glm-4-9b-chat when present, else the embedded tiny tokenizer.
* ``--remote-code DIR``: a model folder whose own ``tokenization_chatglm.py`` is loaded with
  ``AutoTokenizer.from_pretrained(DIR, trust_remote_code=True)`` -- your glm-4-9b-chat checkout, i.e.
  upstream's class. Optional; without it the upstream column is left out.

Texts: ``--texts`` deterministic mixed texts (English, Chinese, code, whitespace runs, and one in five
a rendered chat holding special-token literals such as ``<|user|>``), about 250 tokens each on the real
vocabulary. Each figure is the median of ``--repeat`` rounds; a round runs every variant once, in turn,
so a slow spell of the machine hits them all alike, and each run starts after ``gc.collect()``:

* ``tiktoken``: raw ``Encoding.encode_ordinary`` over the texts in a loop (no special tokens, no padding);
* ``fixed``: ``tok(texts, padding=True)`` with glm4-tokfix's fast path (the default: a large batch is
  encoded by up to 8 threads, one per CPU; the report says how many);
* ``fixed-1-thread``: the same with ``glm4_encode_threads = 1`` (serial);
* ``fixed-generic``: the same call with the fast path off (transformers' generic slow path + our fix);
* ``upstream``: ``upstream_tok(texts, padding=True)`` on the remote code.

and, for single texts, ``[tok.encode(t) for t in texts]`` on ``fixed`` and ``upstream``.

It prints medians, tokens/s and the ratios the project tracks. It asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "HF_MODULES_CACHE" not in os.environ:  # remote code loads into a cache of this run's own, removed at exit
    import atexit
    import shutil
    import tempfile

    _MODULES = tempfile.mkdtemp(prefix="glm4-bench-modules-")
    os.environ["HF_MODULES_CACHE"] = _MODULES
    atexit.register(shutil.rmtree, _MODULES, ignore_errors=True)

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT.parent / "shared" / "glm-4-9b-chat"

WORDS = [
    "the",
    "model",
    "reads",
    "a",
    "batch",
    "of",
    "prompts",
    "and",
    "pads",
    "them",
    "on",
    "the",
    "left",
    "so",
    "generation",
    "continues",
    "from",
    "the",
    "last",
    "column",
    "tokenizer",
    "attention",
    "mask",
    "position",
    "ids",
    "prefix",
    "special",
    "tokens",
    "are",
    "added",
    "once",
    "when",
    "missing",
    "training",
    "collators",
    "pad",
    "on",
    "the",
    "right",
    "labels",
    "use",
    "minus",
    "one",
    "hundred",
    "for",
    "pads",
    "throughput",
    "latency",
]
CHINESE = "我们在做批量推理的时候需要把每一段对话先用模板渲染成字符串再用分词器编码并在左边补齐注意力掩码位置编号"
CODE = [
    "def encode(text):\n    return tok(text).input_ids\n",
    "for i, row in enumerate(batch):\n        print(i, len(row))\n",
    "if __name__ == '__main__':\n    main()\n",
]


def make_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        parts = []
        for _ in range(rng.randint(10, 48)):
            kind = rng.random()
            if kind < 0.55:
                parts.append(
                    " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
                    + rng.choice([". ", ", ", "! ", "\n"])
                )
            elif kind < 0.8:
                start = rng.randrange(len(CHINESE) - 8)
                parts.append(CHINESE[start : start + rng.randint(4, 20)] + rng.choice(["。", "，", "\n"]))
            elif kind < 0.9:
                parts.append(rng.choice(CODE))
            else:
                parts.append(rng.choice(["   ", "\n\n", "\t", " 12345 ", " 3.14159 ", " 😀 "]))
        body = "".join(parts)
        if i % 5 == 0:
            body = f"[gMASK]<sop><|system|>\nBe helpful.<|user|>\n{body}<|assistant|>"
        texts.append(body)
    return texts


def default_vocab() -> Path:
    """../shared/glm-4-9b-chat when present, else the embedded tiny GLM-4 tokenizer."""
    import glm4_tokfix

    return REAL if (REAL / "tokenizer.model").is_file() else Path(glm4_tokfix.TINY_GLM4_DIR)


def median_times(fns: dict, repeat: int) -> dict:
    """name -> median seconds of fns[name](), over ``repeat`` rounds that each run every fn once."""
    times: dict = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            gc.collect()  # every run starts from the same garbage-collector state (collection stays on)
            start = time.perf_counter()
            result = fn()
            times[name].append(time.perf_counter() - start)
            del result
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=Path, default=None)
    parser.add_argument("--remote-code", type=Path, default=None)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    import tiktoken
    import transformers

    import glm4_tokfix

    vocab = args.vocab or default_vocab()
    fixed = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(vocab)
    serial = copy.deepcopy(fixed)
    serial.glm4_encode_threads = 1
    generic = copy.deepcopy(fixed)
    generic.glm4_fast_path = False
    texts = make_texts(args.texts, args.seed)
    n_tokens = sum(len(fixed.tokenizer.encode_ordinary(t)) for t in texts)

    runs = {
        "tiktoken": lambda: [fixed.tokenizer.encode_ordinary(t) for t in texts],
        "fixed": lambda: fixed(texts, padding=True),
        "fixed-1-thread": lambda: serial(texts, padding=True),
        "fixed-generic": lambda: generic(texts, padding=True),
    }
    singles = {"fixed": lambda: [fixed.encode(t) for t in texts]}
    upstream = None
    if args.remote_code is not None:
        from transformers import AutoTokenizer

        upstream = AutoTokenizer.from_pretrained(str(args.remote_code), trust_remote_code=True)
        runs["upstream"] = lambda: upstream(texts, padding=True)
        singles["upstream"] = lambda: [upstream.encode(t) for t in texts]

    for fn in runs.values():  # warm-up: lazy tiktoken encodings, caches
        fn()
    seconds = median_times(runs, args.repeat)
    single_seconds = median_times(singles, args.repeat)

    ratios = {
        "fixed / tiktoken": seconds["fixed"] / seconds["tiktoken"],
        "fixed-1-thread / tiktoken": seconds["fixed-1-thread"] / seconds["tiktoken"],
    }
    if upstream is not None:
        ratios["upstream / fixed (speed-up)"] = seconds["upstream"] / seconds["fixed"]
        ratios["upstream / fixed-1-thread"] = seconds["upstream"] / seconds["fixed-1-thread"]
        ratios["fixed-generic / upstream"] = seconds["fixed-generic"] / seconds["upstream"]
        ratios["single encode: upstream / fixed"] = single_seconds["upstream"] / single_seconds["fixed"]
    ratios["fixed-generic / fixed (speed-up)"] = seconds["fixed-generic"] / seconds["fixed"]

    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "versions": {
            "transformers": transformers.__version__,
            "tiktoken": tiktoken.__version__,
            "glm4-tokfix": glm4_tokfix.__version__,
        },
        "vocab": str(vocab),
        "remote_code": str(args.remote_code) if args.remote_code else None,
        "texts": len(texts),
        "fixed_threads": fixed._glm4_thread_count(texts),
        "tokens": n_tokens,
        "repeat": args.repeat,
        "seconds": seconds,
        "tokens_per_second": {name: n_tokens / s for name, s in seconds.items()},
        "single_encode_seconds": single_seconds,
        "ratios": ratios,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['machine']}; transformers {transformers.__version__}, tiktoken {tiktoken.__version__}")
    print(f"{len(texts)} texts, {n_tokens} tokens (vocab {vocab}); median of {args.repeat} rounds")
    print(f"fixed encodes this batch with {report['fixed_threads']} thread(s)")
    print(f"{'run':<18}{'median s':>10}{'tokens/s':>14}")
    for name, s in seconds.items():
        print(f"{name:<18}{s:>10.3f}{n_tokens / s:>14,.0f}")
    for name, s in single_seconds.items():
        print(f"{'encode() ' + name:<18}{s:>10.3f}{n_tokens / s:>14,.0f}")
    print("ratios:")
    for name, value in ratios.items():
        print(f"  {name:<34}{value:>7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
