"""`prunescape train` over a grid of --lr x --wd values, fused or one by one, as a user runs it."""

from __future__ import annotations

import json

import pytest

from backend.cli.main import main
from workers.engine.artifacts import load_model


def train_lines(capsys, *argv: str) -> list[dict]:
    assert main(["train", "--dataset", "digits", "--model", "digits_cnn", *argv, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_a_grid_prints_one_object_per_point_and_fused_equals_one_by_one_in_float64(capsys, tmp_path):
    argv = [
        "--epochs",
        "1",
        "--batch-size",
        "256",
        "--lr",
        "0.05,0.2",
        "--wd",
        "0,5e-4",
        "--dtype",
        "float64",
    ]
    fused = train_lines(capsys, *argv, "--out", str(tmp_path / "f.pt"))
    alone = train_lines(capsys, *argv, "--no-fused", "--out", str(tmp_path / "a.pt"))
    assert [(p["lr"], p["wd"]) for p in fused] == [(0.05, 0.0), (0.05, 5e-4), (0.2, 0.0), (0.2, 5e-4)]
    assert [p["group_size"] for p in fused] == [4] * 4 and [p["group_size"] for p in alone] == [1] * 4
    for f, a in zip(fused, alone, strict=True):
        assert (f["lr"], f["wd"], f["status"], f["dtype"]) == (a["lr"], a["wd"], a["status"], "float64")
        assert (f["top1"], f["top5"]) == (a["top1"], a["top5"])
        assert f["loss"] == pytest.approx(a["loss"], rel=1e-9)
        model, meta = load_model(f["out"])
        assert meta["recipe"]["lr"] == f["lr"] and meta["group_size"] == 4
    assert len({p["loss"] for p in fused}) == 4
    assert (tmp_path / "f-lr0.2-wd0.0005.pt").is_file() and (tmp_path / "a-lr0.05-wd0.pt").is_file()


def test_a_single_point_prints_what_it_always_printed(capsys, tmp_path):
    out = tmp_path / "one.pt"
    assert main(["train", "--dataset", "digits", "--model", "digits_cnn", "--epochs", "1", "--lr", "0.1",
                 "--wd", "1e-4", "--out", str(out), "--json"]) == 0  # fmt: skip
    payload = json.loads(capsys.readouterr().out)  # one (indented) object, as before the grid
    assert payload["status"] == "succeeded" and payload["out"] == str(out) and out.is_file()
    assert (payload["lr"], payload["wd"], payload["group_size"]) == (0.1, 1e-4, 1)
    assert payload["recipe"]["lr"] == 0.1 and payload["top1"] > 10


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--lr", "0.1,abc"], "--lr must be comma-separated numbers"),
        (["--lr", "0,0.1"], "--lr must be > 0 and finite, got 0.0"),
        (["--lr", "0.1,inf"], "--lr must be > 0 and finite"),
        (["--wd=-1e-4"], "--wd must be >= 0 and finite"),
        (["--lr", "0.1,0.1"], "--lr lists a value twice"),
        (
            [
                "--lr",
                ",".join(str(0.01 * (i + 1)) for i in range(9)),
                "--wd",
                ",".join(str(i) for i in range(8)),
            ],
            "makes 72 points; at most 64",
        ),  # fmt: skip
        (["--dtype", "float16"], "--dtype"),
    ],
)
def test_bad_grid_arguments_exit_2_naming_the_argument(capsys, argv, named):
    try:
        status = main(["train", "--dataset", "digits", "--model", "digits_cnn", *argv, "--out", "x.pt"])
    except SystemExit as exc:
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert named in err and len(err.splitlines()) == 1, err
