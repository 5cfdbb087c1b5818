"""Build GLM-4 fast tokenizers (``tokenizer.json``) from a glm-4-9b-chat ``tokenizer.model``.

transformers-native GLM-4 checkpoints (glm-4-9b-chat-hf, GLM-4-0414, GLM-4.5, ...) ship their vocabulary as a
``tokenizer.json`` for the Rust ``tokenizers`` library. This module makes such a tokenizer from the remote-code
vocabulary, through transformers' own tiktoken converter, so that no hub download is ever needed:

    >>> backend = build_backend("path/to/glm-4-9b-chat", style="chat-hf")
    >>> backend.encode("<|user|>\\nhi").ids          # glm-4-9b-chat-hf style: the post-processor adds the prefix
    [151331, 151333, 151336, 198, 6023]

Two post-processor styles exist in the wild (``STYLES``):

``"chat-hf"``
    glm-4-9b-chat-hf: ``ByteLevel(trim_offsets=False)`` then ``TemplateProcessing(single="[gMASK]:0 <sop>:0 $A:0",
    pair="[gMASK]:0 <sop>:0 $A:0 $B:1")``. Unpatched, this doubles the prefix of a rendered chat.
``"0414"``
    GLM-4-0414 / GLM-4.5: ``ByteLevel(trim_offsets=False)`` only; the chat template writes the prefix.

With the 14 GLM-4 added tokens in id order after the ranks, the ids equal ``ChatGLM4Tokenizer``'s for every text.
``write_fast_folder`` lays out a complete folder (``tokenizer.json`` + ``tokenizer_config.json``) that plain
``AutoTokenizer.from_pretrained`` loads as transformers' built-in fast tokenizer, unfixed (that is what the hub
folders are); ``glm4-tokfix convert`` (``glm4_tokfix.model_folder``) adds the fix on top.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from glm4_tokfix.folder_io import PathLike
from glm4_tokfix.remote_code.glm4_tokens import PREFIX_TOKENS

__all__ = ["STYLES", "build_backend", "convert_folder", "read_added_tokens", "write_fast_folder"]

#: post-processor styles: name -> does the post-processor add ``[gMASK]<sop>``
STYLES = {"chat-hf": True, "0414": False}

#: where transformers 5's ``save_pretrained`` writes the chat template (instead of tokenizer_config.json)
CHAT_TEMPLATE_FILE = "chat_template.jinja"


def read_added_tokens(config: Dict[str, Any], n_ranks: int, where: str = "tokenizer_config.json") -> List[str]:
    """The added tokens of a GLM-4 ``tokenizer_config.json``, in id order; they must follow the ranks without gaps."""
    decoder = config.get("added_tokens_decoder")
    if not isinstance(decoder, dict) or not decoder:
        raise ValueError(f"{where} has no added_tokens_decoder (GLM-4 registers its 14 added tokens there)")
    try:
        entries = sorted((int(index), value) for index, value in decoder.items())
    except ValueError:
        raise ValueError(f"{where}: added_tokens_decoder keys must be token ids") from None
    tokens = []
    for offset, (index, value) in enumerate(entries):
        if index != n_ranks + offset:
            raise ValueError(
                f"{where}: added token ids must follow the {n_ranks} BPE ranks without gaps; "
                f"expected id {n_ranks + offset}, got {index}"
            )
        content = value.get("content") if isinstance(value, dict) else value
        if not isinstance(content, str):
            raise ValueError(f"{where}: added token {index} has no content")
        tokens.append(content)
    return tokens


def _read_folder(folder: PathLike) -> Tuple[Path, Dict[str, Any]]:
    path = Path(folder)
    vocab, config_path = path / "tokenizer.model", path / "tokenizer_config.json"
    for needed in (vocab, config_path):
        if not needed.is_file():
            raise FileNotFoundError(f"{path} is not a glm-4-9b-chat tokenizer folder: {needed.name} is missing")
    with open(config_path, encoding="utf-8") as handle:
        try:
            config = json.load(handle)
        except ValueError as exc:
            raise ValueError(f"{config_path} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_path} is not a JSON object")
    return path, config


def build_backend(folder: PathLike, style: str = "chat-hf") -> Any:
    """A ``tokenizers.Tokenizer`` for the glm-4-9b-chat folder ``folder`` (``tokenizer.model`` + config).

    The BPE model comes from transformers' ``TikTokenConverter`` (vocabulary and merges), read through
    glm4-tokfix's own checked ``tokenizer.model`` reader (no tiktoken cache); the added tokens follow in id order
    (special, not normalized); the post-processor is ``style``'s (see ``STYLES``).
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {sorted(STYLES)}, got {style!r}")
    from tokenizers import AddedToken, processors
    from transformers.convert_slow_tokenizer import TikTokenConverter

    from glm4_tokfix.remote_code.glm4_tokens import GLM4_PAT_STR
    from glm4_tokfix.remote_code.glm4_vocab import load_tiktoken_ranks

    class _Converter(TikTokenConverter):
        load_tiktoken_bpe = staticmethod(load_tiktoken_ranks)  # type: ignore[assignment]  # takes a path, as the base's loader does

    path, config = _read_folder(folder)
    # transformers 4.x adds `additional_special_tokens` as plain tokens; 5.x ignores the name: [] adds none on both
    backend = _Converter(
        vocab_file=str(path / "tokenizer.model"), pattern=GLM4_PAT_STR, additional_special_tokens=[]
    ).converted()
    n_ranks = backend.get_vocab_size(with_added_tokens=True)
    added = read_added_tokens(config, n_ranks, str(path / "tokenizer_config.json"))
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in added])
    steps: List[Any] = [processors.ByteLevel(trim_offsets=False)]
    if STYLES[style]:
        ids = {token: n_ranks + i for i, token in enumerate(added)}
        missing = [t for t in PREFIX_TOKENS if t not in ids]
        if missing:
            raise ValueError(f"{path}: {', '.join(missing)} not among the added tokens")
        steps.append(
            processors.TemplateProcessing(
                single="[gMASK]:0 <sop>:0 $A:0",
                pair="[gMASK]:0 <sop>:0 $A:0 $B:1",
                special_tokens=[("[gMASK]", ids["[gMASK]"]), ("<sop>", ids["<sop>"])],
            )
        )
    backend.post_processor = processors.Sequence(steps)
    return backend


#: tokenizer_config.json keys copied from the glm-4-9b-chat folder when present
_COPIED_KEYS = (
    "added_tokens_decoder",
    "additional_special_tokens",
    "chat_template",
    "eos_token",
    "pad_token",
    "model_max_length",
    "padding_side",
)


def write_fast_folder(src: PathLike, out: PathLike, style: str = "chat-hf") -> Path:
    """Write a transformers-native GLM-4 tokenizer folder (``tokenizer.json`` + ``tokenizer_config.json``).

    The config is what transformers' built-in ``PreTrainedTokenizerFast`` reads (no ``auto_map``, no remote
    code), with glm-4-9b-chat's added tokens, pad/eos, chat template and padding side. The folder loads on
    transformers 4.x and 5.x alike. Returns the folder's path.
    """
    path, config = _read_folder(src)
    backend = build_backend(path, style)
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    backend.save(str(target / "tokenizer.json"))
    new_config: Dict[str, Any] = {key: config[key] for key in _COPIED_KEYS if key in config}
    new_config.update(
        {
            "clean_up_tokenization_spaces": False,
            "model_input_names": ["input_ids", "attention_mask"],
            "tokenizer_class": "PreTrainedTokenizerFast",
        }
    )
    with open(target / "tokenizer_config.json", "w", encoding="utf-8") as handle:
        json.dump(new_config, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    if (path / CHAT_TEMPLATE_FILE).is_file():  # a folder saved by transformers 5 keeps its template there
        shutil.copyfile(path / CHAT_TEMPLATE_FILE, target / CHAT_TEMPLATE_FILE)
    return target


#: the files of a tokenizer.json folder a conversion copies (when present)
_FAST_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", CHAT_TEMPLATE_FILE)


def _copy_fast_folder(source: Path, staging: Path, style: Optional[str]) -> None:
    """``convert_folder`` of a ``tokenizer.json`` GLM-4 folder (glm-4-9b-chat-hf, a folder transformers saved):
    its tokenizer files as they are (its own post-processor), once checked to be GLM-4's."""
    from transformers import PreTrainedTokenizerFast

    from glm4_tokfix.model_folder import inspect_folder
    from glm4_tokfix.patching import glm4_problem

    if style is not None:
        raise ValueError(f"--style applies to a glm-4-9b-chat folder (tokenizer.model); {source}'s tokenizer.json "
                         "keeps its own post-processor")  # fmt: skip
    inspect_folder(source)  # the required added tokens, no remote code of its own
    problem = glm4_problem(PreTrainedTokenizerFast(tokenizer_file=str(source / "tokenizer.json")))
    if problem is not None:
        raise ValueError(f"{source} is not a GLM-4 tokenizer folder: {problem}")
    staging.mkdir()
    for name in _FAST_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, staging / name)


def convert_folder(src: PathLike, out: PathLike, style: Optional[str] = None) -> Path:
    """``glm4-tokfix convert``: a fixed fast-tokenizer folder at ``out`` from the glm-4-9b-chat folder ``src``.

    ``out`` gets ``tokenizer.json`` (``build_backend``), ``tokenizer_config.json``, a copy of ``tokenizer.model``
    and the fixed modules with ``auto_map`` pointing at them (``glm4-tokfix patch``), so
    ``AutoTokenizer.from_pretrained(out, trust_remote_code=True)`` loads ``ChatGLM4TokenizerFast`` (and
    ``use_fast=False`` the fixed ``ChatGLM4Tokenizer``), without glm4-tokfix installed. A known GLM-4 chat template
    is written as its copy with ``{% generation %}`` markers (same rendering), so assistant-token masks work there
    too. The folder is built
    beside ``out`` and moved into place in one step; ``out`` must not exist or be an empty folder.

    ``src`` may also be a ``tokenizer.json`` GLM-4 folder without ``tokenizer.model`` (glm-4-9b-chat-hf, or any
    folder transformers saved): its tokenizer files are copied as they are, with their own post-processor
    (``style`` is then a ``ValueError``), and the fix is added the same way. ``style`` None means ``"chat-hf"``.
    """
    from glm4_tokfix.model_folder import VOCAB_FILE, patch_folder

    source = Path(src)
    from_json = not (source / VOCAB_FILE).is_file() and (source / "tokenizer.json").is_file()
    if not from_json:
        source, _ = _read_folder(src)
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"{target} already exists and is not an empty folder")
    staging = target.parent / f".{target.name}.glm4-tokfix-{uuid.uuid4().hex[:12]}.tmp"
    try:
        if from_json:
            _copy_fast_folder(source, staging, style)
        else:
            write_fast_folder(source, staging, style or "chat-hf")
            shutil.copyfile(source / VOCAB_FILE, staging / VOCAB_FILE)
        patch_folder(staging)
        backup = staging / "tokenizer_config.json.glm4-tokfix-orig"
        if backup.exists():  # a new folder: nothing to restore (a source patched by us has none)
            os.remove(backup)
        _mark_chat_template(staging / "tokenizer_config.json")
        _mark_template_file(staging / CHAT_TEMPLATE_FILE)
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def _mark_chat_template(config_path: Path) -> None:
    """Give a new folder the marked copy of its GLM-4 chat template (renders byte for byte the same), so
    ``return_assistant_tokens_mask=True`` works there without glm4-tokfix installed; other templates stay."""
    from glm4_tokfix.chat_templates import marked_template

    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    template = config.get("chat_template")
    marked = marked_template(template) if isinstance(template, str) else None
    if marked is None or marked == template:
        return
    config["chat_template"] = marked
    with open(config_path, "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


def _mark_template_file(path: Path) -> None:
    """``_mark_chat_template`` for a ``chat_template.jinja`` (the file's bytes are the template)."""
    from glm4_tokfix.chat_templates import marked_template

    if not path.is_file():
        return
    template = path.read_bytes().decode("utf-8")
    marked = marked_template(template)
    if marked is not None and marked != template:
        path.write_bytes(marked.encode("utf-8"))
