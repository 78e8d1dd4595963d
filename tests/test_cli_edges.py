"""The command line's edges (issue 15): --version, closed pipes, options checked before any work,
output paths checked before the computation, --no-user-rules, progress that tells the truth, and
accuracy tables that warn when they measure little."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ntkc import __version__
from ntkc.cli import main
from ntkc.learn import tasks
from ntkc.learn.progress import Progress

from support.paths import ROOT

TINY = "input height=8 width=8 channels=1\nconv w_std=sqrt(2)\nrelu\nflatten\ndense\n"
EXAMPLES = ROOT / "examples"


@pytest.fixture
def arch(tmp_path):
    f = tmp_path / "tiny.arch"
    f.write_text(TINY)
    return f


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a command starts computing kernels."""
    def refuse(*a, **k):
        raise AssertionError("the command computed before checking its options")
    monkeypatch.setattr(tasks, "dataset_kernels", refuse)


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"ntkc {__version__}"


@pytest.mark.parametrize("command", ["compile examples/cntk_gap_d21.arch --emit plan",
                                     "compile examples/cntk_v_d3.arch --emit triton", "layers"])
def test_a_closed_pipe_ends_quietly_as_unix_tools_do(command):
    # The reader is gone before ntkc writes a byte (as `| head -1` is after its line), so the
    # first write meets a closed pipe, whatever the timing.
    read, write = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "ntkc.cli", *command.split()], cwd=ROOT, stdout=write,
                            stderr=subprocess.PIPE, text=True)
    os.close(write)
    os.close(read)
    err = proc.communicate(timeout=120)[1]
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 128 + 13  # the status of a process ended by SIGPIPE


@pytest.mark.parametrize("option", [["--tile", "-4"], ["--tile", "0"], ["--seed", "-1"], ["--n-train", "0"],
                                    ["--memory", "1e999G"], ["--memory", "0"], ["--tile", "2.5"]])
def test_bad_numbers_are_refused_before_any_work(arch, tmp_path, capsys, no_work, option):
    with pytest.raises(SystemExit) as e:
        main(["gram", str(arch), "--store", str(tmp_path / "s"), "--out", str(tmp_path / "k.npz"), *option])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert option[0] in err and "Traceback" not in err
    assert not (tmp_path / "s").exists() and not (tmp_path / "k.npz").exists()


def test_json_is_refused_without_the_report(arch, capsys):
    for emit in ("plan", "triton"):
        assert main(["compile", str(arch), "--emit", emit, "--json"]) == 2
        err = capsys.readouterr().err
        assert "--emit report" in err and "Traceback" not in err


def test_a_negative_or_nan_ridge_is_refused(arch, capsys, no_work):
    for ridge in ("-1", "nan", "inf"):
        assert main(["regress", str(arch), "--ridge", ridge, "--quiet"]) == 2
        assert "--ridge" in capsys.readouterr().err


def test_output_paths_are_checked_before_the_work(arch, tmp_path, capsys, no_work):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    assert main(["gram", str(arch), "--out", str(folder), "--quiet"]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["regress", str(arch), "--json", str(folder), "--quiet"]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_an_experiments_output_folder_is_checked_before_the_work(arch, tmp_path, capsys, no_work):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    config = tmp_path / "exp.yaml"
    config.write_text(f"architectures: [{arch}]\ndataset: digits\nn_train: 20\nn_test: 10\noutput: a_file/out\n")
    assert main(["run", "--quiet", str(config)]) == 2
    err = capsys.readouterr().err
    assert "`output`" in err and "cannot make the folder" in err and "Traceback" not in err
    assert blocker.read_text() == "not a folder"


def test_outputs_into_missing_folders_are_written(arch, tmp_path, capsys):
    out, js = tmp_path / "new" / "k.npz", tmp_path / "newer" / "deep" / "r.json"
    assert main(["gram", str(arch), "--n-train", "10", "--n-test", "5", "--out", str(out), "--quiet"]) == 0
    assert main(["regress", str(arch), "--n-train", "20", "--n-test", "10", "--json", str(js), "--quiet"]) == 0
    assert out.exists() and json.loads(js.read_text())[0]["kernel"] == "NNGP"


def test_a_file_argument_is_always_a_path(tmp_path, capsys):
    f = tmp_path / "net.txt"  # not named .arch: still the file, never read as .arch text
    f.write_text(TINY)
    assert main(["compile", str(f)]) == 0
    assert "plan for" in capsys.readouterr().out


def test_no_user_rules_refuses_use_lines_before_they_run(tmp_path, capsys):
    sine = str(EXAMPLES / "user_sine.arch")
    assert main(["compile", sine, "--no-user-rules"]) == 2
    err = capsys.readouterr().err
    assert "user_sine.arch:" in err and "user rules are refused" in err
    assert main(["layers", sine, "--no-user-rules"]) == 2
    assert main(["regress", sine, "--no-user-rules", "--quiet"]) == 2
    assert main(["compile", str(EXAMPLES / "cntk_v_d3.arch"), "--no-user-rules"]) == 0
    capsys.readouterr()
    assert main(["compile", sine]) == 0  # allowed unless refused


def _npz(path, y_train, y_test):
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.random((len(y_train), 1, 8, 8)), y_train=np.asarray(y_train),
             x_test=rng.random((len(y_test), 1, 8, 8)), y_test=np.asarray(y_test))
    return path


def test_accuracy_tables_warn_when_they_measure_little(arch, tmp_path, capsys):
    one = _npz(tmp_path / "one.npz", [1] * 8, [1, 1, 0, 0])
    assert main(["regress", str(arch), "--dataset", str(one), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "training set holds one class only" in out and "test classes [0] never occur" in out
    fine = _npz(tmp_path / "fine.npz", [0, 1] * 4, [0, 1])
    assert main(["regress", str(arch), "--dataset", str(fine), "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().out


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_progress_rates_count_only_this_runs_pairs_and_start_sane():
    clock, out = _Clock(), io.StringIO()
    p = Progress("store", out, clock, tty=True)
    p(9_000, 10_000)  # a resumed store: 9,000 pairs were stored by an earlier run
    clock.t += 0.001
    p(9_010, 10_000)  # a first update right away: no rate yet (it would be 10 M pairs/s)
    assert "pairs/s" not in out.getvalue().split("\r")[-1]
    clock.t += 4.999
    p(9_500, 10_000)
    last = out.getvalue().split("\r")[-1]
    assert "100 pairs/s in this run" in last and "ETA 0:00:05" in last, last


def test_progress_in_a_log_is_a_plain_line_every_few_seconds():
    clock, out = _Clock(), io.StringIO()
    p = Progress("train", out, clock, tty=False)
    for step in range(1, 201):
        clock.t += 0.1
        p(step * 10, 2_000)
    p.close()
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert 4 <= len(lines) <= 7, lines  # 20 s of work: a line every 5 s, and the last one
    assert lines[-1].startswith("train: 2,000/2,000 pairs (100%)")


def test_the_engine_reports_its_start_before_any_work():
    import torch

    import ntkc
    from ntkc.engine.tiling import gram

    k = ntkc.compile(TINY)
    seen = []
    gram(k.backend(), torch.rand(5, 1, 8, 8), None, 1 << 26, progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, 15) and seen[-1] == (15, 15)
