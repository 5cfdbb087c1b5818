"""Every route users take, on every GLM-4 tokenizer, as ratios to single-thread raw tiktoken, in one run.

    python benchmarks/bench_routes.py [--vocab DIR] [--remote-code DIR] [--texts 2000] [--repeat 3] [--json]

Columns (tokenizers, all on ``--vocab``'s vocabulary; default ../shared/glm-4-9b-chat, else the tiny one):

* ``tiktoken``: ``glm4_tokfix.ChatGLM4Tokenizer`` with ``glm4_encoder = "tiktoken"``;
* ``fastokens``: the same with ``glm4_encoder = "fastokens"`` (column left out when fastokens is absent);
* ``hf-fast``: transformers' own fast tokenizer of a ``tokenizer.json`` built at run time from the vocabulary
  (``glm4_tokfix.convert``, glm-4-9b-chat-hf style; unpatched, so it doubles a literal prefix);
* ``hf-fast-patched``: the same after ``glm4_tokfix.patch``;
* ``upstream``: ``--remote-code DIR``'s own ``tokenization_chatglm.py``, else our stand-in of upstream's
  current file (tests/standins) in a temporary folder.

Rows (routes): ``list`` = ``tok(texts, padding=True)``; ``pt`` = the same with ``return_tensors="pt"``;
``offsets`` = the list call with ``return_offsets_mapping=True``; ``offsets-pt`` = the same with
``return_tensors="pt"`` (compared with ``pt``); ``chat`` =
``apply_chat_template(chats, tokenize=True)``; ``render+list`` = ``apply_chat_template(chats, tokenize=False)``
then ``tok(rendered, add_special_tokens=False)``; ``sft`` = ``glm4_tokfix.sft.tokenize_chats(tok, chats)``
(assistant masks and labels). ``--texts`` mixed texts (bench_encode's, ~250 tokens each on the real vocabulary),
and half as many two-message chats built from them (about as many tokens).

Each cell is the median of ``--repeat`` rounds; a round runs every cell once, in turn (interleaved, so a slow
spell of the shared machine hits all alike). Every figure is printed as a ratio to ``raw``: tiktoken's
``encode_ordinary`` over the texts in a loop, one thread. A route a tokenizer does not offer prints its
error class.

The target lines below the table are measured apart, in pairs: the two cells a target compares run back to
back, ``--pairs`` times (default: twice ``--repeat``), in alternating order, and the line gives the median of
those per-pair ratios. In the table the two cells of a target can be tens of seconds apart in a round, and on
a shared machine that moved their ratio by up to 30%. ``--json`` gives every round and every pair. It asserts
nothing about speed.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_encode import default_vocab, make_texts  # noqa: E402  (also sets a private HF_MODULES_CACHE)

PREFIX = "[gMASK]<sop>"


def make_chats(texts: list) -> list:
    """Two-message chats (user, assistant) from consecutive texts, literal chat markup taken out."""
    plain = [
        t.replace(PREFIX, "").replace("<|system|>\nBe helpful.<|user|>\n", "").replace("<|assistant|>", "")
        for t in texts
    ]
    return [
        [{"role": "user", "content": plain[i]}, {"role": "assistant", "content": plain[i + 1]}]
        for i in range(0, len(plain) - 1, 2)
    ]


def route_calls(tok, texts: list, chats: list) -> dict:
    """The routes (the table's rows) as calls on ``tok``, by name."""
    from glm4_tokfix.sft import tokenize_chats

    return {
        "list": lambda: tok(texts, padding=True),
        "pt": lambda: tok(texts, padding=True, return_tensors="pt"),
        "offsets": lambda: tok(texts, padding=True, return_offsets_mapping=True),
        "offsets-pt": lambda: tok(texts, padding=True, return_offsets_mapping=True, return_tensors="pt"),
        "chat": lambda: tok.apply_chat_template(chats, tokenize=True),
        "render+list": lambda: tok(tok.apply_chat_template(chats, tokenize=False), add_special_tokens=False),
        "sft": lambda: tokenize_chats(tok, chats),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=Path, default=None)
    parser.add_argument("--remote-code", type=Path, default=None)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=None, help="rounds of each target pair (default: 2 x --repeat)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    import tiktoken
    import transformers
    from transformers import AutoTokenizer

    import glm4_tokfix
    from glm4_tokfix.convert import write_fast_folder
    from glm4_tokfix.remote_code.glm4_encoders import fastokens_available
    from glm4_tokfix.remote_code.glm4_tokens import GLM4_PAT_STR
    from glm4_tokfix.remote_code.glm4_vocab import load_tiktoken_ranks

    vocab = args.vocab or default_vocab()
    texts = make_texts(args.texts, args.seed)
    chats = make_chats(texts)
    ranks = load_tiktoken_ranks(vocab / "tokenizer.model")
    raw = tiktoken.Encoding(name="glm4-raw", pat_str=GLM4_PAT_STR, mergeable_ranks=ranks, special_tokens={})

    with tempfile.TemporaryDirectory(prefix="glm4-bench-routes-") as tmp:
        folder = write_fast_folder(vocab, Path(tmp) / "glm-4-9b-chat-hf", "chat-hf")
        base = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(vocab)
        columns = {}
        columns["tiktoken"] = copy.deepcopy(base)
        columns["tiktoken"].glm4_encoder = "tiktoken"
        if fastokens_available():
            columns["fastokens"] = copy.deepcopy(base)
            columns["fastokens"].glm4_encoder = "fastokens"
        columns["hf-fast"] = AutoTokenizer.from_pretrained(str(folder))
        columns["hf-fast-patched"] = glm4_tokfix.patch(AutoTokenizer.from_pretrained(str(folder)))
        if args.remote_code is not None:
            remote, upstream_label = args.remote_code, str(args.remote_code)
        else:
            from standins import make_model_folder

            remote = make_model_folder(Path(tmp) / "upstream", "current", vocab)
            upstream_label = "stand-in of upstream's current tokenization_chatglm.py"
        columns["upstream"] = AutoTokenizer.from_pretrained(str(remote), trust_remote_code=True)
        template = base.chat_template
        for tok in columns.values():
            if not getattr(tok, "chat_template", None):
                tok.chat_template = template

        cells = {"raw": {"raw": lambda: [raw.encode_ordinary(t) for t in texts]}}
        for name, tok in columns.items():
            cells[name] = route_calls(tok, texts, chats)
        errors = {}
        for name, fns in cells.items():  # warm-up, and find what a tokenizer does not offer
            for route, fn in list(fns.items()):
                try:
                    fn()
                except Exception as exc:
                    errors[(name, route)] = type(exc).__name__
                    del fns[route]
        times = {(name, route): [] for name, fns in cells.items() for route in fns}
        for _ in range(args.repeat):
            for name, fns in cells.items():
                for route, fn in fns.items():
                    gc.collect()
                    time.sleep(0.1)  # the last cell's worker threads (Rayon's spin before they sleep) settle first
                    start = time.perf_counter()
                    result = fn()
                    times[(name, route)].append(time.perf_counter() - start)
                    del result
        # the targets: (cell, cell it is compared with), each pair run back to back, in alternating order
        targets = []
        for name in [n for n in ("tiktoken", "fastokens") if n in columns]:
            targets += [((name, "pt"), (name, "list")), ((name, "offsets"), (name, "list")),
                        ((name, "offsets-pt"), (name, "pt")),
                        ((name, "chat"), (name, "render+list")), ((name, "sft"), (name, "render+list"))]  # fmt: skip
        if "fastokens" in columns:
            targets.append((("fastokens", "list"), ("raw", "raw")))
        targets += [
            (("hf-fast-patched", "list"), (name, "list")) for name in ("tiktoken", "fastokens") if name in columns
        ]
        targets = [(a, b) for a, b in targets if a in times and b in times]
        paired = {(a, b): [] for a, b in targets}
        for k in range(args.pairs or 2 * args.repeat):
            for a, b in targets:
                took = {}
                for key in (a, b) if k % 2 == 0 else (b, a):
                    gc.collect()
                    time.sleep(0.1)
                    start = time.perf_counter()
                    result = cells[key[0]][key[1]]()
                    took[key] = time.perf_counter() - start
                    del result
                paired[(a, b)].append(took[a] / took[b])
        median = {key: statistics.median(ts) for key, ts in times.items()}
        n_tokens = sum(map(len, cells["raw"]["raw"]()))
        chat_tokens = sum(map(len, base.apply_chat_template(chats, tokenize=True, return_dict=False)))

    baseline = median[("raw", "raw")]
    route_names = list(route_calls(base, texts, chats))
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "versions": {
            "transformers": transformers.__version__,
            "tiktoken": tiktoken.__version__,
            "glm4-tokfix": glm4_tokfix.__version__,
        },
        "vocab": str(vocab),
        "upstream": upstream_label,
        "texts": len(texts),
        "tokens": n_tokens,
        "chats": len(chats),
        "chat_tokens": chat_tokens,
        "repeat": args.repeat,
        "raw_seconds": baseline,
        "seconds": {f"{n}/{r}": s for (n, r), s in median.items()},
        "ratios_to_raw": {f"{n}/{r}": s / baseline for (n, r), s in median.items()},
        "rounds": {f"{n}/{r}": ts for (n, r), ts in times.items()},
        "unavailable": {f"{n}/{r}": e for (n, r), e in errors.items()},
        "paired_ratios": {f"{a[0]}/{a[1]} : {b[0]}/{b[1]}": rs for (a, b), rs in paired.items()},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['machine']}; " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    print(f"vocab {vocab}; upstream: {upstream_label}; median of {args.repeat} interleaved rounds")
    print(f"{len(texts)} texts, {n_tokens:,} tokens; {len(chats)} chats, {chat_tokens:,} tokens")
    print(f"raw = tiktoken encode_ordinary loop, one thread: {baseline:.3f} s. Cells: time / raw\n")
    names = list(columns)
    print("| route | " + " | ".join(names) + " |")
    print("| --- |" + " ---: |" * len(names))
    for route in route_names:
        row = []
        for name in names:
            key = (name, route)
            row.append(f"{median[key] / baseline:.2f}x" if key in median else errors.get(key, "-"))
        print(f"| {route} | " + " | ".join(row) + " |")

    def ratio(a, b):  # the median of the pairs' ratios: the two cells ran back to back
        if (a, b) not in paired:
            return float("nan")
        return statistics.median(paired[(a, b)])

    print(f"\ntargets: each the median of {len(next(iter(paired.values()), []))} pairs run back to back")
    for name in [n for n in ("tiktoken", "fastokens") if n in columns]:
        print(
            f"{name}: pt / list {ratio((name, 'pt'), (name, 'list')):.2f}x (target <= 1.3); offsets / list "
            f"{ratio((name, 'offsets'), (name, 'list')):.2f}x (target <= 1.3); offsets-pt / pt "
            f"{ratio((name, 'offsets-pt'), (name, 'pt')):.2f}x; chat / (render+list) "
            f"{ratio((name, 'chat'), (name, 'render+list')):.2f}x (target <= 1.3); sft / (render+list) "
            f"{ratio((name, 'sft'), (name, 'render+list')):.2f}x (target <= 1.5)"
        )
    if "fastokens" in columns:
        print(f"fastokens list / raw {ratio(('fastokens', 'list'), ('raw', 'raw')):.2f}x (target <= 0.5)")
    print(
        f"hf-fast-patched list / tiktoken list {ratio(('hf-fast-patched', 'list'), ('tiktoken', 'list')):.2f}x; "
        f"/ fastokens list {ratio(('hf-fast-patched', 'list'), ('fastokens', 'list')):.2f}x (target <= 1.1)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
