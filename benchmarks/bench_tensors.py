"""Tensors and collation speed: glm4-tokfix vs the HF fast tokenizer of the same vocabulary, in one run.

    python benchmarks/bench_tensors.py [--vocab DIR] [--texts 2000] [--repeat 7] [--batch 32] [--json]

* ``--vocab DIR``: a GLM-4 tokenizer folder (tokenizer.model + tokenizer_config.json). Default:
  ../shared/glm-4-9b-chat when present, else the embedded tiny tokenizer.

The HF fast tokenizer ("hf-fast") is built at run time in a temporary folder from the same
``tokenizer.model`` by ``glm4_tokfix.convert.write_fast_folder(vocab, out, style="0414")`` and loaded with
plain ``AutoTokenizer.from_pretrained(out)``: transformers' own fast (Rust) tokenizer, same ids, nothing
downloaded. Texts are bench_encode.py's (``--texts`` mixed texts, about 250 tokens each on the real
vocabulary). Each figure is the median of ``--repeat`` interleaved rounds (every variant once per round,
each after ``gc.collect()``):

* ``tiktoken``: raw ``Encoding.encode_ordinary`` over the texts in a loop (one thread, no padding);
* ``list`` / ``np`` / ``pt``: ``tok(texts, padding=True[, return_tensors=...])`` on glm4-tokfix's fast path;
* ``pt-via-lists``: the lists converted by transformers' ``BatchEncoding(..., tensor_type="pt")`` (how
  ``return_tensors="pt"`` was built before);
* ``hf-fast-pt``: ``hf_fast(texts, padding=True, return_tensors="pt")``, the peer;
* ``collate``: ``DataCollatorWithPadding(tok, return_tensors="pt")`` over the texts' features (each
  ``tok(text)``, as a pre-tokenized dataset holds them) in batches of ``--batch``, right padding;
  ``collate-generic`` is the same with transformers' row-by-row ``pad`` (before), ``collate-hf-fast`` the
  HF fast tokenizer with its own features.

It prints medians and the ratios issue 12 tracks (targets: pt / list <= 1.3, collate / collate-hf-fast <=
1.0, list / tiktoken <= 1.0). It asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from types import MethodType

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_encode import default_vocab, make_texts, median_times

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=Path, default=None)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    import numpy
    import tiktoken
    import tokenizers
    import torch
    import transformers
    from transformers import AutoTokenizer, BatchEncoding, DataCollatorWithPadding, PreTrainedTokenizerBase

    import glm4_tokfix
    from glm4_tokfix.convert import write_fast_folder

    vocab = args.vocab or default_vocab()
    ours = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(vocab)
    texts = make_texts(args.texts, args.seed)
    n_tokens = sum(len(ours.tokenizer.encode_ordinary(t)) for t in texts)

    with tempfile.TemporaryDirectory(prefix="glm4-tokfix-bench-") as tmp:
        hf_fast = AutoTokenizer.from_pretrained(str(write_fast_folder(vocab, Path(tmp) / "fast", style="0414")))
    assert hf_fast.is_fast, type(hf_fast)
    probe = texts[1]  # hf-fast ("0414" style) adds no [gMASK]<sop>: compare the text's own ids
    assert hf_fast(probe, add_special_tokens=False)["input_ids"] == ours(probe, add_special_tokens=False)["input_ids"]

    # Collators: right padding, each tokenizer's own features (ours carry position_ids too).
    ours_right = copy.deepcopy(ours)
    ours_right.padding_side = "right"
    generic_right = copy.deepcopy(ours_right)
    generic_right.pad = MethodType(PreTrainedTokenizerBase.pad, generic_right)  # transformers' row-by-row pad
    hf_fast.padding_side = "right"
    batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
    our_features = [[dict(ours(t)) for t in batch] for batch in batches]
    hf_features = [[dict(hf_fast(t)) for t in batch] for batch in batches]
    collate_ours = DataCollatorWithPadding(ours_right, return_tensors="pt")
    collate_generic = DataCollatorWithPadding(generic_right, return_tensors="pt")
    collate_hf = DataCollatorWithPadding(hf_fast, return_tensors="pt")
    for a, b in zip(collate_ours(our_features[0]).values(), collate_generic(our_features[0]).values()):
        assert torch.equal(a, b)

    encode_ordinary = ours.tokenizer.encode_ordinary
    runs = {
        "tiktoken": lambda: [encode_ordinary(t) for t in texts],
        "list": lambda: ours(texts, padding=True),
        "np": lambda: ours(texts, padding=True, return_tensors="np"),
        "pt": lambda: ours(texts, padding=True, return_tensors="pt"),
        "pt-via-lists": lambda: BatchEncoding(ours(texts, padding=True).data, tensor_type="pt"),
        "hf-fast-pt": lambda: hf_fast(texts, padding=True, return_tensors="pt"),
        "collate": lambda: [collate_ours(f) for f in our_features],
        "collate-generic": lambda: [collate_generic(f) for f in our_features],
        "collate-hf-fast": lambda: [collate_hf(f) for f in hf_features],
    }
    for fn in runs.values():  # warm-up: lazy imports, tiktoken's caches, torch's allocator
        fn()
    seconds = median_times(runs, args.repeat)
    ratios = {
        "pt / list (target <= 1.3)": seconds["pt"] / seconds["list"],
        "np / list": seconds["np"] / seconds["list"],
        "pt-via-lists / pt (speed-up)": seconds["pt-via-lists"] / seconds["pt"],
        "pt / hf-fast-pt": seconds["pt"] / seconds["hf-fast-pt"],
        "collate / collate-hf-fast (target <= 1.0)": seconds["collate"] / seconds["collate-hf-fast"],
        "collate-generic / collate (speed-up)": seconds["collate-generic"] / seconds["collate"],
        "list / tiktoken (target <= 1.0)": seconds["list"] / seconds["tiktoken"],
    }
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "versions": {
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "tiktoken": tiktoken.__version__,
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "glm4-tokfix": glm4_tokfix.__version__,
        },
        "vocab": str(vocab),
        "texts": len(texts),
        "tokens": n_tokens,
        "collator_batches": f"{len(batches)} x {args.batch}",
        "threads": ours._glm4_thread_count(texts),
        "repeat": args.repeat,
        "seconds": seconds,
        "ratios": ratios,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    print(f"{report['machine']}; {versions}; load average {report['load_average']}")
    print(f"{len(texts)} texts, {n_tokens} tokens (vocab {vocab}); collator: {report['collator_batches']}, right")
    print(f"median of {args.repeat} interleaved rounds; glm4-tokfix encodes with {report['threads']} thread(s)")
    print(f"{'run':<18}{'median s':>10}")
    for name, s in seconds.items():
        print(f"{name:<18}{s:>10.4f}")
    print("ratios:")
    for name, value in ratios.items():
        print(f"  {name:<44}{value:>7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
