"""The `ntkc` command line, run in-process through `ntkc.cli.main`."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from ntkc.cli import main

from support.paths import ROOT  # noqa: E402
TINY = "input height=8 width=8 channels=1\nconv w_std=sqrt(2)\nrelu\nflatten\ndense\n"


@pytest.fixture
def arch(tmp_path):
    f = tmp_path / "tiny.arch"
    f.write_text(TINY)
    return f


def test_help_explains_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("compile", "gram", "regress", "run", "layers"):
        assert cmd in out


def test_compile_prints_the_plan(capsys):
    assert main(["compile", str(ROOT / "examples" / "cntk_v_d3.arch")]) == 0
    out = capsys.readouterr().out
    assert "stage 0" in out and "planes 0 x 0" in out and "work per pair" in out


def test_compile_error_is_located_and_exit_code_2(tmp_path, capsys):
    f = tmp_path / "bad.arch"
    f.write_text("input height=4 width=4 channels=1\nconv strid=2\nflatten\n")
    assert main(["compile", str(f)]) == 2
    err = capsys.readouterr().err
    assert f"{f}:2:6:" in err and "did you mean `stride`" in err and "Traceback" not in err


def test_regress_prints_an_accuracy_table(arch, tmp_path, capsys):
    out_json = tmp_path / "r.json"
    assert main(["regress", str(arch), "--n-train", "60", "--n-test", "40", "--quiet",
                 "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "NNGP" in out and "NTK" in out and "%" in out
    rows = json.loads(out_json.read_text())
    assert {r["kernel"] for r in rows} == {"NNGP", "NTK"}
    assert all(r["accuracy"] > 0.5 for r in rows)  # ten classes: chance is 0.1


def test_gram_writes_blocks(arch, tmp_path, capsys):
    out = tmp_path / "k.npz"
    assert main(["gram", str(arch), "--n-train", "20", "--n-test", "10", "--out", str(out), "--quiet",
                 "--dtype", "float32"]) == 0
    with np.load(out) as z:
        assert z["ntk_train"].shape == (20, 20) and z["nngp_test"].shape == (10, 20)
        assert np.allclose(z["ntk_train"], z["ntk_train"].T)
        meta = json.loads(str(z["meta"]))
    assert meta["arch"] == TINY and meta["dtype"] == "float32"
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_data_folder_is_a_clear_error(arch, tmp_path, capsys):
    code = main(["regress", str(arch), "--dataset", "cifar10", "--data-dir", str(tmp_path / "nowhere"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "ntkc: error:" in err and "Traceback" not in err


def test_corrupt_pickle_is_a_clear_error(arch, tmp_path, capsys):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    good = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    (folder / "data_batch_1").write_bytes(pickle.dumps(good)[:50])
    (folder / "test_batch").write_bytes(pickle.dumps(good))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a"] * 10}))
    assert main(["regress", str(arch), "--dataset", "cifar10", "--data-dir", str(tmp_path), "--quiet"]) == 2
    assert "data_batch_1" in capsys.readouterr().err


def test_npz_with_missing_keys_and_wrong_shapes(arch, tmp_path, capsys):
    f = tmp_path / "mine.npz"
    np.savez(f, x_train=np.zeros((4, 1, 8, 8)), y_train=np.zeros(4))
    assert main(["regress", str(arch), "--dataset", str(f), "--quiet"]) == 2
    assert "x_test" in capsys.readouterr().err
    g = tmp_path / "shape.npz"
    rng = np.random.default_rng(0)  # (not constant images: those are refused before any shape check)
    np.savez(g, x_train=rng.random((4, 1, 6, 6)), y_train=np.arange(4) % 2,
             x_test=rng.random((2, 1, 6, 6)), y_test=np.arange(2))
    assert main(["regress", str(arch), "--dataset", str(g), "--quiet"]) == 2
    assert "(1, 6, 6)" in capsys.readouterr().err


def test_run_writes_results_config_and_plot(arch, tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"name: tiny\narchitectures: [{arch.name}]\ndataset: digits\nn_train: [30, 60]\n"
                   f"n_test: 30\nseeds: [0]\ndtype: float32\noutput: out\n")
    assert main(["run", str(cfg), "--quiet"]) == 0
    folder = tmp_path / "out"
    doc = json.loads((folder / "results.json").read_text())
    assert len(doc["rows"]) == 4 and (folder / "config.yaml").read_text() == cfg.read_text()
    png = (folder / "accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_run_refuses_unknown_settings(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("architectures: [a.arch]\nn_trian: 5\n")
    assert main(["run", str(cfg)]) == 2
    assert "n_trian" in capsys.readouterr().err


def test_layers_lists_rules(capsys):
    assert main(["layers"]) == 0
    out = capsys.readouterr().out
    assert "conv" in out and "padding=<same|valid|circular>" in out


def test_regress_with_one_image_per_class_uses_no_ridge(arch, capsys):
    assert main(["regress", str(arch), "--n-train", "10", "--n-test", "20", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "NTK" in out and "%" in out


CUBE_RULES = '''from ntkc.rules import ActivationRule, register


@register
class CubeTest(ActivationRule):
    """cubetest: a linear map in disguise (for the CLI test)."""

    name = "cubetest"

    def nngp(self, p, ops, u, v1, v2):
        return 4.0 * u

    def dfactor(self, p, ops, u, v1, v2):
        return 4.0 + 0.0 * u
'''


def test_layers_lists_user_rules_of_a_file_or_module(tmp_path, capsys):
    (tmp_path / "cube_rules.py").write_text(CUBE_RULES)
    arch = tmp_path / "net.arch"
    arch.write_text('use "cube_rules.py"\ninput height=4 width=4 channels=1\nconv\ncubetest\nflatten\ndense\n')
    assert main(["layers"]) == 0
    assert "cubetest" not in capsys.readouterr().out
    assert main(["layers", str(arch)]) == 0
    assert "cubetest: a linear map in disguise" in capsys.readouterr().out
    assert main(["layers", "--rules", str(tmp_path / "missing_rules.py")]) == 2
    assert "not found" in capsys.readouterr().err


def test_no_test_images_gram_keeps_the_train_block_and_regress_refuses(arch, tmp_path, capsys):
    out = tmp_path / "k.npz"
    assert main(["gram", str(arch), "--n-train", "20", "--n-test", "0", "--out", str(out), "--quiet"]) == 0
    with np.load(out) as f:
        assert f["ntk_train"].shape == (20, 20) and f["ntk_test"].shape == (0, 20)
    assert main(["regress", str(arch), "--n-train", "20", "--n-test", "0", "--quiet"]) == 2
    assert "needs test images" in capsys.readouterr().err


def test_memory_option_bounds_batches_and_keeps_results(arch, tmp_path, capsys):
    from ntkc.cli import _bytes_arg

    assert _bytes_arg("512M") == 512 << 20 and _bytes_arg("2g") == 2 << 30 and _bytes_arg("4096") == 4096
    small, big = tmp_path / "s.npz", tmp_path / "b.npz"
    base = ["gram", str(arch), "--n-train", "20", "--n-test", "6", "--quiet"]
    assert main(base + ["--out", str(small), "--memory", "16K"]) == 0
    assert main(base + ["--out", str(big)]) == 0
    with np.load(small) as a, np.load(big) as b:
        np.testing.assert_allclose(a["ntk_train"], b["ntk_train"], rtol=1e-12, atol=0)
    with pytest.raises(SystemExit):
        main(base + ["--out", str(big), "--memory", "lots"])
    assert "is not a size" in capsys.readouterr().err
