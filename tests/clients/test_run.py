"""``glm4-tokfix run -- COMMAND``: the fix in every Python process the command starts, through a sitecustomize.

Each test runs real child interpreters: ``python -m glm4_tokfix.cli run -- python script.py`` (or the child
environment ``glm4_tokfix.run.run_environment`` builds) on the embedded tiny vocabulary, with a transformers-native
glm-4-9b-chat-hf style folder (no remote code, so users pass no flag) and an upstream remote-code folder
(``trust_remote_code=True``). Without ``run`` both show ``[gMASK]<sop>`` twice on a rendered chat: the tests can fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from run_support import CHAT, KINDS, child_env, count_prefix, make_folder, run_command

import glm4_tokfix
from glm4_tokfix.run import OPT_OUT_ENV, SITE_DIR, run_environment

pytest.importorskip("jinja2")  # the chat templates render with it

ACTIVE = f"glm4-tokfix {glm4_tokfix.__version__} active (glm4-tokfix run"
NOT_ACTIVE = "glm4-tokfix run: the fix is NOT active in this process"

# loads the folder with AutoTokenizer as a user's script would, renders the chat, prints the ids as JSON
RENDER = textwrap.dedent(
    """
    import json, sys
    from transformers import AutoTokenizer

    folder, trust = sys.argv[1], sys.argv[2] == "trust"
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust)
    rendered = tok.apply_chat_template(json.loads(sys.argv[3]), tokenize=False, add_generation_prompt=True)
    ids = tok(rendered)["input_ids"]
    again = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust)(rendered)["input_ids"]
    print(json.dumps({"ids": ids, "again": again, "prefix": tok.convert_tokens_to_ids(["[gMASK]", "<sop>"])}))
    """
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("run-folders")
    return {kind: make_folder(base, kind) for kind in KINDS}


@pytest.fixture(scope="module")
def render_script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scripts") / "render.py"
    path.write_text(RENDER, encoding="utf-8")
    return path


def render(command_prefix, script, folder, kind, env=None):
    args = [sys.executable, str(script), str(folder), "trust" if kind == "remote" else "no", json.dumps(CHAT)]
    proc = subprocess.run(
        [*command_prefix(*args)] if command_prefix else args,
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out, proc.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_run_gives_one_prefix_and_without_it_the_prefix_doubles(folders, render_script, kind):
    fixed, err = render(run_command, render_script, folders[kind], kind)
    assert count_prefix(fixed["ids"], fixed["prefix"]) == 1
    assert fixed["ids"][:2] == fixed["prefix"]
    assert fixed["again"] == fixed["ids"]
    assert err.count(ACTIVE) == 1, err  # one line per process, although two tokenizers were loaded

    plain, err = render(None, render_script, folders[kind], kind)
    assert count_prefix(plain["ids"], plain["prefix"]) == 2  # the bug the command fixes
    assert ACTIVE not in err


def test_opt_out_leaves_the_fix_out(folders, render_script):
    out, err = render(run_command, render_script, folders["hf"], "hf", env=child_env(**{OPT_OUT_ENV: "0"}))
    assert count_prefix(out["ids"], out["prefix"]) == 2
    assert ACTIVE not in err and NOT_ACTIVE not in err


@pytest.mark.parametrize("status", [0, 3, 77])
def test_exit_status_is_the_commands(status):
    proc = subprocess.run(
        run_command(sys.executable, "-c", f"import sys; sys.exit({status})"), env=child_env(), timeout=120
    )
    assert proc.returncode == status


def test_run_without_double_dash_and_a_missing_command():
    proc = subprocess.run(
        [sys.executable, "-m", "glm4_tokfix.cli", "run", sys.executable, "-c", "print('ran')"],
        env=child_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout) == (0, "ran\n")
    proc = subprocess.run(
        run_command("glm4-tokfix-no-such-command-xyz", "a"), env=child_env(), capture_output=True, text=True
    )
    assert proc.returncode == 127
    assert "glm4-tokfix-no-such-command-xyz: command not found" in proc.stderr
    proc = subprocess.run(run_command(), env=child_env(), capture_output=True, text=True)
    assert proc.returncode == 2 and "no command given" in proc.stderr


def test_run_environment_puts_the_site_folder_first_once():
    env = run_environment({"PYTHONPATH": "/a:/b"})
    assert env["PYTHONPATH"].split(":") == [SITE_DIR, "/a", "/b"]
    assert run_environment(env)["PYTHONPATH"] == env["PYTHONPATH"]  # a nested run adds nothing
    assert run_environment({})["PYTHONPATH"] == SITE_DIR  # no empty entry (which would mean the current folder)


def test_users_sitecustomize_runs_once_and_stays_importable(tmp_path, folders, render_script):
    user = tmp_path / "user-site"
    user.mkdir()
    log = tmp_path / "user-site.log"
    (user / "sitecustomize.py").write_text(
        f"import os\nUSER_MARK = 'mine'\nwith open({str(log)!r}, 'a') as f:\n    f.write(f'{{os.getpid()}}\\n')\n",
        encoding="utf-8",
    )
    # the child alone (run_environment is what the runner hands to execvpe): the runner's own interpreter would
    # run the user's sitecustomize too, with the same pid
    env = run_environment(child_env(PYTHONPATH=f"{child_env()['PYTHONPATH']}:{user}"))
    script = "import sitecustomize, transformers; print(sitecustomize.USER_MARK)"
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "mine\n"
    assert len(log.read_text().splitlines()) == 1
    out, err = render(None, render_script, folders["hf"], "hf", env=env)  # and the fix is active in such a process
    assert count_prefix(out["ids"], out["prefix"]) == 1
    assert err.count(ACTIVE) == 1


def test_a_failing_user_sitecustomize_is_reported_as_python_would_and_the_fix_still_works(
    tmp_path, folders, render_script
):
    user = tmp_path / "user-site"
    user.mkdir()
    (user / "sitecustomize.py").write_text("raise RuntimeError('user site broke')\n", encoding="utf-8")
    env = run_environment(child_env(PYTHONPATH=f"{child_env()['PYTHONPATH']}:{user}"))
    out, err = render(None, render_script, folders["hf"], "hf", env=env)
    assert "Error in sitecustomize" in err and "user site broke" in err
    assert count_prefix(out["ids"], out["prefix"]) == 1


def test_spawned_children_are_fixed_too(tmp_path, folders):
    script = tmp_path / "spawn.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, multiprocessing, sys

            def ids(folder):
                from transformers import AutoTokenizer
                tok = AutoTokenizer.from_pretrained(folder)
                rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
                return tok(rendered)["input_ids"], tok.convert_tokens_to_ids(["[gMASK]", "<sop>"])

            if __name__ == "__main__":
                with multiprocessing.get_context("spawn").Pool(1) as pool:
                    print(json.dumps(pool.apply(ids, (sys.argv[1],))))
                print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("transformers", "glm4_tokfix"))))
            """
        ),
        encoding="utf-8",
    )
    proc = subprocess.run(
        run_command(sys.executable, str(script), str(folders["hf"])),
        env=child_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    ids, prefix = json.loads(lines[0])
    assert count_prefix(ids, prefix) == 1
    assert json.loads(lines[1]) == []  # the parent never loaded a tokenizer: it imported neither
    assert proc.stderr.count(ACTIVE) == 1, proc.stderr  # the child's line


def test_a_program_that_never_imports_transformers_pays_nothing():
    script = (
        "import json, sys; print(json.dumps([sorted(m for m in sys.modules if m.split('.')[0] in "
        "('transformers', 'glm4_tokfix', 'tokenizers', 'torch')), sys.modules['sitecustomize'].__file__]))"
    )
    proc = subprocess.run(
        run_command(sys.executable, "-c", script), env=child_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    imported, site_file = json.loads(proc.stdout)
    assert imported == []
    assert Path(site_file).parent == Path(SITE_DIR)  # the hook was installed in this process
    assert proc.stderr == ""


def test_a_broken_glm4_tokfix_says_so_once_and_the_program_goes_on(tmp_path, folders, render_script):
    broken = tmp_path / "broken" / "glm4_tokfix"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('this glm4_tokfix is broken')\n", encoding="utf-8")
    env = run_environment(child_env())
    env["PYTHONPATH"] = f"{SITE_DIR}:{broken.parent}:{env['PYTHONPATH']}"
    out, err = render(None, render_script, folders["hf"], "hf", env=env)
    assert count_prefix(out["ids"], out["prefix"]) == 2  # ran, without the fix
    assert err.count(NOT_ACTIVE) == 1 and "this glm4_tokfix is broken" in err


LAUNCHERS = {
    # the module each launcher's console script runs, with the options that keep it to one CPU process
    "torchrun": ("torch", ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]),
    "accelerate launch": (
        "accelerate",
        [
            "-m",
            "accelerate.commands.launch",
            "--cpu",
            "--num_processes",
            "1",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
        ],
    ),
}


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_run_reaches_the_processes_a_launcher_starts(folders, render_script, launcher):
    """``glm4-tokfix run -- torchrun ... script.py``: the launcher's worker process (a child of a child) is fixed."""
    package, options = LAUNCHERS[launcher]
    pytest.importorskip(package, reason=f"{launcher} needs {package}")
    kind = "hf"
    args = [str(render_script), str(folders[kind]), "no", json.dumps(CHAT)]
    env = child_env(ACCELERATE_CONFIG_FILE=str(render_script.parent / "no-accelerate-config.yaml"))
    results = {}
    for name, prefix in (("fixed", run_command(sys.executable)), ("plain", [sys.executable])):
        proc = subprocess.run([*prefix, *options, *args], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr
    (fixed, err), (plain, _) = results["fixed"], results["plain"]
    assert count_prefix(fixed["ids"], fixed["prefix"]) == 1 and fixed["ids"][:2] == fixed["prefix"]
    assert ACTIVE in err  # said by the worker, whose stderr the launcher passes on
    assert count_prefix(plain["ids"], plain["prefix"]) == 2  # without run the worker doubles it: the test can fail
