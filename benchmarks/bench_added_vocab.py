"""Large added vocabularies (issue 30 item 4): what thousands of added tokens cost the fix, beside upstream.

    python benchmarks/bench_added_vocab.py [--vocab DIR] [--remote-code DIR] [--sizes 0,1000,16384,65536]
                                           [--rounds 3] [--repeat 5]

glm-4-voice-9b registers 16,384 ``<|audio_N|>`` tokens on glm-4-9b-chat's vocabulary. For each size, ``k``
``<|audio_N|>`` tokens are added (``tok.add_tokens``) after the vocabulary's own 14, to a freshly loaded fixed
tokenizer (``glm4_tokfix.ChatGLM4Tokenizer``) and to upstream's class (``--remote-code DIR``'s own
``tokenization_chatglm.py``; without it our stand-in of upstream's current file, tests/standins), and it prints:

* ``add_tokens``: transformers' own ``add_tokens`` of them, on the fixed tokenizer and on upstream's;
* ``prep``: the fix's one-time preparation for them: ``literals``, the added-token literals (checked for overlaps)
  and those the assistant masks count, then per encoder backend the one that splits them out (the vocabulary's own
  one-time costs -- fastokens' tokenizer.json, each tokenizer's backends over the ranks -- are paid before, with
  the 14 added tokens: that row's prep is what nothing added costs);
* ``audio``: ``tok(texts, padding=True)`` on 20 texts of 50 audio tokens each (fixed, per backend, and upstream);
* ``chats``: the same on 500 rendered chats without audio tokens.

The rounds are interleaved (every size, then again), each figure is the median over rounds (batches: over
``--repeat`` runs per round, fixed and upstream alternating). Ratios: fixed / upstream for batches (target <= 1.5),
prep (literals and one backend) / the fixed tokenizer's ``add_tokens`` (target < 1), and per size the time per added token, which stays
flat when a step grows linearly. It asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import functools
import gc
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_encode import default_vocab, make_texts  # noqa: E402


def audio_texts(k: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    top = max(k, 1)
    return [
        "<|user|>\n" + "".join(f"<|audio_{rng.randrange(top)}|>" for _ in range(50)) + "<|assistant|>"
        for _ in range(20)
    ]


def timed(fn) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def prepare_literals(tok) -> None:
    """The added-token literals (checked for overlaps) and those the assistant masks count."""
    tok._glm4_added_literals()
    tok._glm4_mask_literals()


def prepare_backend(tok) -> None:
    """The encoder backend (``tok.glm4_encoder``) that splits the literals out."""
    if tok._glm4_text_encoder(False) is None:
        raise RuntimeError("the fast path does not take these added tokens")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=Path, default=None)
    parser.add_argument("--remote-code", type=Path, default=None)
    parser.add_argument("--sizes", default="0,1000,16384,65536", help="audio tokens added after the 14")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    import transformers
    from transformers import AutoTokenizer

    import glm4_tokfix
    from glm4_tokfix.remote_code import glm4_encoders as tc

    vocab = args.vocab or default_vocab()
    backends = ["tiktoken"] + (["fastokens"] if tc.fastokens_available() else [])
    chats = [f"[gMASK]<sop><|user|>\n{t}<|assistant|>\n" for t in make_texts(500, 1)]
    figures: dict = {}

    def note(size: int, name: str, value: float) -> None:
        figures.setdefault((size, name), []).append(value)

    with tempfile.TemporaryDirectory(prefix="glm4-bench-vocab-") as tmp:
        if args.remote_code is not None:
            remote, label = args.remote_code, str(args.remote_code)
        else:
            from standins import make_model_folder

            remote = make_model_folder(Path(tmp) / "upstream", "current", vocab)
            label = "stand-in of upstream's current tokenization_chatglm.py"
        warm = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(vocab)
        for name in backends:  # the vocabulary's own one-time costs (fastokens' tokenizer.json) come first
            warm.glm4_encoder = name
            warm(chats[:2])
        print(f"# transformers {transformers.__version__}, python {platform.python_version()}, vocabulary {vocab}")
        print(f"# upstream: {label}; backends: {', '.join(backends)}; rounds {args.rounds}, repeat {args.repeat}")
        for round_ in range(args.rounds):
            for size in sizes:
                tokens = [f"<|audio_{i}|>" for i in range(size)]
                upstream = AutoTokenizer.from_pretrained(str(remote), trust_remote_code=True)
                fixed = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(vocab)
                for name in backends:  # this tokenizer's own one-time costs (its backends over the vocabulary)
                    fixed.glm4_encoder = name
                    fixed(chats[:2])
                note(size, "add_tokens upstream", timed(functools.partial(upstream.add_tokens, tokens)))
                note(size, "add_tokens fixed", timed(functools.partial(fixed.add_tokens, tokens)))
                audio = audio_texts(size, seed=round_)

                note(size, "prep literals", timed(functools.partial(prepare_literals, fixed)))
                for name in backends:
                    fixed.glm4_encoder = name
                    note(size, f"prep {name}", timed(functools.partial(prepare_backend, fixed)))
                fixed(audio[:1])
                upstream(audio[:1])
                for _ in range(args.repeat):
                    for batch_name, texts in (("audio", audio), ("chats", chats)):
                        for name in backends:
                            fixed.glm4_encoder = name
                            note(size, f"{batch_name} {name}", timed(functools.partial(fixed, texts, padding=True)))
                        note(size, f"{batch_name} upstream", timed(functools.partial(upstream, texts, padding=True)))
                del upstream, fixed

    def med(size: int, name: str) -> float:
        return statistics.median(figures[(size, name)])

    print()
    steps = ["literals"] + backends
    head = f"{'added':>14} | {'add_tokens up':>13} {'fixed':>8} | " + " | ".join(
        f"{'prep ' + n:>14} {'/add':>5} {'us/tok':>6}" for n in steps
    )
    print(head)
    for size in sizes:
        row = f"{14 + size:>14,} | {med(size, 'add_tokens upstream'):>12.3f}s {med(size, 'add_tokens fixed'):>7.3f}s | "
        cells = []
        for name in steps:
            prep, add = med(size, f"prep {name}"), med(size, "add_tokens fixed")
            per = prep / (14 + size) * 1e6
            cells.append(f"{prep:>13.4f}s {prep / add if add > 1e-4 else float('nan'):>5.2f} {per:>6.1f}")
        print(row + " | ".join(cells))
    print()
    print(f"{'added':>14} | {'batch':>5} | {'upstream':>9} | " + " | ".join(f"{n:>9} {'x up':>5}" for n in backends))
    for size in sizes:
        for batch_name in ("audio", "chats"):
            up = med(size, f"{batch_name} upstream")
            cells = [
                f"{med(size, f'{batch_name} {n}'):>8.4f}s {med(size, f'{batch_name} {n}') / up:>5.2f}" for n in backends
            ]
            print(f"{14 + size:>14,} | {batch_name:>5} | {up:>8.4f}s | " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
