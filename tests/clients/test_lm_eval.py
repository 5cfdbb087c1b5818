"""lm-evaluation-harness through its own CLI (``python -m lm_eval run --model hf``) on a tiny random Glm4ForCausalLM.

Two local tasks over JSON files (a ``multiple_choice`` loglikelihood task and a ``generate_until`` task, no
downloads), on a glm-4-9b-chat-hf style tokenizer.json folder (no remote code: users pass no flag) and an upstream
remote-code folder (``trust_remote_code=True``), batch sizes 1 and 4, with and without ``--apply_chat_template``.
A test-owned sitecustomize (tests/clients/lm_eval_recorder, a user's own, so it also proves glm4-tokfix's chains to
it) records the ids lm-eval hands the model. Under ``glm4-tokfix run`` every context and generate row carries
``[gMASK]<sop>`` exactly once and batch sizes 1 and 4 give the same ids; without it a chat task on the -hf folder
gets the prefix twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from run_support import KINDS, child_env, count_prefix, make_folder, run_command

pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install 'lm-eval[hf]'; .ci/run's clients stage)")
pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
if not hasattr(transformers, "Glm4ForCausalLM"):
    pytest.skip("this transformers has no Glm4ForCausalLM (needs 4.51 or newer)", allow_module_level=True)

RECORDER = Path(__file__).resolve().parent / "lm_eval_recorder"
MAX_GEN_TOKS = 6
QUESTIONS = [
    "What is 2 + 2?",
    "你好，今天怎么样？",
    "Name a colour 😀",
    "Is [gMASK] a token?",
    "Say <|assistant|> literally.",
    "Why?",
]

MC_YAML = """\
task: glm4tok_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
"""

GEN_YAML = """\
task: glm4tok_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{target}}}}"
generation_kwargs:
  until: ["Question:"]
  max_gen_toks: {max_gen_toks}
  do_sample: false
metric_list:
  - metric: exact_match
"""


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("lm-eval-tasks")
    mc = [{"question": q, "choices": [" yes", " no", " 你好"], "answer": i % 3} for i, q in enumerate(QUESTIONS)]
    gen = [{"question": q, "target": "yes"} for q in QUESTIONS]
    (base / "mc.json").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in mc), encoding="utf-8")
    (base / "gen.json").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in gen), encoding="utf-8")
    (base / "glm4tok_mc.yaml").write_text(MC_YAML.format(data=base / "mc.json"), encoding="utf-8")
    (base / "glm4tok_gen.yaml").write_text(
        GEN_YAML.format(data=base / "gen.json", max_gen_toks=MAX_GEN_TOKS), encoding="utf-8"
    )
    return base


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory):
    """kind -> a tokenizer folder of that kind with a tiny random Glm4ForCausalLM saved next to it."""
    import torch
    from transformers import AutoTokenizer, Glm4Config, Glm4ForCausalLM

    import glm4_tokfix

    base = tmp_path_factory.mktemp("lm-eval-models")
    size = len(glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(glm4_tokfix.TINY_GLM4_DIR))
    folders = {}
    for kind in KINDS:
        folder = make_folder(base, kind)
        tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=kind == "remote")
        eos = tok.convert_tokens_to_ids(["<|endoftext|>", "<|user|>", "<|observation|>"])
        config = Glm4Config(
            vocab_size=size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            max_position_embeddings=512,
            pad_token_id=eos[0],
            eos_token_id=eos,
        )
        torch.manual_seed(0)
        Glm4ForCausalLM(config).save_pretrained(str(folder))
        folders[kind] = (folder, tok.convert_tokens_to_ids(["[gMASK]", "<sop>"]))
    return folders


def lm_eval(folder, kind, tasks, tmp_path, *, batch_size, chat, under_run) -> list[dict]:
    """Run lm-eval's CLI on ``folder``; the records of the ids it handed the model."""
    log = tmp_path / f"ids-{kind}-{batch_size}-{chat}-{under_run}.jsonl"
    model_args = f"pretrained={folder},dtype=float32" + (",trust_remote_code=True" if kind == "remote" else "")
    command = [
        sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args", model_args,
        "--tasks", "glm4tok_mc,glm4tok_gen", "--include_path", str(tasks), "--batch_size", str(batch_size),
        "--device", "cpu", "--output_path", str(tmp_path / "out"),
    ]  # fmt: skip
    if chat:
        command.append("--apply_chat_template")
    env = child_env(
        GLM4_TOKFIX_TEST_LM_EVAL_LOG=str(log),
        HF_DATASETS_CACHE=str(tmp_path / "datasets-cache"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    env["PYTHONPATH"] = f"{env['PYTHONPATH']}:{RECORDER}"
    proc = subprocess.run(
        run_command(*command) if under_run else command, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert ("active (glm4-tokfix run" in proc.stderr) == under_run
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert Counter(r["kind"] for r in records) == {"loglikelihood": 3 * len(QUESTIONS), "generate": len(QUESTIONS)}
    return records


def canonical(records):
    """The ids, independent of the order lm-eval batched them in."""
    return sorted(json.dumps({k: v for k, v in r.items() if k != "max_length"}) for r in records)


@pytest.mark.parametrize("chat", [False, True], ids=["plain", "chat"])
@pytest.mark.parametrize("kind", KINDS)
def test_lm_eval_under_run_one_prefix_and_batch_sizes_agree(model_folders, tasks, tmp_path, kind, chat):
    folder, prefix = model_folders[kind]
    by_batch = {}
    for batch_size in (1, 4):
        records = lm_eval(folder, kind, tasks, tmp_path, batch_size=batch_size, chat=chat, under_run=True)
        for r in records:
            assert r["context"][:2] == prefix, r
            assert count_prefix(r["context"], prefix) == 1, r
            if r["kind"] == "loglikelihood":
                assert r["continuation"] and count_prefix(r["continuation"], prefix) == 0, r
            else:
                assert "" not in r["stop"], r  # lm-eval adds decode(eot) to its stop strings
                assert len(r["new_tokens"]) == MAX_GEN_TOKS, r  # generations run their full length
        by_batch[batch_size] = records
    assert canonical(by_batch[1]) == canonical(by_batch[4])


def test_lm_eval_without_run_doubles_the_prefix_on_an_hf_folder(model_folders, tasks, tmp_path):
    folder, prefix = model_folders["hf"]
    records = lm_eval(folder, "hf", tasks, tmp_path, batch_size=1, chat=True, under_run=False)
    counts = Counter(count_prefix(r["context"], prefix) for r in records)
    assert counts == {2: len(records)}  # the bug `glm4-tokfix run` fixes, in every row
