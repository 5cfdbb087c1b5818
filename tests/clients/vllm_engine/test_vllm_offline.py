"""vLLM's offline ``LLM`` on each GLM-4 tokenizer variant: one prefix, text == decode(ids), structured output.

One engine per variant (tests/clients/vllm_engine/probe.py in a subprocess, run once per module and variant); every test reads
its report. The variants (tests/clients/vllm_engine/vllm_support.py): upstream remote code patched, glm-4-9b-chat-hf style
``tokenizer.json`` patched, ``glm4-tokfix convert`` output (all three with ``trust_remote_code=True``), and the
-hf style and remote-code folders as they are, fixed by the plugin without trust.
"""

from __future__ import annotations

import pytest
from vllm_support import FIXED_VARIANTS, VARIANTS, needs_plugin, run_probe

pytestmark = pytest.mark.slow

CASES = ("generate_chat", "generate_plain", "chat", "chat_add_special")


@pytest.fixture(scope="module", params=FIXED_VARIANTS)
def probe(request, variant_folder):
    spec = VARIANTS[request.param]
    needs_plugin(spec)
    report = run_probe(variant_folder(request.param), trust=spec["trust"], plugin=spec["plugin"])
    report["variant"] = request.param
    return report


def prefix_count(report, ids):
    gmask, sop = report["prefix_ids"]
    return ids.count(gmask), ids.count(sop)


@pytest.mark.parametrize("name", CASES)
def test_one_prefix(probe, name):
    ids = probe[name]["prompt_ids"]
    assert ids[:2] == probe["prefix_ids"], (probe["variant"], name, ids[:8])
    assert prefix_count(probe, ids) == (1, 1), (probe["variant"], name, ids[:8])


@pytest.mark.parametrize("name", CASES + ("structured",))
def test_text_is_decode_of_ids(probe, name, reference):
    result = probe[name]
    assert "error" not in result, result.get("error")
    assert result["ids"], "the engine generated nothing"
    expected = reference.decode(result["ids"], skip_special_tokens=True)
    assert result["decoded"] == expected
    assert result["text"] == expected, (probe["variant"], name, result)
    assert "Encountered invalid token id" not in probe["log"]


def test_chat_prompt_equals_rendered(probe):
    """LLM.chat encodes the rendered template exactly as LLM.generate encodes the rendered text."""
    assert probe["chat"]["prompt_ids"] == probe["generate_chat"]["prompt_ids"]
    assert probe["chat_add_special"]["prompt_ids"] == probe["chat"]["prompt_ids"]


def test_tokenizer_is_fixed(probe):
    assert any(
        name.startswith("glm4_tokfix.")
        or ".tokenization_glm4_tokfix_fast." in name
        or ".tokenization_glm4_tokfix." in name
        for name in probe["mro"]
    ), probe["mro"]
    if probe["rust_tokenizer"] != "NoneType":  # a fast tokenizer: vLLM's fast detokenizer takes it directly
        assert probe["rust_tokenizer"] == "Tokenizer"


def test_plugin_logs_once_when_on(probe):
    lines = [line for line in probe["log"].splitlines() if "glm4-tokfix" in line and "plugin active" in line]
    if VARIANTS[probe["variant"]]["plugin"]:
        assert lines, "the plugin did not log that it is active"
        # one line per vLLM process that loaded it (front end, engine core, worker), never more
        assert len(lines) <= 3, lines
    else:
        assert not lines, "VLLM_PLUGINS='' did not leave the plugin out"
