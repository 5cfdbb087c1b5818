"""``glm4-tokfix patch`` / ``unpatch`` on model folders, run as a user runs them (subprocesses).

patch makes plain AutoTokenizer load the fixed class from the folder (checked in
a process that cannot import glm4_tokfix); unpatch restores every byte (and
mode, and symlink); patching twice changes nothing; an old module is refreshed;
bad folders, read-only folders and failing writes leave the folder untouched.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import glm4_tokfix
from glm4_tokfix import model_folder as mf
from patch_helpers import (
    check_clean_report,
    load,
    load_in_clean_process,
    run_cli,
    snapshot,
    standin_folder,
    subprocess_env,
)

TINY = Path(glm4_tokfix.TINY_GLM4_DIR)


@pytest.fixture(params=["current", "mid2024"])
def revision(request):
    return request.param


@pytest.fixture
def folder(tmp_path, revision):
    return standin_folder(tmp_path, revision, TINY)


def assert_one_line_error(result, command):
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"glm4-tokfix {command}: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def no_temp_files(path: Path) -> bool:
    return not [p for p in Path(path).iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


# ---------------------------------------------------------------- the round trip
def test_patch_then_unpatch_restores_every_byte(tmp_path, revision, vocab_dir, tok):
    folder = standin_folder(tmp_path, revision, vocab_dir)
    os.chmod(folder / "tokenizer_config.json", 0o640)  # an unusual mode must survive too
    original_config = (folder / "tokenizer_config.json").read_bytes()
    before = snapshot(folder)

    result = run_cli("patch", folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"patched {folder}")
    assert (folder / mf.MODULE_FILE).read_bytes() == mf.fixed_module_bytes()
    assert (folder / mf.BACKUP_FILE).read_bytes() == original_config
    assert snapshot(folder)["tokenization_chatglm.py"] == before["tokenization_chatglm.py"]  # upstream's stays
    assert snapshot(folder)["tokenizer_config.json"][2] == 0o640
    new = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    old = json.loads(original_config)
    assert new["auto_map"]["AutoTokenizer"] == ["tokenization_glm4_tokfix.ChatGLM4Tokenizer", None]
    assert {k: v for k, v in new.items() if k != "auto_map"} == {k: v for k, v in old.items() if k != "auto_map"}
    assert list(new) == list(old)  # key order kept
    assert no_temp_files(folder)

    check_clean_report(load_in_clean_process(folder, tmp_path), tok)

    result = run_cli("unpatch", folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"unpatched {folder}")
    assert snapshot(folder) == before
    assert not glm4_tokfix.is_patched(load(folder))


def test_patching_twice_changes_nothing(folder):
    before = snapshot(folder)
    assert run_cli("patch", folder).returncode == 0
    once = snapshot(folder)
    again = run_cli("patch", folder)
    assert again.returncode == 0 and "nothing changed" in again.stdout
    assert snapshot(folder) == once
    assert run_cli("unpatch", folder).returncode == 0
    assert snapshot(folder) == before
    again = run_cli("unpatch", folder)
    assert again.returncode == 0 and "not patched" in again.stdout
    assert snapshot(folder) == before


def test_patch_refreshes_an_older_module(folder):
    """After upgrading glm4-tokfix, running patch again brings the folder's module up to date."""
    before = snapshot(folder)
    assert run_cli("patch", folder).returncode == 0
    patched = snapshot(folder)
    old = mf.fixed_module_bytes().replace(b"class GLM4FixMixin", b"# an older release\nclass GLM4FixMixin", 1)
    (folder / mf.MODULE_FILE).write_bytes(old)
    result = run_cli("patch", folder)
    assert result.returncode == 0 and "refreshed" in result.stdout
    assert (folder / mf.MODULE_FILE).read_bytes() == mf.fixed_module_bytes()
    assert snapshot(folder) == patched
    assert run_cli("unpatch", folder).returncode == 0
    assert snapshot(folder) == before


def test_installed_console_script(folder):
    script = Path(sys.executable).parent / "glm4-tokfix"
    if not script.is_file():
        pytest.skip(f"no glm4-tokfix script next to {sys.executable} (package not installed in this environment)")
    before = snapshot(folder)
    for command in ("patch", "unpatch"):
        result = subprocess.run([str(script), command, str(folder)], capture_output=True, text=True,
                                env=subprocess_env(), timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert snapshot(folder) == before


def test_help_does_not_import_transformers():
    code = (
        "import sys\nfrom glm4_tokfix import cli\ntry:\n    cli.main(['patch', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('transformers', 'tiktoken', 'torch') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "MODEL_DIR" in result.stdout and result.stdout.strip().splitlines()[-1] == "[]"


def test_usage_errors_exit_2():
    result = run_cli("patch")
    assert result.returncode == 2 and "MODEL_DIR" in result.stderr


# ----------------------------------------------------------------- bad folders
def _bert(folder: Path) -> None:
    folder.mkdir()
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer"}', encoding="utf-8")


def _glm4_with(folder: Path, edit) -> None:
    standin = standin_folder(folder.parent, "current", TINY)
    standin.rename(folder)
    edit(folder)


def _config_edit(change):
    def edit(folder):
        path = folder / "tokenizer_config.json"
        config = json.loads(path.read_text(encoding="utf-8"))
        change(config)
        path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")

    return edit


BAD_FOLDERS = {
    "missing": (lambda f: None, "no such folder"),
    "a file": (lambda f: f.write_text("x"), "not a folder"),
    "empty": (lambda f: f.mkdir(), "no tokenizer_config.json"),
    "bert": (_bert, "does not register [gMASK], <sop>, <|endoftext|>"),
    "config not json": (
        lambda f: _glm4_with(f, lambda d: (d / "tokenizer_config.json").write_text("{not json", encoding="utf-8")),
        "not valid JSON",
    ),
    "no auto_map": (lambda f: _glm4_with(f, _config_edit(lambda c: c.pop("auto_map"))), "no auto_map.AutoTokenizer"),
    "no vocabulary": (lambda f: _glm4_with(f, lambda d: (d / "tokenizer.model").unlink()), "no tokenizer.model"),
    "foreign module": (
        lambda f: _glm4_with(f, lambda d: (d / mf.MODULE_FILE).write_text("print('mine')\n", encoding="utf-8")),
        "was not written by glm4-tokfix",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FOLDERS))
def test_bad_folders_get_one_line_and_no_change(tmp_path, case):
    make, message = BAD_FOLDERS[case]
    target = tmp_path / "model"
    make(target)
    before = snapshot(tmp_path)
    commands = ("patch", "unpatch") if case != "foreign module" else ("patch",)
    for command in commands:
        line = assert_one_line_error(run_cli(command, target), command)
        assert message in line and str(target) in line
        assert snapshot(tmp_path) == before


# Runs in a private mount namespace (as root): make folder $1 a read-only bind mount of itself, then run the rest.
_READ_ONLY_MOUNT = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && shift && exec "$@"'


def _non_writer(tmp_path: Path, request):
    """(base folder, command prefix, env) to run the CLI as a user who may read a folder in base but not write it.

    Not root: the test makes the folder mode 0555. Root may write anywhere, so it gets a read-only bind
    mount of the folder in a private mount namespace (``unshare``), which needs nothing from where the
    checkout or the interpreter lives. Without that, ``setpriv`` runs the CLI as uid 65534, on a folder in a
    world-readable temp folder holding an importable copy of the package, after a probe that this user can
    run the interpreter and import transformers; otherwise the test skips with the reason.
    """
    env = subprocess_env()
    if os.geteuid() != 0:
        return tmp_path, [], env
    if shutil.which("unshare"):
        probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return tmp_path, ["unshare", "--mount", "--propagation", "private", "sh", "-c", _READ_ONLY_MOUNT, "sh"], env
    if not shutil.which("setpriv"):
        pytest.skip("running as root with neither a usable `unshare --mount` nor setpriv: no user who may not write")
    shared = Path(tempfile.mkdtemp(prefix="glm4-tokfix-ro-"))
    request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
    shutil.copytree(Path(glm4_tokfix.__file__).parent, shared / "glm4_tokfix")
    for path in [shared, *shared.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(shared), env.get("PYTHONPATH")) if p)
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import glm4_tokfix.cli, transformers"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"uid 65534 cannot run {sys.executable} with the package and transformers: {reason}")
    return shared, prefix, env


@pytest.mark.parametrize("command", ["patch", "unpatch"])
def test_read_only_folder(command, revision, tmp_path, request):
    """Run as a user who may read but not write the folder (see _non_writer for how, as root)."""
    base, prefix, env = _non_writer(tmp_path, request)
    folder = standin_folder(base, revision, TINY)
    if command == "unpatch":
        assert run_cli("patch", folder).returncode == 0
    before = snapshot(folder)
    if prefix[:1] == ["unshare"]:
        prefix = [*prefix, str(folder)]  # the folder to mount read-only
    elif not prefix:
        os.chmod(folder, 0o555)
    try:
        result = run_cli(command, folder, prefix=prefix, env=env)
    finally:
        os.chmod(folder, 0o755)
    line = assert_one_line_error(result, command)
    assert "not writable" in line and str(folder) in line
    assert snapshot(folder) == before


# ------------------------------------------------------ failing writes (in-process)
def fail_once(monkeypatch, name: str, target: str) -> dict:
    """Make the first ``os.<name>`` call on a path named ``target`` raise OSError(EIO); later calls work (so the undo
    can run). ``os.write`` takes a descriptor, not a path: for it ``target`` is the call number ("1", "2", ...)."""
    real = getattr(os, name)
    calls = {"count": 0, "failed": False}

    def hits(args) -> bool:
        if name == "write":
            return str(calls["count"]) == target
        path = args[1] if name == "replace" else args[0]
        return Path(path).name == target

    def flaky(*args, **kwargs):
        calls["count"] += 1
        if not calls["failed"] and hits(args):
            calls["failed"] = True
            raise OSError(errno.EIO, f"injected failure of os.{name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(os, name, flaky)
    return calls


# patch writes 2 files (the module, then the new config), then moves module, backup and config into place
PATCH_FAILURES = [
    ("write", "1"),
    ("write", "2"),
    ("replace", mf.MODULE_FILE),
    ("replace", mf.BACKUP_FILE),
    ("replace", mf.CONFIG_FILE),
]


@pytest.mark.parametrize("name,target", PATCH_FAILURES)
def test_failed_patch_changes_nothing(folder, monkeypatch, name, target):
    before = snapshot(folder)
    calls = fail_once(monkeypatch, name, target)
    with pytest.raises(OSError, match="injected failure"):
        mf.patch_folder(folder)
    assert calls["failed"]
    monkeypatch.undo()
    assert snapshot(folder) == before
    assert no_temp_files(folder)
    assert run_cli("patch", folder).returncode == 0  # and the next run completes


# unpatch puts the original config back (replace), then removes the backup and the module (unlink)
UNPATCH_FAILURES = [("replace", mf.CONFIG_FILE), ("unlink", mf.BACKUP_FILE), ("unlink", mf.MODULE_FILE)]


@pytest.mark.parametrize("name,target", UNPATCH_FAILURES)
def test_failed_unpatch_changes_nothing(folder, monkeypatch, name, target):
    original = snapshot(folder)
    mf.patch_folder(folder)
    before = snapshot(folder)
    calls = fail_once(monkeypatch, name, target)
    with pytest.raises(OSError, match="injected failure"):
        mf.unpatch_folder(folder)
    assert calls["failed"]
    monkeypatch.undo()
    assert snapshot(folder) == before
    assert no_temp_files(folder)
    mf.unpatch_folder(folder)
    assert snapshot(folder) == original


def test_without_hard_links(folder, monkeypatch):
    """File systems without hard links: the backup is an exact copy instead, and unpatch is still exact."""

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "hard links not supported here")

    before = snapshot(folder)
    monkeypatch.setattr(os, "link", no_links)
    mf.patch_folder(folder)
    assert snapshot(folder)[mf.BACKUP_FILE] == before["tokenizer_config.json"]
    mf.unpatch_folder(folder)
    assert snapshot(folder) == before


# ------------------------------------------------------------- other situations
def test_hub_cache_layout_with_symlinks(tmp_path, tiny_tok):
    """Hub snapshots are symlinks into blobs/: patch never writes through them, unpatch puts the links back."""
    source = standin_folder(tmp_path, "current", TINY)
    blobs, snap = tmp_path / "blobs", tmp_path / "snapshots" / "abc123"
    blobs.mkdir()
    snap.mkdir(parents=True)
    for name in ("tokenizer.model", "tokenizer_config.json", "tokenization_chatglm.py"):
        blob = blobs / f"blob-{name}"
        shutil.copyfile(source / name, blob)
        os.symlink(os.path.relpath(blob, snap), snap / name)
    blobs_before, before = snapshot(blobs), snapshot(snap)
    assert run_cli("patch", snap).returncode == 0
    assert snapshot(blobs) == blobs_before
    check_clean_report(load_in_clean_process(snap, tmp_path), tiny_tok)
    assert run_cli("unpatch", snap).returncode == 0
    assert snapshot(snap) == before and snapshot(blobs) == blobs_before
    assert (snap / "tokenizer_config.json").is_symlink()


def test_unpatch_keeps_edits_made_after_patching(folder):
    original_entry = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))["auto_map"]
    assert run_cli("patch", folder).returncode == 0
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["model_max_length"] = 4096
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    result = run_cli("unpatch", folder)
    assert result.returncode == 0 and "edits are kept" in result.stdout
    config = json.loads(path.read_text(encoding="utf-8"))
    assert config["model_max_length"] == 4096 and config["auto_map"] == original_entry
    assert not (folder / mf.BACKUP_FILE).exists() and not (folder / mf.MODULE_FILE).exists()


def test_unpatch_cleans_up_after_an_interrupted_patch(folder):
    """Killed after the module and backup were written but before the config: unpatch removes the leftovers."""
    before = snapshot(folder)
    (folder / mf.MODULE_FILE).write_bytes(mf.fixed_module_bytes())
    shutil.copyfile(folder / "tokenizer_config.json", folder / mf.BACKUP_FILE)
    result = run_cli("unpatch", folder)
    assert result.returncode == 0 and "removed leftover" in result.stdout
    assert snapshot(folder) == before


def test_unpatch_without_the_backup_is_an_error(folder):
    assert run_cli("patch", folder).returncode == 0
    (folder / mf.BACKUP_FILE).unlink()
    before = snapshot(folder)
    line = assert_one_line_error(run_cli("unpatch", folder), "unpatch")
    assert mf.BACKUP_FILE in line and "missing" in line
    assert snapshot(folder) == before


def test_patch_changes_one_line_of_the_config(folder):
    """Only the class name in auto_map changes, so the config's diff is one line (formatting kept)."""
    original = (folder / "tokenizer_config.json").read_text(encoding="utf-8").splitlines()
    assert run_cli("patch", folder).returncode == 0
    patched = (folder / "tokenizer_config.json").read_text(encoding="utf-8").splitlines()
    changed = [(a, b) for a, b in zip(original, patched) if a != b]
    assert len(original) == len(patched) and len(changed) == 1
    assert "tokenization_chatglm.ChatGLM4Tokenizer" in changed[0][0]
    assert "tokenization_glm4_tokfix.ChatGLM4Tokenizer" in changed[0][1]


@pytest.mark.parametrize(
    "entry", ["tokenization_chatglm.ChatGLM4Tokenizer", ["tokenization_chatglm.ChatGLM4Tokenizer", "fast.GLMFast"]]
)
def test_other_auto_map_shapes(tmp_path, entry):
    """A bare class name, or a fast class next to the slow one: patch sets [ours, null]; unpatch restores bytes."""
    folder = standin_folder(tmp_path, "current", TINY)
    _config_edit(lambda c: c["auto_map"].__setitem__("AutoTokenizer", entry))(folder)
    before = snapshot(folder)
    assert run_cli("patch", folder).returncode == 0
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["auto_map"]["AutoTokenizer"] == [mf.CLASS_REF, None]
    assert glm4_tokfix.is_patched(load(folder))
    assert run_cli("unpatch", folder).returncode == 0
    assert snapshot(folder) == before
