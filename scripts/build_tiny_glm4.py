"""Build the embedded tiny GLM-4 tokenizer from text this project owns.

    python scripts/build_tiny_glm4.py [--merges 512] [--out src/glm4_tokfix/data/tiny-glm4]

Learns byte-level BPE merges on ``scripts/tiny_corpus.txt`` after the GLM-4
split pattern, writes them as a ``tokenizer.model`` (``<base64 token> <rank>``
per line: the 256 single bytes first, then one line per merge) and writes a
``tokenizer_config.json`` in the upstream glm-4-9b-chat format: the same 14
added tokens with ids right after the ranks, the same chat template, left
padding. The output is deterministic: running the script again rewrites the
same bytes.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
from pathlib import Path

import regex

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUT = ROOT / "src" / "glm4_tokfix" / "data" / "tiny-glm4"

# Kept in step with glm4_tokfix.remote_code.glm4_tokens (not imported so the script runs without the package).
PAT_STR = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL_TOKENS = [
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>",
    "<|end_of_video|>",
]  # fmt: skip
CHAT_TEMPLATE_FILE = HERE / "glm4_chat_template.jinja"


def learn_merges(text: str, n_merges: int) -> list[bytes]:
    """Classic byte-pair encoding: repeatedly merge the most frequent adjacent pair (ties: smallest pair)."""
    words = collections.Counter(m.encode("utf-8") for m in regex.findall(PAT_STR, text))
    pieces = {w: [bytes([b]) for b in w] for w in words}
    merges: list[bytes] = []
    for _ in range(n_merges):
        pairs: collections.Counter[tuple[bytes, bytes]] = collections.Counter()
        for word, count in words.items():
            parts = pieces[word]
            for a, b in zip(parts, parts[1:]):
                pairs[(a, b)] += count
        if not pairs:
            break
        best_count = max(pairs.values())
        if best_count < 2:
            break
        a, b = min(p for p, c in pairs.items() if c == best_count)
        merges.append(a + b)
        for word, parts in pieces.items():
            i, out = 0, []
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            pieces[word] = out
    return merges


def build(out: Path, n_merges: int) -> int:
    text = (HERE / "tiny_corpus.txt").read_text(encoding="utf-8")
    ranks = [bytes([b]) for b in range(256)]
    for token in learn_merges(text, n_merges):
        if token not in ranks:
            ranks.append(token)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "tokenizer.model", "wb") as handle:
        for rank, token in enumerate(ranks):
            handle.write(base64.b64encode(token) + b" " + str(rank).encode() + b"\n")
    n = len(ranks)
    config = {
        "auto_map": {"AutoTokenizer": ["tokenization_chatglm.ChatGLM4Tokenizer", None]},
        "added_tokens_decoder": {
            str(n + i): {
                "content": t,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for i, t in enumerate(SPECIAL_TOKENS)
        },
        "additional_special_tokens": SPECIAL_TOKENS,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE_FILE.read_text(encoding="utf-8"),
        "do_lower_case": False,
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "model_max_length": 128000,
        "padding_side": "left",
        "remove_space": False,
        "tokenizer_class": "ChatGLM4Tokenizer",
    }
    with open(out / "tokenizer_config.json", "w", encoding="utf-8") as handle:
        json.dump(config, handle, ensure_ascii=False, indent=2)
        handle.write("\n")
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--merges", type=int, default=512, help="number of BPE merges to learn (default 512)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args()
    n = build(args.out, args.merges)
    print(f"wrote {args.out}: {n} ranks, added tokens {n}..{n + len(SPECIAL_TOKENS) - 1}")


if __name__ == "__main__":
    main()
