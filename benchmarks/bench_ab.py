"""Two checkouts of glm4-tokfix, A/B: the routes of bench_routes for the glm4-tokfix tokenizers, as ratios to raw
tiktoken, measured in alternating processes (before, after, after, before, ...), in one run.

    python benchmarks/bench_ab.py --before DIR --after DIR [--rounds 4] [--repeat 3] [--python PY]

Each round starts one process per checkout (``PYTHONPATH=DIR/src``, working directory ``DIR``, so each uses its own
package and its own ``benchmarks/bench_encode.py`` texts); a process times every cell ``--repeat`` times (median)
and divides by raw tiktoken's ``encode_ordinary`` loop in the same process. The table gives each cell's median over
the rounds, before and after, and after / before. Columns: ``ChatGLM4Tokenizer`` on tiktoken and on fastokens
(left out when fastokens is absent), and a patched transformers fast tokenizer of a ``tokenizer.json`` built at run
time (glm-4-9b-chat-hf style). It asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys


def worker(repeat: int) -> None:
    """In a checkout (the working directory, its package on PYTHONPATH): print each cell's time / raw as JSON.

    The texts come from the checkout's own ``bench_encode``; the chats and the routes from this file's
    ``bench_routes`` (the same calls for both checkouts)."""
    import copy
    import gc
    import importlib.util
    import tempfile
    import time
    from pathlib import Path

    sys.path.insert(0, os.path.join(os.getcwd(), "benchmarks"))
    import tiktoken
    from bench_encode import default_vocab, make_texts
    from transformers import AutoTokenizer

    import glm4_tokfix
    from glm4_tokfix.convert import write_fast_folder

    try:
        from glm4_tokfix.remote_code.glm4_encoders import fastokens_available
        from glm4_tokfix.remote_code.glm4_tokens import GLM4_PAT_STR
        from glm4_tokfix.remote_code.glm4_vocab import load_tiktoken_ranks
    except ImportError:  # a checkout from before the bundle (one tokenization_chatglm module)
        from glm4_tokfix.tokenization_chatglm import GLM4_PAT_STR, fastokens_available, load_tiktoken_ranks

    spec = importlib.util.spec_from_file_location("bench_ab_routes", Path(__file__).with_name("bench_routes.py"))
    assert spec is not None and spec.loader is not None
    routes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(routes)

    vocab = default_vocab()
    texts = make_texts(2000, 0)
    chats = routes.make_chats(texts)
    ranks = load_tiktoken_ranks(vocab / "tokenizer.model")
    raw = tiktoken.Encoding(name="glm4-raw", pat_str=GLM4_PAT_STR, mergeable_ranks=ranks, special_tokens={})
    with tempfile.TemporaryDirectory(prefix="glm4-bench-ab-") as tmp:
        base = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(vocab)
        columns = {}
        for name in ("tiktoken", "fastokens") if fastokens_available() else ("tiktoken",):
            columns[name] = copy.deepcopy(base)
            columns[name].glm4_encoder = name
        folder = write_fast_folder(vocab, Path(tmp) / "glm-4-9b-chat-hf", "chat-hf")
        columns["hf-fast-patched"] = glm4_tokfix.patch(AutoTokenizer.from_pretrained(str(folder)))
        columns["hf-fast-patched"].chat_template = base.chat_template
        cells = {"raw/raw": lambda: [raw.encode_ordinary(t) for t in texts]}
        for name, tok in columns.items():
            cells.update({f"{name}/{route}": call for route, call in routes.route_calls(tok, texts, chats).items()})
        for fn in cells.values():  # warm-up
            fn()
        times: dict = {key: [] for key in cells}
        for _ in range(repeat):
            for key, fn in cells.items():
                gc.collect()
                time.sleep(0.05)
                start = time.perf_counter()
                result = fn()
                times[key].append(time.perf_counter() - start)
                del result
    medians = {key: statistics.median(ts) for key, ts in times.items()}
    print(json.dumps({key: value / medians["raw/raw"] for key, value in medians.items()}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.repeat)
        return 0
    runs: dict = {"before": [], "after": []}
    for k in range(args.rounds):
        for which in ("before", "after") if k % 2 == 0 else ("after", "before"):
            checkout = os.path.abspath(getattr(args, which))
            env = {**os.environ, "PYTHONPATH": os.path.join(checkout, "src")}
            command = [args.python, os.path.abspath(__file__), "--worker", "--before", "-", "--after", "-",
                       "--repeat", str(args.repeat)]  # fmt: skip
            done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True)
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                return done.returncode
            runs[which].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"before: {args.before}\nafter: {args.after}\n{args.rounds} rounds, each cell the median of {args.repeat}\n")
    print("| cell | before (x raw) | after (x raw) | after / before |\n| --- | ---: | ---: | ---: |")
    for cell in runs["before"][0]:
        if cell == "raw/raw" or cell not in runs["after"][0]:
            continue
        before = statistics.median(r[cell] for r in runs["before"])
        after = statistics.median(r[cell] for r in runs["after"])
        print(f"| {cell} | {before:.2f}x | {after:.2f}x | {after / before:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
