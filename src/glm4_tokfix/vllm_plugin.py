"""The vLLM plugin: every vLLM process loads GLM-4 tokenizers with the glm4-tokfix fix.

Registered in glm4-tokfix's package metadata as vLLM's documented general-plugin entry point::

    [project.entry-points."vllm.general_plugins"]
    glm4_tokfix = "glm4_tokfix.vllm_plugin:register"

vLLM calls ``register()`` in each of its processes (the API server / ``LLM`` process, the engine core, the
workers) before it loads a tokenizer. ``register()`` is ``glm4_tokfix.enable()``: vLLM loads tokenizers with
``transformers.AutoTokenizer.from_pretrained``, and after ``enable()`` that returns

* for a glm-4-9b-chat remote-code folder without ``--trust-remote-code``: ``glm4_tokfix.ChatGLM4Tokenizer``
  (the installed code; nothing from the folder runs);
* for a glm-4-9b-chat remote-code folder with ``--trust-remote-code``: the folder's own class, patched;
* for a ``tokenizer.json`` GLM-4 folder (glm-4-9b-chat-hf style, GLM-4-0414, GLM-4.5, saved by transformers 4 or
  5), with or without trust: the fast tokenizer, patched (still a ``TokenizersBackend`` /
  ``PreTrainedTokenizerFast``, so vLLM keeps its fast detokenizer and structured-output vocabularies);
* every other model's tokenizer untouched.

It logs one line saying it is active. Leave it out with vLLM's own switch: ``VLLM_PLUGINS`` lists the plugins to
load (e.g. ``VLLM_PLUGINS=""`` loads none; any list without ``glm4_tokfix`` leaves this one out).

Importing this module imports nothing; ``register()`` imports ``glm4_tokfix.patching`` and transformers'
``AutoTokenizer`` (which vLLM has imported already).
"""

from __future__ import annotations

import logging

__all__ = ["PLUGIN_NAME", "register"]

#: the entry point's name: what ``VLLM_PLUGINS`` must list for this plugin to load when it is set
PLUGIN_NAME = "glm4_tokfix"

# a child of vLLM's "vllm" logger, so the line comes out through vLLM's handler and format
_LOGGER_NAME = "vllm.plugins.glm4_tokfix"


def register() -> None:
    """vLLM's entry point: ``glm4_tokfix.enable()`` in this process, and one log line that it is active.

    Safe to call more than once (vLLM may load plugins again in the same process): enabling twice changes
    nothing, and the line is logged once per process.
    """
    from glm4_tokfix import __version__
    from glm4_tokfix.patching import enable, is_enabled

    was = is_enabled()
    enable()
    if not was:
        logging.getLogger(_LOGGER_NAME).info(
            "glm4-tokfix %s plugin active: GLM-4 tokenizers load with the fix (exclude it with VLLM_PLUGINS)",
            __version__,
        )
