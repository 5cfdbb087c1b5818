"""Tokenizing chats for SFT with ``datasets.map(batched=True)``: examples/s for num_proc 1 and 2.

    python benchmarks/bench_datasets.py [--vocab DIR] [--chats 4000] [--repeat 3] [--batch-size 256]

Chats: deterministic conversations (system prompt on one in three, 1-3 user/assistant turns built from the
mixed texts of ``bench_encode.py``). Each variant maps ``glm4_tokfix.sft.tokenize_chats`` (ids, assistant
masks, labels) over the whole dataset with ``keep_in_memory=True``; a round runs every variant once, in turn,
after ``gc.collect()``, and the figures are medians over rounds. The ``num_proc=2`` figure includes starting
the workers and pickling the tokenizer into them. It asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_encode import default_vocab, make_texts


def make_chats(n: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    pieces = make_texts(2 * n, seed=seed)
    chats = []
    for i in range(n):
        chat = [{"role": "system", "content": "Be helpful."}] if i % 3 == 0 else []
        for turn in range(rng.randint(1, 3)):
            chat.append({"role": "user", "content": pieces[(2 * i + turn) % len(pieces)][:300]})
            chat.append({"role": "assistant", "content": pieces[(2 * i + turn + 1) % len(pieces)][:600]})
        chats.append(chat)
    return chats


def encode(batch, tok):
    from glm4_tokfix.sft import tokenize_chats

    return tokenize_chats(tok, batch["messages"])


def main() -> None:
    import datasets
    import transformers

    import glm4_tokfix

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = default_vocab()
    parser.add_argument("--vocab", type=Path, default=default)
    parser.add_argument("--chats", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    datasets.disable_progress_bars()
    tok = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(args.vocab)
    ds = datasets.Dataset.from_dict({"messages": make_chats(args.chats)})
    variants = {1: None, 2: None}
    times = {n: [] for n in variants}
    results = {}
    for _ in range(args.repeat):
        for num_proc in variants:
            gc.collect()
            start = time.perf_counter()
            out = ds.map(
                encode, fn_kwargs={"tok": tok}, batched=True, batch_size=args.batch_size,
                num_proc=None if num_proc == 1 else num_proc, keep_in_memory=True, remove_columns=["messages"],
            )  # fmt: skip
            times[num_proc].append(time.perf_counter() - start)
            results[num_proc] = out
    same = results[1]["input_ids"] == results[2]["input_ids"] and results[1]["labels"] == results[2]["labels"]
    n_tokens = sum(map(len, results[1]["input_ids"]))
    print(
        f"vocab {args.vocab}, {args.chats} chats, {n_tokens} tokens, batch size {args.batch_size}, {args.repeat} rounds"
    )
    print(
        f"python {platform.python_version()}, transformers {transformers.__version__}, datasets "
        f"{datasets.__version__}, {os.cpu_count()} CPUs"
    )
    for num_proc, values in times.items():
        median = statistics.median(values)
        print(
            f"num_proc={num_proc}: {median:7.2f} s  {args.chats / median:8.0f} examples/s  {n_tokens / median / 1e6:5.2f} M tokens/s"
        )
    print(f"num_proc=2 / num_proc=1 speed-up: x{statistics.median(times[1]) / statistics.median(times[2]):.2f}")
    print(f"rows identical across num_proc: {same}")


if __name__ == "__main__":
    main()
