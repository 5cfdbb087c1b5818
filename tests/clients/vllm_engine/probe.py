"""Run vLLM's offline ``LLM`` on a GLM-4 model folder and print what it saw, as JSON.

    python tests/clients/vllm_engine/probe.py MODEL_DIR [--trust] [--out report.json]

Used by tests/clients/vllm_engine/test_vllm.py in a subprocess (one engine per folder); run it by hand with
``VLLM_PLUGINS=""`` to see a folder without the glm4-tokfix plugin. Each case records the prompt's token ids,
the generated ids and text, and ``decode`` of those ids with the engine's own tokenizer: ``LLM.generate`` on a
rendered chat prompt and on plain text, ``LLM.chat``, the same with ``add_special_tokens`` flipped, and a JSON-schema
structured-output request.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict

MESSAGES = [{"role": "user", "content": "Hello! 你好, what is 2+2?"}]
PLAIN = "The capital of France is"
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def case(tokenizer: Any, output: Any) -> Dict[str, Any]:
    completion = output.outputs[0]
    ids = list(completion.token_ids)
    return {
        "prompt_ids": list(output.prompt_token_ids),
        "ids": ids,
        "text": completion.text,
        "decoded": tokenizer.decode(ids, skip_special_tokens=True),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--trust", action="store_true", help="trust_remote_code=True")
    parser.add_argument("--out", help="write the JSON report here (default: stdout)")
    args = parser.parse_args()

    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    llm = LLM(
        model=args.model_dir,
        trust_remote_code=args.trust,
        enforce_eager=True,
        max_model_len=512,
        dtype="bfloat16",
        seed=0,
        max_num_seqs=4,
    )
    tokenizer = llm.get_tokenizer()
    greedy = SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True)
    rendered = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    report: Dict[str, Any] = {
        "tokenizer_class": f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}",
        "mro": [f"{k.__module__}.{k.__qualname__}" for k in type(tokenizer).__mro__],
        "rust_tokenizer": type(getattr(tokenizer, "_tokenizer", None)).__name__,
        "prefix_ids": tokenizer.convert_tokens_to_ids(["[gMASK]", "<sop>"]),
        "rendered": rendered,
    }
    outputs = llm.generate([rendered, PLAIN], greedy)
    report["generate_chat"] = case(tokenizer, outputs[0])
    report["generate_plain"] = case(tokenizer, outputs[1])
    report["chat"] = case(tokenizer, llm.chat(MESSAGES, greedy)[0])
    report["chat_add_special"] = case(
        tokenizer, llm.chat(MESSAGES, greedy, tokenization_kwargs={"add_special_tokens": True})[0]
    )
    structured = SamplingParams(max_tokens=8, temperature=0.0, structured_outputs=StructuredOutputsParams(json=SCHEMA))
    try:
        report["structured"] = case(tokenizer, llm.generate([PLAIN], structured)[0])
    except Exception as exc:
        report["structured"] = {"error": f"{type(exc).__name__}: {exc}"}
    text = json.dumps(report, ensure_ascii=False, indent=1)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
