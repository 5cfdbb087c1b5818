"""A user's own sitecustomize (test-owned): records the token ids lm-eval's HF model hands to the model.

Put on PYTHONPATH by tests/clients/test_lm_eval.py; under ``glm4-tokfix run`` it also proves that glm4-tokfix's
sitecustomize chains to the user's. Only active when ``GLM4_TOKFIX_TEST_LM_EVAL_LOG`` names a file; it then
appends one JSON line per loglikelihood request (context and continuation ids, as ``_loglikelihood_tokens`` gets
them) and per generate row (the context ids without padding, the new tokens, the stop strings).
"""

import json
import os

_LOG = os.environ.get("GLM4_TOKFIX_TEST_LM_EVAL_LOG")


def _write(record):
    with open(_LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _install():
    from lm_eval.models import huggingface

    hflm = huggingface.HFLM
    loglikelihood_tokens = hflm._loglikelihood_tokens
    model_generate = hflm._model_generate

    def _loglikelihood_tokens(self, requests, *args, **kwargs):
        for _strings, context, continuation in requests:
            _write({"kind": "loglikelihood", "context": list(context), "continuation": list(continuation)})
        return loglikelihood_tokens(self, requests, *args, **kwargs)

    def _model_generate(self, context, max_length, stop, **kwargs):
        out = model_generate(self, context, max_length, stop, **kwargs)
        mask = kwargs.get("attention_mask")
        for i, row in enumerate(context.tolist()):
            keep = mask[i].tolist() if mask is not None else [1] * len(row)
            _write(
                {
                    "kind": "generate",
                    "context": [t for t, m in zip(row, keep) if m],
                    "new_tokens": out[i, context.shape[1] :].tolist(),
                    "max_length": max_length,
                    "stop": list(stop),
                }
            )
        return out

    hflm._loglikelihood_tokens = _loglikelihood_tokens
    hflm._model_generate = _model_generate


if _LOG:
    _install()
