"""Batched generation equals one-by-one generation, with a tiny random Glm4ForCausalLM.

The model is built by ``examples/batch_chat.py`` (loaded from its path, so
these tests also prove the example's own functions): seeded, float64, 2
layers, hidden size 64. Token ids are compared exactly; losses (floats) to a
relative 1e-10.

Position ids: transformers-native models get only ``input_ids`` and
``attention_mask`` from the batch. ``generate`` derives the positions from the
mask on both transformers lines, and they equal the tokenizer's
``position_ids`` on every real token (tested below). Passing the tokenizer's
``position_ids`` as well is harmless on 5.x, which extends them by one per new
token, but wrong on 4.x, which never extends them, so every new token would
be fed the last prompt position (also tested, so the documented rule keeps
its reason).
"""

from __future__ import annotations

import importlib.util
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("transformers.models.glm4.modeling_glm4", reason="Glm4ForCausalLM needs a newer transformers")

import transformers  # noqa: E402

from locations import ROOT  # noqa: E402
from strategies import chats  # noqa: E402

TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])
EXAMPLE_PATH = ROOT / "examples" / "batch_chat.py"
MAX_NEW_TOKENS = 8

#: Chats of very different lengths: a one-word turn, a system prompt, several turns with CJK, a long one.
CHATS = [
    [{"role": "user", "content": "?"}],
    [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Capital of France?"}],
    [
        {"role": "user", "content": "你好，你是谁？"},
        {"role": "assistant", "content": "我是一个人工智能助手。"},
        {"role": "user", "content": "Tell me a joke about tokenizers 🤖 and left padding."},
    ],
    [{"role": "user", "content": "Repeat after me: " + "padding goes on the left for generation. " * 8}],
    [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}, {"role": "user", "content": "bye"}],
]


def _load_example():
    spec = importlib.util.spec_from_file_location("glm4_tokfix_example_batch_chat", EXAMPLE_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = _load_example()


@pytest.fixture(scope="module")
def built_models():
    return {}


def _tiny_model(tokenizer, cache):
    """The example's tiny random Glm4ForCausalLM for this vocabulary (seed 0, float64), built once per module."""
    if tokenizer.vocab_file not in cache:
        cache[tokenizer.vocab_file] = example.build_tiny_model(tokenizer, seed=0)
    return cache[tokenizer.vocab_file]


@pytest.fixture(scope="module")
def model(tok, built_models):
    return _tiny_model(tok, built_models)


@pytest.fixture(scope="module")
def tiny_model(tiny_tok, built_models):
    return _tiny_model(tiny_tok, built_models)


@pytest.fixture
def standin(vocab_dir, tmp_path_factory):
    """Our stand-in of upstream's current tokenizer, loaded as remote code from a temporary model folder."""
    from transformers import AutoTokenizer

    from standins import make_model_folder

    folder = make_model_folder(tmp_path_factory.mktemp("current"), "current", vocab_dir)
    return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True)


def greedy(model, tok, **inputs):
    with torch.no_grad():
        return model.generate(
            **inputs,
            do_sample=False,
            max_new_tokens=MAX_NEW_TOKENS,
            pad_token_id=tok.pad_token_id,
            eos_token_id=example.stop_token_ids(tok),
        )


def reference_continuations(model, tok, conversations):
    """Each chat alone, from apply_chat_template(tokenize=True), written here independently of the example."""
    stops = set(example.stop_token_ids(tok))
    results = []
    for chat in conversations:
        ids = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        ids = torch.tensor([ids])
        output = greedy(model, tok, input_ids=ids, attention_mask=torch.ones_like(ids))
        new = output[0, ids.shape[1] :].tolist()
        cut = next((i + 1 for i, t in enumerate(new) if t in stops), len(new))
        results.append(new[:cut])
    return results


def capture_positions(model):
    """Record the position_ids the decoder stack receives at each forward call."""
    seen = []

    def hook(module, args, kwargs):
        seen.append(kwargs.get("position_ids"))

    return seen, model.model.register_forward_pre_hook(hook, with_kwargs=True)


# ------------------------------------------------------------ batched == alone
def test_batched_generation_equals_one_by_one(model, tok):
    batch = example.encode_batch(tok, example.render(tok, CHATS))
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    assert len(set(lengths)) == len(CHATS), "the chats must have different lengths so every row but one is padded"
    assert max(lengths) >= 4 * min(lengths)

    batched = example.generate_batch(model, tok, CHATS, MAX_NEW_TOKENS)
    reference = reference_continuations(model, tok, CHATS)
    assert batched == reference

    # Each rendered text alone through tok(text) is exactly the apply_chat_template(tokenize=True) input, so
    # generating from it is the reference computation itself.
    for chat, text in zip(CHATS, example.render(tok, CHATS)):
        single = tok(text)
        templated = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)
        assert single["input_ids"] == templated["input_ids"]
        assert single["attention_mask"] == templated["attention_mask"] == [1] * len(single["input_ids"])
    assert all(len(c) >= 1 for c in batched)


@settings(max_examples=min(10, max(3, settings.default.max_examples // 10)))  # each example generates 4 times
@given(conversations=st.lists(chats(max_messages=2), min_size=2, max_size=3))
def test_batched_generation_equals_one_by_one_on_random_chats(tiny_model, tiny_tok, conversations):
    """Random chats (CJK, emoji, whitespace runs, special-token literals in the text) on the tiny vocabulary."""
    batched = example.generate_batch(tiny_model, tiny_tok, conversations, MAX_NEW_TOKENS)
    assert batched == reference_continuations(tiny_model, tiny_tok, conversations)


def test_upstream_standin_batches_carry_the_prefix_twice(standin, tok, model):
    """Upstream (stand-in "current") doubles [gMASK]<sop> on rendered chats, mask 1 on both: other prompts."""
    prefix = tok.get_prefix_tokens()
    texts = example.render(tok, CHATS)
    assert example.render(standin, CHATS) == texts  # same chat template, same rendered text
    fixed = example.encode_batch(tok, texts)
    broken = standin(texts, padding=True, return_tensors="pt")
    for i, chat in enumerate(CHATS):
        templated = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)
        standin_templated = standin.apply_chat_template(
            chat, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        assert standin_templated["input_ids"] == templated["input_ids"]  # tokenize=True adds no special tokens
        assert templated["input_ids"][:2] == prefix and templated["input_ids"][2:4] != prefix

        mask = fixed["attention_mask"][i].bool()
        assert fixed["input_ids"][i][mask].tolist() == templated["input_ids"]

        # The stand-in's attended tokens (mask 1) hold the prefix twice.
        standin_real = broken["input_ids"][i][broken["attention_mask"][i].bool()].tolist()
        assert standin_real == prefix + templated["input_ids"]

    # The model conditions on the extra tokens: its next-token scores differ from the correct prompt's.
    with torch.no_grad():
        good = model(input_ids=torch.tensor([templated["input_ids"]])).logits[0, -1]
        bad = model(input_ids=torch.tensor([standin_real])).logits[0, -1]
    assert not torch.allclose(good, bad, rtol=1e-6, atol=1e-6)
    # ... and the stand-in's batch does not continue the chats the way the fixed batch (== one by one) does.
    assert example.generate_batch(model, standin, CHATS, MAX_NEW_TOKENS) != example.generate_batch(
        model, tok, CHATS, MAX_NEW_TOKENS
    )


# ---------------------------------------------------------------- positions
def test_generate_derives_positions_equal_to_the_tokenizers(tiny_model, tiny_tok):
    batch = example.encode_batch(tiny_tok, example.render(tiny_tok, CHATS))
    inputs = example.generation_inputs(tiny_model, batch)
    assert sorted(inputs) == ["attention_mask", "input_ids"]
    seen, handle = capture_positions(tiny_model)
    try:
        greedy(tiny_model, tiny_tok, **inputs)
    finally:
        handle.remove()
    assert len(seen) >= 2 and all(p is not None for p in seen)
    mask = batch["attention_mask"].bool()
    assert torch.equal(seen[0][mask], batch["position_ids"][mask])  # prompt: 0..n-1 over the real tokens
    lengths = batch["attention_mask"].sum(dim=1)
    for step, positions in enumerate(seen[1:], start=1):
        assert positions[:, -1].tolist() == (lengths + step - 1).tolist()  # new tokens continue the count


def test_passing_the_tokenizers_position_ids_to_generate(tiny_model, tiny_tok):
    """Documented rule: don't pass position_ids to a transformers-native model's generate (4.x freezes them)."""
    batch = example.encode_batch(tiny_tok, example.render(tiny_tok, CHATS))
    lengths = batch["attention_mask"].sum(dim=1)
    plain = greedy(tiny_model, tiny_tok, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    seen, handle = capture_positions(tiny_model)
    try:
        with_positions = greedy(
            tiny_model, tiny_tok, **{k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
        )
    finally:
        handle.remove()
    assert torch.equal(seen[0], batch["position_ids"])
    later = [positions[:, -1].tolist() for positions in seen[1:]]
    assert later
    if TRANSFORMERS_MAJOR >= 5:
        assert later == [(lengths + step).tolist() for step in range(len(later))]
        assert torch.equal(with_positions, plain)
    else:
        assert all(step == (lengths - 1).tolist() for step in later)  # every new token at the last prompt position


# ------------------------------------------------------------- training loss
def _row_losses(logits, labels):
    shifted = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="none"
    )
    counts = (labels[:, 1:] != -100).sum(dim=1)
    return shifted.sum(dim=1) / counts, counts


@pytest.mark.parametrize("pass_positions", [False, True], ids=["no-position_ids", "position_ids"])
def test_right_padded_batch_losses_equal_single_losses(tiny_model, tiny_tok, pass_positions):
    texts = [tiny_tok.apply_chat_template(chat, tokenize=False) for chat in CHATS]  # whole conversations
    batch = tiny_tok(texts, padding=True, padding_side="right", return_tensors="pt")
    mask = batch["attention_mask"]
    assert (mask[:, 0] == 1).all() and (mask[:, -1] == 0).any()  # right padded, some rows padded
    labels = batch["input_ids"].masked_fill(mask == 0, -100)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": mask}
    if pass_positions:
        inputs["position_ids"] = batch["position_ids"]
    with torch.no_grad():
        out = tiny_model(**inputs, labels=labels)
        singles, single_model_losses = [], []
        for text in texts:
            ids = tiny_tok(text, return_tensors="pt")["input_ids"]
            alone = tiny_model(input_ids=ids, labels=ids)
            singles.append(_row_losses(alone.logits, ids)[0][0])
            single_model_losses.append(alone.loss)
    singles = torch.stack(singles)
    per_row, counts = _row_losses(out.logits, labels)
    torch.testing.assert_close(per_row, singles, rtol=1e-10, atol=0)  # float64 logits, float64 losses
    # transformers computes .loss in float32: it agrees with ours at that precision, row by row and for the batch
    # (the token-weighted mean of the rows' losses).
    torch.testing.assert_close(torch.stack(single_model_losses).double(), singles, rtol=1e-5, atol=0)
    torch.testing.assert_close(out.loss.double(), (per_row * counts).sum() / counts.sum(), rtol=1e-5, atol=0)

    # Control: leaving the pads in the labels (pad id == eos id, an easy slip) changes the padded rows' losses.
    unmasked, _ = _row_losses(out.logits, batch["input_ids"])
    padded_rows = (mask == 0).any(dim=1)
    assert not torch.allclose(unmasked[padded_rows], singles[padded_rows], rtol=1e-6, atol=0)


# ------------------------------------------------------------------ example
def test_example_runs_and_checks(capsys, tiny_tok):
    assert example.main(["--max-new-tokens", "6"]) == 0
    out = capsys.readouterr().out
    assert "check passed" in out
    assert f"vocab {len(tiny_tok)})" in out and f"{len(tiny_tok)} tokens" in out  # the embedded tokenizer by default
    prompt_lines = [line for line in out.splitlines() if line.strip().startswith("prompt ")]
    assert len(prompt_lines) == len(example.DEFAULT_CHATS)
    assert all("[gMASK]<sop> x1" in line for line in prompt_lines)


def test_example_check_catches_position_ids_on_4x(capsys):
    """``--position-ids pass`` on a transformers-native model: fine on 5.x, a failed check on 4.x (exit 1)."""
    status = example.main(["--position-ids", "pass", "--max-new-tokens", "6"])
    out = capsys.readouterr().out
    assert "generate() gets: input_ids, attention_mask, position_ids" in out
    if TRANSFORMERS_MAJOR >= 5:
        assert status == 0 and "check passed" in out
    else:
        assert status == 1 and "check FAILED" in out and "MISMATCH" in out


def test_example_loads_a_model_folder(tmp_path, tiny_tok, tiny_model, capsys):
    """``--model DIR``: tokenizer and model from one folder (here the tiny model and tokenizer, saved)."""
    tiny_model.save_pretrained(tmp_path)
    tiny_tok.save_pretrained(tmp_path)
    assert example.main(["--model", str(tmp_path), "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert f"model: Glm4ForCausalLM from {tmp_path}" in out
    assert "generate() gets: input_ids, attention_mask\n" in out and "check passed" in out


def test_example_rejects_a_folder_without_a_vocabulary(tmp_path, capsys):
    assert example.main(["--tokenizer", str(tmp_path)]) == 2
    assert "no tokenizer.model" in capsys.readouterr().err
