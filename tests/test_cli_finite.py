"""`ntkc regress --times` and `ntkc compare`, run in-process through `ntkc.cli.main`."""
from __future__ import annotations

import json

import pytest

from ntkc.cli import main

TINY = "input height=8 width=8 channels=1\nconv w_std=sqrt(2)\nrelu\nflatten\ndense\n"


@pytest.fixture
def arch(tmp_path):
    f = tmp_path / "tiny.arch"
    f.write_text(TINY)
    return f


def test_regress_times_reports_accuracy_and_loss_and_inf_is_kernel_regression(arch, tmp_path, capsys):
    out = tmp_path / "r.json"
    png = tmp_path / "times.png"
    assert main(["regress", str(arch), "--n-train", "60", "--n-test", "40", "--quiet", "--times", "0,1,10,100,inf",
                 "--json", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "gradient flow" in text and "inf" in text
    res = json.loads(out.read_text())
    assert png.stat().st_size > 1000
    for row in res["regression"]:
        times = [t for t in res["times"] if t["kernel"] == row["kernel"]]
        assert [t["t"] for t in times] == [0.0, 1.0, 10.0, 100.0, float("inf")]
        assert times[-1]["test_accuracy"] == pytest.approx(row["accuracy"])  # t = inf: the regression
        assert times[0]["train_loss"] == pytest.approx(0.5 * (0.9 ** 2 + 9 * 0.1 ** 2))  # f = 0 at t = 0
        losses = [t["train_loss"] for t in times]
        assert all(a >= b - 1e-12 for a, b in zip(losses, losses[1:]))  # gradient flow never raises it


def test_regress_times_refuses_bad_times(arch, capsys):
    assert main(["regress", str(arch), "--n-train", "20", "--n-test", "10", "--quiet", "--times", "1,-3"]) == 2
    assert "--times" in capsys.readouterr().err


def test_compare_writes_a_table_results_and_a_plot(arch, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(arch), "--n-train", "30", "--n-test", "20", "--widths", "8,32", "--steps", "6",
                 "--seeds", "2", "--times", "1,3,6", "--quiet", "--out", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "centred" in text and "slope" in text
    res = json.loads((out / "results.json").read_text())
    assert (out / "compare.png").stat().st_size > 1000
    assert res["record"] == [1, 3, 6] and res["centred"] and res["seeds"] == [0, 1]
    assert len(res["rows"]) == 2 * 2 * 3
    assert 0 < res["lr"] < res["max_stable_lr"]
    assert all(r["distance"] > 0 and 0 <= r["accuracy"] <= 1 for r in res["rows"])
    assert set(res["rates"]) == {"1", "3", "6"}


def test_compare_refuses_what_cannot_run(arch, tmp_path, capsys):
    args = ["compare", str(arch), "--n-train", "20", "--n-test", "10", "--quiet", "--out", str(tmp_path / "c")]
    assert main(args + ["--lr", "10"]) == 2
    assert "diverges" in capsys.readouterr().err
    assert main(args + ["--lr", "fast"]) == 2
    assert "--lr" in capsys.readouterr().err
    assert main(args + ["--steps", "5", "--times", "9"]) == 2
    assert "--times" in capsys.readouterr().err
    no_dense = tmp_path / "nodense.arch"
    no_dense.write_text("input height=8 width=8 channels=1\nconv\nrelu\nflatten\n")
    assert main(["compare", str(no_dense), "--n-train", "20", "--n-test", "10", "--quiet"]) == 2
    assert "features per image" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():
        assert main(args + ["--device", "cuda"]) == 2
        assert "CUDA" in capsys.readouterr().err
