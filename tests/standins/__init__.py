"""Stand-ins for upstream GLM-4 tokenizer revisions, and model folders that load them as remote code.

``make_model_folder(dest, revision, vocab_dir)`` copies ``tokenizer.model`` and
``tokenizer_config.json`` from ``vocab_dir`` (the embedded tiny tokenizer or
the real glm-4-9b-chat one) and writes the module of ``revision`` as
``tokenization_chatglm.py``, so ``AutoTokenizer.from_pretrained(dest,
trust_remote_code=True)`` loads it the way users load glm-4-9b-chat:

* ``"current"``  -- upstream's current behaviour (``upstream_current.py``)
* ``"mid2024"``  -- the mid-2024 revision (``upstream_mid2024.py``)
* ``"glm4v"``    -- GLM-4V-9B's class (``upstream_glm4v.py``): its own ``apply_chat_template`` with images;
  the folder's config gets ``image_size`` (``GLM4V_IMAGE_SIZE``, small for the tests; GLM-4V-9B says 1120)
* ``"fixed"``    -- our bundle (``glm4_tokfix/remote_code``), with a ``tokenization_chatglm.py`` that re-exports
  its ``ChatGLM4Tokenizer`` (a test folder only: glm4-tokfix itself never writes that name)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

HERE = Path(__file__).resolve().parent
REVISIONS = ("current", "mid2024", "glm4v")
#: glm-4-9b-chat's own class: the revisions the installed fix may stand in for
CHAT_REVISIONS = ("current", "mid2024")
GLM4V_IMAGE_SIZE = 28


def module_source(revision: str) -> Path:
    if revision == "fixed":
        import glm4_tokfix.remote_code.tokenization_glm4_tokfix as fixed

        return Path(fixed.__file__)
    if revision not in REVISIONS:
        raise ValueError(f"unknown revision {revision!r}; expected one of {REVISIONS + ('fixed',)}")
    return HERE / f"upstream_{revision}.py"


def make_model_folder(
    dest: Path, revision: str, vocab_dir: Path | str, config: Optional[Dict[str, Any]] = None
) -> Path:
    """Lay out a glm-4-9b-chat-like tokenizer folder at ``dest`` whose remote code is ``revision``.

    ``config`` entries are set in the folder's ``tokenizer_config.json`` (a value None removes the key).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copyfile(Path(vocab_dir) / name, dest / name)
    if revision == "fixed":
        from glm4_tokfix.model_folder import bundle_needs
        from glm4_tokfix.remote_code import SLOW_MODULE, bundle_bytes

        for name, data in bundle_bytes().items():
            (dest / name).write_bytes(data)
        # an entry module too: transformers 4.x copies only the bundle modules it imports itself
        needs = sorted(bundle_needs(SLOW_MODULE))
        shim = [f"from .{SLOW_MODULE} import ChatGLM4Tokenizer  # noqa: F401\n"]
        shim += [f"from .{name} import __name__ as _{name}  # noqa: F401\n" for name in needs]
        (dest / "tokenization_chatglm.py").write_text("".join(shim))
    else:
        shutil.copyfile(module_source(revision), dest / "tokenization_chatglm.py")
    changes = dict(config or {})
    if revision == "glm4v":
        changes.setdefault("image_size", GLM4V_IMAGE_SIZE)
    if changes:
        path = dest / "tokenizer_config.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return dest
