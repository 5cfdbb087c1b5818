#!/usr/bin/env python
"""Batched GLM-4 chat generation, done right, and checked against one-by-one generation.

The corrected counterpart of GLM-4's ``trans_batch_demo.py``. That demo renders
each chat with the chat template, tokenizes the batch with padding, and then
slices 12 characters off every rendered string to hide the ``[gMASK]<sop>``
the upstream tokenizer adds a second time. Here nothing is sliced: the fixed
tokenizer sees that the rendered text already starts with the prefix and does
not add it again, and it pads on the left for generation.

Steps: render each chat with ``apply_chat_template(..., tokenize=False)``,
tokenize the batch with ``padding_side="left"``, call ``generate`` once, and
decode each row's new tokens. Then (unless ``--no-check``) generate each chat
alone from ``apply_chat_template(..., tokenize=True)`` and check that every
row's continuation is token-for-token the same.

Run it from a fresh clone (needs torch, transformers and tiktoken; no
downloads, and glm4_tokfix is taken from ``src/`` when it is not installed)::

    python examples/batch_chat.py                       # tiny random model, embedded tiny tokenizer
    python examples/batch_chat.py --tokenizer ../shared/glm-4-9b-chat   # real vocabulary, tiny random model
    python examples/batch_chat.py --model path/to/glm-4-9b-chat         # a real checkpoint

By default the model is a tiny, randomly initialised ``Glm4ForCausalLM``
(seeded, float64, 2 layers, hidden size 64), so it runs in seconds on a CPU
and its continuations are gibberish: what matters is that the batched and
one-by-one continuations are identical.

With ``--model DIR`` the tokenizer is the fixed ``ChatGLM4Tokenizer`` read
from ``DIR``'s ``tokenizer.model`` and ``tokenizer_config.json`` (same ids as
the folder's own tokenizer; ``glm4_tokfix.from_pretrained(DIR)``, which lays
the fix over the folder's own remote-code class, works as well), and the model
is ``AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)``, for
example the original glm-4-9b-chat (remote code). No weights are downloaded:
``DIR`` is a local folder.

Position ids. The tokenizer returns ``position_ids`` (0..n-1 over the real
tokens, 0 on pads), but a model built into transformers gets only
``input_ids`` and ``attention_mask``: ``generate`` derives the positions from
the mask itself on transformers 4.x and 5.x, and on 4.x a ``position_ids``
you pass is never extended, so every new token would be fed the last prompt
position. The original glm-4-9b-chat remote code is different: without
``position_ids`` it counts the pads, and it does extend the ones it is given,
so it gets them (see ``passes_position_ids``; ``--position-ids`` overrides).

Exit status: 0 when the check passes (or is skipped), 1 when a row differs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

try:
    import glm4_tokfix
except ImportError:  # a fresh clone without `pip install -e .`: use the package from src/
    _SRC = Path(__file__).resolve().parent.parent / "src"
    if not (_SRC / "glm4_tokfix" / "__init__.py").is_file():
        raise
    sys.path.insert(0, str(_SRC))
    import glm4_tokfix

Chat = List[Dict[str, str]]

#: Chats of very different lengths (one turn, a system prompt, several turns, CJK and emoji).
DEFAULT_CHATS: List[Chat] = [
    [{"role": "user", "content": "Hi!"}],
    [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Name three prime numbers."},
    ],
    [
        {"role": "user", "content": "你好，你是谁？"},
        {"role": "assistant", "content": "我是一个人工智能助手。"},
        {"role": "user", "content": "Write a haiku about padding tokens 🙂: they wait on the left, unseen."},
    ],
    [
        {"role": "user", "content": "Summarise this: " + "the quick brown fox jumps over the lazy dog; " * 6},
    ],
]

#: glm-4-9b-chat's vocabulary size as the model sees it (its embedding has 151,552 rows for 151,343 tokens).
GLM4_PADDED_VOCAB_SIZE = 151552

#: The tokens that end a GLM-4 reply (glm-4-9b-chat's generation_config: <|endoftext|>, <|user|>, <|observation|>).
STOP_TOKENS = ("<|endoftext|>", "<|user|>", "<|observation|>")


# --------------------------------------------------------------------- loading
def load_tokenizer(folder: os.PathLike | str):
    """The fixed ``ChatGLM4Tokenizer`` over the vocabulary in ``folder``, padding on the left.

    ``folder`` holds ``tokenizer.model`` and ``tokenizer_config.json`` (a
    glm-4-9b-chat model folder, or ``glm4_tokfix.TINY_GLM4_DIR``).
    """
    folder = Path(folder)
    if not (folder / "tokenizer.model").is_file():
        raise OSError(f"{folder} has no tokenizer.model: not a GLM-4 tokenizer folder")
    return glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(str(folder), padding_side="left")


def stop_token_ids(tokenizer) -> List[int]:
    return [tokenizer.convert_tokens_to_ids(t) for t in STOP_TOKENS]


def build_tiny_model(
    tokenizer,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    layers: int = 2,
    vocab_size: Optional[int] = None,
):
    """A tiny randomly initialised transformers ``Glm4ForCausalLM`` for ``tokenizer`` (float64, eval mode).

    Seeded, so the same ``seed`` gives the same weights within one
    transformers version. ``vocab_size`` defaults to the tokenizer's size, or
    to glm-4-9b-chat's 151,552 for the real vocabulary. Weights are drawn with
    a larger spread than transformers' default (std 0.2 instead of 0.02) so
    the logits are far apart and depend on the whole prompt, not just its
    last token. Attention is transformers' default ``sdpa`` (its ``eager``
    attention runs softmax in float32, where the float64 mask value becomes
    ``-inf``, so a fully padded query row turns into NaN that spreads).

        >>> model = build_tiny_model(load_tokenizer(glm4_tokfix.TINY_GLM4_DIR), seed=0)
        >>> model.config.vocab_size, model.dtype
        (564, torch.float64)
    """
    import torch
    from transformers import Glm4Config, Glm4ForCausalLM

    if vocab_size is None:
        vocab_size = len(tokenizer)
        if GLM4_PADDED_VOCAB_SIZE - 256 <= vocab_size <= GLM4_PADDED_VOCAB_SIZE:
            vocab_size = GLM4_PADDED_VOCAB_SIZE
    if vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size {vocab_size} is smaller than the tokenizer's {len(tokenizer)} tokens")
    heads = 4
    if hidden_size % heads:
        raise ValueError(f"hidden_size must be a multiple of {heads}, got {hidden_size}")
    config = Glm4Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=2,
        head_dim=hidden_size // heads,
        max_position_embeddings=4096,
        initializer_range=0.2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stop_token_ids(tokenizer),
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Glm4ForCausalLM(config).to(torch.float64).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = stop_token_ids(tokenizer)
    return model


def load_model(folder: os.PathLike | str, dtype: str = "auto"):
    """``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`` in eval mode.

    ``trust_remote_code`` runs the Python files of ``folder``: only use it on
    a folder you trust. ``dtype`` is ``"auto"`` (the checkpoint's) or a torch
    dtype name such as ``"bfloat16"``.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    if dtype != "auto":
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"unknown torch dtype {dtype!r}")
        dtype = getattr(torch, dtype)
    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"  # `torch_dtype` was renamed in 4.56
    return AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=True, **{key: dtype}).eval()


# ------------------------------------------------------------------ the batch
def render(tokenizer, chats: Sequence[Chat]) -> List[str]:
    """Each chat rendered by the chat template, ready for the reply (it starts with ``[gMASK]<sop>``)."""
    return [tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False) for chat in chats]


def encode_batch(tokenizer, texts: Sequence[str]):
    """Tokenize rendered chats as one left-padded batch of torch tensors.

    No slicing of the rendered text: the fixed tokenizer adds ``[gMASK]<sop>``
    only when a text does not already start with it.
    """
    return tokenizer(list(texts), padding=True, padding_side="left", return_tensors="pt")


POSITION_IDS_CHOICES = ("auto", "pass", "omit")


def passes_position_ids(model, position_ids: str = "auto") -> bool:
    """Whether ``generate`` on ``model`` is given the tokenizer's ``position_ids``.

    ``"pass"`` and ``"omit"`` decide outright. ``"auto"`` omits them for
    models built into transformers, whose ``generate`` derives positions from
    ``attention_mask`` (and on 4.x would never extend ``position_ids`` passed
    in), and passes them to remote-code models such as the original
    glm-4-9b-chat, whose own ``prepare_inputs_for_generation`` counts the pads
    unless it is given ``position_ids`` (which it then extends)::

        >>> model = build_tiny_model(load_tokenizer(glm4_tokfix.TINY_GLM4_DIR))  # transformers' Glm4ForCausalLM
        >>> passes_position_ids(model), passes_position_ids(model, "pass")
        (False, True)
    """
    if position_ids not in POSITION_IDS_CHOICES:
        raise ValueError(f"position_ids must be one of {POSITION_IDS_CHOICES}, got {position_ids!r}")
    if position_ids != "auto":
        return position_ids == "pass"
    return not type(model).__module__.startswith("transformers.")


def generation_inputs(model, batch, position_ids: str = "auto") -> Dict[str, Any]:
    """The keyword arguments for ``model.generate`` from a tokenizer batch (see ``passes_position_ids``)."""
    keys = ["input_ids", "attention_mask"]
    if passes_position_ids(model, position_ids):
        if "position_ids" not in batch:
            raise ValueError("position_ids were asked for but the tokenizer's batch has none")
        keys.append("position_ids")
    return {key: batch[key].to(model.device) for key in keys}


def continuation(new_tokens: Sequence[int], stop_ids: Sequence[int]) -> List[int]:
    """The new tokens of one row up to and including its first stop token (pads after it are dropped)."""
    out: List[int] = []
    for token in new_tokens:
        out.append(int(token))
        if token in stop_ids:
            break
    return out


def _greedy(model, tokenizer, inputs: Dict[str, Any], max_new_tokens: int):
    import torch

    with torch.no_grad():
        return model.generate(
            **inputs,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=stop_token_ids(tokenizer),
        )


def generate_batch(
    model, tokenizer, chats: Sequence[Chat], max_new_tokens: int = 12, position_ids: str = "auto"
) -> List[List[int]]:
    """Greedy continuations of all ``chats`` from one ``generate`` call on a left-padded batch."""
    batch = encode_batch(tokenizer, render(tokenizer, chats))
    output = _greedy(model, tokenizer, generation_inputs(model, batch, position_ids), max_new_tokens)
    width = batch["input_ids"].shape[1]
    stops = stop_token_ids(tokenizer)
    return [continuation(row[width:].tolist(), stops) for row in output]


def generate_one_by_one(model, tokenizer, chats: Sequence[Chat], max_new_tokens: int = 12) -> List[List[int]]:
    """Greedy continuations of each chat alone, from ``apply_chat_template(..., tokenize=True)``.

    The reference: an unpadded row needs no ``position_ids`` (every GLM-4
    implementation counts 0..n-1 by itself), so only ``input_ids`` and
    ``attention_mask`` are passed, whatever ``--position-ids`` says.
    """
    stops = stop_token_ids(tokenizer)
    results = []
    for chat in chats:
        single = tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        output = _greedy(model, tokenizer, generation_inputs(model, single, "omit"), max_new_tokens)
        results.append(continuation(output[0, single["input_ids"].shape[1] :].tolist(), stops))
    return results


# ------------------------------------------------------------------------ CLI
def _read_chats(path: str) -> List[Chat]:
    try:
        with open(path, encoding="utf-8") as handle:
            chats = json.load(handle)
    except OSError as exc:
        raise OSError(f"cannot read chats file {path!r}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"chats file {path!r} is not valid JSON: {exc}") from None
    if not isinstance(chats, list) or not chats or not all(isinstance(c, list) and c for c in chats):
        raise ValueError(f"chats file {path!r} must hold a non-empty JSON list of chats (lists of messages)")
    for i, chat in enumerate(chats):
        for message in chat:
            if not isinstance(message, dict) or not {"role", "content"} <= set(message):
                raise ValueError(f"chats file {path!r}, chat {i}: every message needs 'role' and 'content'")
    return chats


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Batched GLM-4 chat generation with the fixed tokenizer, checked against one-by-one generation.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--model",
        metavar="DIR",
        help="a GLM-4 model folder (weights, config, tokenizer); loaded with trust_remote_code=True",
    )
    source.add_argument(
        "--tokenizer",
        metavar="DIR",
        help="tokenizer folder for the tiny random model (default: the embedded tiny GLM-4 tokenizer)",
    )
    parser.add_argument("--chats", metavar="FILE", help="JSON file: a list of chats (lists of {role, content})")
    parser.add_argument("--max-new-tokens", type=int, default=12, metavar="N")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tiny random model (default 0)")
    parser.add_argument("--dtype", default="auto", help="dtype for --model (default: the checkpoint's)")
    parser.add_argument(
        "--position-ids",
        choices=POSITION_IDS_CHOICES,
        default="auto",
        help="give generate() the tokenizer's position_ids: auto (default) omits them for models "
        "built into transformers and passes them to remote-code models",
    )
    parser.add_argument("--no-check", action="store_true", help="skip generating each chat alone for comparison")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.max_new_tokens < 1:
        print("error: --max-new-tokens must be at least 1", file=sys.stderr)
        return 2
    try:
        chats = _read_chats(args.chats) if args.chats else DEFAULT_CHATS
        if args.model:
            tokenizer = load_tokenizer(args.model)
            model = load_model(args.model, args.dtype)
            print(f"model: {type(model).__name__} from {args.model}")
        else:
            tokenizer = load_tokenizer(args.tokenizer or glm4_tokfix.TINY_GLM4_DIR)
            model = build_tiny_model(tokenizer, seed=args.seed)
            print(
                f"model: tiny random Glm4ForCausalLM (seed {args.seed}, float64, "
                f"{model.config.num_hidden_layers} layers, hidden {model.config.hidden_size}, "
                f"vocab {model.config.vocab_size}); its replies are gibberish by design"
            )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    texts = render(tokenizer, chats)
    batch = encode_batch(tokenizer, texts)
    prefix = tokenizer.get_prefix_tokens()
    print(
        f"tokenizer: {type(tokenizer).__name__}, {len(tokenizer)} tokens; "
        f"batch {tuple(batch['input_ids'].shape)}, padded on the left"
    )
    print(f"generate() gets: {', '.join(generation_inputs(model, batch, args.position_ids))}")
    for i, (ids, mask) in enumerate(zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist())):
        real = [t for t, m in zip(ids, mask) if m]
        copies = sum(1 for j in range(0, len(real) - 1) if real[j : j + 2] == prefix)
        print(
            f"  prompt {i}: {len(real):3d} tokens, {len(ids) - len(real):3d} pads, "
            f"[gMASK]<sop> x{copies}, starts {tokenizer.decode(real[:3])!r}"
        )

    batched = generate_batch(model, tokenizer, chats, args.max_new_tokens, args.position_ids)
    for i, ids in enumerate(batched):
        print(f"  reply {i}: {tokenizer.decode(ids, skip_special_tokens=True)!r}  ids={ids}")

    if args.no_check:
        print("check skipped (--no-check)")
        return 0
    alone = generate_one_by_one(model, tokenizer, chats, args.max_new_tokens)
    differing = [i for i, (a, b) in enumerate(zip(batched, alone)) if a != b]
    if differing:
        for i in differing:
            print(f"  MISMATCH row {i}: batched {batched[i]} != alone {alone[i]}")
        print(f"check FAILED: {len(differing)} of {len(chats)} rows differ from one-by-one generation")
        return 1
    print(
        f"check passed: all {len(chats)} batched continuations are token-identical to generating each "
        "chat alone from apply_chat_template(tokenize=True)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
