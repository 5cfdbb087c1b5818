"""Print the before/after ids quoted in docs/upstream.md, measured, on the vocabulary given (default: the real one).

    PYTHONPATH=src:tests python scripts/upstream_figures.py [VOCAB_DIR]

VOCAB_DIR holds glm-4-9b-chat's ``tokenizer.model`` and ``tokenizer_config.json`` (default
../shared/glm-4-9b-chat, else the embedded tiny vocabulary). Folders are built in a temporary directory:

(a) glm-4-9b-chat: the current and mid-2024 stand-ins of upstream's file (tests/standins), the same after
    ``glm4-tokfix export --minimal``, and glm4-tokfix's full module (``glm4-tokfix export``);
(b)/(c) glm-4-9b-chat-hf: a ``tokenizer.json`` with the conversion script's post-processor (ByteLevel +
    ``TemplateProcessing`` adding ``[gMASK]<sop>``) and with the proposed one (ByteLevel only).

``tests/toolkit/test_upstream_figures.py`` runs the same functions and asserts what the docs say about their output.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "src"), str(HERE.parent / "tests")]

CHATS = [[{"role": "user", "content": "你好"}], [{"role": "user", "content": "What is GLM-4?"}]]
KEYS = ("input_ids", "attention_mask", "position_ids")


def _load(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True)


def remote_code_tokenizers(vocab_dir: Path, work: Path) -> Dict[str, Any]:
    """name -> tokenizer: upstream stand-ins, minimally patched, full module (each from a folder of its own)."""
    from glm4_tokfix.minimal_patch import minimal_patch
    from glm4_tokfix.model_folder import patch_folder
    from standins import make_model_folder, module_source

    out: Dict[str, Any] = {}
    for revision in ("current", "mid2024"):
        out[revision] = _load(make_model_folder(work / f"up_{revision}_{uuid.uuid4().hex[:6]}", revision, vocab_dir))
        folder = make_model_folder(work / f"min_{revision}_{uuid.uuid4().hex[:6]}", revision, vocab_dir)
        patched = minimal_patch(module_source(revision).read_text(encoding="utf-8"))
        (folder / "tokenization_chatglm.py").write_text(patched.patched, encoding="utf-8")
        out[f"minimal_{revision}"] = _load(folder)
        out[f"minimal_{revision}_lines"] = patched.changed_lines
    folder = make_model_folder(work / f"full_{uuid.uuid4().hex[:6]}", "current", vocab_dir)
    patch_folder(folder)  # the full bundle beside upstream's file, auto_map pointing at it
    out["full"] = _load(folder)
    return out


def batch(tok: Any, side: str) -> Dict[str, List[List[int]]]:
    prompts = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in CHATS]
    encoding = tok(prompts, padding=True, padding_side=side)
    return {key: [list(row) for row in encoding[key]] for key in KEYS if key in encoding}


def fast_tokenizers(vocab_dir: Path, work: Path) -> Dict[str, Any]:
    """ "converted": the conversion script's post-processor; "proposed": ByteLevel only (as GLM-4-0414 ships)."""
    from transformers import AutoTokenizer

    from glm4_tokfix.convert import write_fast_folder

    return {
        name: AutoTokenizer.from_pretrained(
            str(write_fast_folder(vocab_dir, work / f"fast_{name}_{uuid.uuid4().hex[:6]}", style))
        )
        for name, style in (("converted", "chat-hf"), ("proposed", "0414"))
    }


def _print_batch(label: str, rows: Dict[str, List[List[int]]]) -> None:
    print(f"  {label}")
    for key, values in rows.items():
        for i, row in enumerate(values):
            print(f"    {key if i == 0 else '':<15}{row}")


def main(argv: List[str]) -> int:
    import transformers

    default = HERE.parent.parent / "shared" / "glm-4-9b-chat"
    vocab = Path(argv[0]) if argv else (default if (default / "tokenizer.model").is_file() else None)
    if vocab is None:
        import glm4_tokfix

        vocab = Path(glm4_tokfix.TINY_GLM4_DIR)
    work = Path(tempfile.mkdtemp(prefix="glm4-upstream-figures-"))
    os.environ.setdefault("HF_MODULES_CACHE", str(work / "modules"))
    try:
        print(f"vocabulary: {vocab}; transformers {transformers.__version__}")
        toks = remote_code_tokenizers(vocab, work)
        print(f"\n(a) glm-4-9b-chat, tok(prompts, padding=True, padding_side=...) for {CHATS}")
        print(f"    minimal diff: {toks['minimal_current_lines']} changed lines (current), "
              f"{toks['minimal_mid2024_lines']} (mid-2024)")  # fmt: skip
        for side in ("left", "right"):
            print(f"  padding_side={side!r}")
            for name in ("current", "mid2024", "minimal_current", "minimal_mid2024", "full"):
                try:
                    _print_batch(name, batch(toks[name], side))
                except Exception as exc:
                    print(f"  {name}\n    {type(exc).__name__}: {exc}")
        chat = "<|user|>\n你好<|assistant|>"
        for name in ("minimal_current", "full"):
            tok = toks[name]
            decoded = tok.decode(tok(chat, add_special_tokens=False).input_ids)
            print(f"  {name}: pair tok('question', 'answer') = {tok('question', 'answer').input_ids}; "
                  f"decode(ids of {chat!r}) = {decoded!r}")  # fmt: skip
        fast = fast_tokenizers(vocab, work)
        print("\n(b)/(c) converted tokenizer.json (glm-4-9b-chat-hf) vs the proposed post-processor")
        for name, tok in fast.items():
            prompt = tok.apply_chat_template(CHATS[0], add_generation_prompt=True, tokenize=False)
            print(f"  {name}: tok({prompt!r}) = {tok(prompt).input_ids}")
            print(
                f"  {name}: apply_chat_template(tokenize=True) = {list(tok.apply_chat_template(CHATS[0], add_generation_prompt=True, tokenize=True, return_dict=True)['input_ids'])}"
            )
            print(f"  {name}: tok('你好') = {tok('你好').input_ids}")
            # the example of docs/upstream.md (b)
            prompt = tok.apply_chat_template([{"role": "user", "content": "你好，你是谁"}], add_generation_prompt=True,
                                             tokenize=False)  # fmt: skip
            padded = tok([prompt, "[gMASK]<sop><|user|>\nhi<|assistant|>"], padding=True)
            print(f"  {name}: tok({prompt!r}) = {tok(prompt).input_ids}")
            print(f"  {name}: padded row 1 = {padded['input_ids'][1]}, mask {padded['attention_mask'][1]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
