"""The README's Ray Data recipe (``tokenize_chats`` in ``map_batches``) on a local Ray cluster equals one process.

``ray.init(num_cpus=2)``, two actors each loading the tokenizer once, ``batch_format`` pandas and numpy; the rows
(input_ids, assistant_masks, labels, in dataset order) must equal ``tokenize_chats`` on the whole list in this
process. The ``Encode`` class below is the README's, with the embedded tiny vocabulary in place of the real folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from run_support import child_env

import glm4_tokfix
from glm4_tokfix.sft import tokenize_chats

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'ray[data]'; .ci/run's clients stage)")
pytest.importorskip("ray.data", reason="ray is installed without Ray Data (pip install 'ray[data]')")
pytest.importorskip("pandas")
pytest.importorskip("jinja2")

KEYS = ("input_ids", "assistant_masks", "labels")


def make_chats(n):
    chats = []
    for i in range(n):
        chat = [{"role": "user", "content": f"question {i} 你好 <|assistant|> {'x' * (i % 7)}"}]
        chat.append({"role": "assistant", "content": f"answer {i} 😀" + " more" * (i % 5)})
        if i % 3 == 0:
            chat = [{"role": "system", "content": "be brief"}, *chat]
        chats.append(chat)
    return chats


class Encode:  # the README's recipe: one tokenizer per actor, loaded once
    def __init__(self):
        self.tok = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(glm4_tokfix.TINY_GLM4_DIR)

    def __call__(self, batch):  # batch_format="pandas" or "numpy": messages column in, rows out
        return tokenize_chats(self.tok, list(batch["messages"]), max_length=4096)


@pytest.fixture(scope="module")
def local_ray():
    # a short folder of its own: Ray's unix sockets live under it and their paths are limited to ~107 bytes
    temp = tempfile.mkdtemp(prefix="ray-")
    # the workers import this module (Encode is pickled by reference) and the glm4_tokfix under test
    here = str(Path(__file__).resolve().parent)
    pythonpath = os.pathsep.join([here, child_env()["PYTHONPATH"]])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=temp,
        runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},
    )
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


def as_lists(value):
    return [as_lists(v) for v in value] if hasattr(value, "__len__") and not isinstance(value, str) else int(value)


@pytest.mark.parametrize("batch_format", ["pandas", "numpy"])
def test_readme_ray_recipe_equals_one_process(local_ray, batch_format):
    chats = make_chats(40)
    ds = ray.data.from_items([{"messages": chat} for chat in chats], override_num_blocks=4)
    rows = ds.map_batches(Encode, batch_size=7, batch_format=batch_format, concurrency=2).take_all()
    expected = tokenize_chats(glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(glm4_tokfix.TINY_GLM4_DIR), chats)
    assert len(rows) == len(chats)
    for key in KEYS:
        assert [as_lists(row[key]) for row in rows] == expected[key], key
