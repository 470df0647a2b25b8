"""The results-table parser: good files parse, every bad file names its line and column."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backend.analysis.synthetic import SyntheticVariant, synthetic_rows
from backend.analysis.table import (
    ResultsFileError,
    _fast_table,
    _table_row_by_row,
    parse_results_csv,
    table_from_rows,
    table_to_csv,
)

GOOD = """variant,lr,wd,seed,top1,top5,status,run_id
base,0.1,1e-4,0,93.1,99.5,succeeded,r1
base,0.1,1e-4,1,92.9,,succeeded,r2
base,1.0,1e-4,0,10.0,50.0,diverged,r3
u60,0.1,1e-4,0,91.0,99.0,,r4
"""


def test_good_file_parses_every_column():
    table = parse_results_csv(GOOD)
    assert len(table) == 4
    assert table.variants == ["base", "u60"]
    assert table.lr.tolist() == [0.1, 0.1, 1.0, 0.1]
    assert table.wd.tolist() == [1e-4] * 4
    assert table.seed.tolist() == [0, 1, 0, 0]
    assert table.top1.tolist() == [93.1, 92.9, 10.0, 91.0]
    assert table.top5[0] == 99.5 and math.isnan(table.top5[1])
    assert table.diverged.tolist() == [False, False, True, False]  # empty status = succeeded
    assert table.run_id == ["r1", "r2", "r3", "r4"]
    assert table.metrics == ["top1", "top5"]


def test_minimal_header_bytes_with_bom_and_crlf():
    data = "\ufeffVariant,LR,wd,seed,top1\r\nbase,0.1,0.0001,0,90\r\n".encode()
    table = parse_results_csv(data)
    assert table.variant == ["base"] and table.metrics == ["top1"] and table.run_id is None
    assert not table.diverged[0]


def test_formula_looking_cells_are_data():
    table = parse_results_csv(
        'variant,lr,wd,seed,top1,run_id\n"=HYPERLINK(""x"")",0.1,1e-4,0,90,=1+1\n', base=None
    )
    assert table.variant == ['=HYPERLINK("x")'] and table.run_id == ["=1+1"]


@pytest.mark.parametrize(
    ("text", "must_name"),
    [
        ("variant,lr,seed,top1\nbase,0.1,0,90\n", ["line 1", "'wd'"]),
        ("variant,lr,wd,seed,top1\nbase,abc,1e-4,0,90\n", ["line 2", "'lr'", "'abc'"]),
        ("variant,lr,wd,seed,top1\nbase,0.1,1e-4,0,90\nbase,-0.1,1e-4,1,90\n", ["line 3", "'lr'"]),
        ("variant,lr,wd,seed,top1\nbase,0.1,0,0,90\n", ["line 2", "'wd'"]),
        ("variant,lr,wd,seed,top1\nbase,0.1,1e-4,0,nan\n", ["line 2", "'top1'", "finite"]),
        ("variant,lr,wd,seed,top1\nbase,0.1,1e-4,0,inf\n", ["line 2", "'top1'"]),
        ("variant,lr,wd,seed,top1\nbase,0.1,1e-4,0,100.5\n", ["line 2", "'top1'", "[0, 100]"]),
        ("variant,lr,wd,seed,top1,top5\nbase,0.1,1e-4,0,90,-1\n", ["line 2", "'top5'"]),
        ("variant,lr,wd,seed,top1,status\nbase,0.1,1e-4,0,90,failed\n", ["line 2", "'status'", "failed"]),
        ("variant,lr,wd,seed,top1\nbase,0.1,1e-4,0.5,90\n", ["line 2", "'seed'"]),
        (
            "variant,lr,wd,seed,top1\nbase,0.1,1e-4,0,90\nbase,1e-1,0.0001,0,91\n",
            ["line 3", "duplicate", "line 2"],
        ),
        ("variant,lr,wd,seed,top1\nu60,0.1,1e-4,0,90\n", ["base"]),
        ("variant,lr,wd,seed,top1\nbase,0.1,1e-4,0\n", ["line 2", "cells"]),
        ("variant,lr,wd,seed,top1\n,0.1,1e-4,0,90\n", ["line 2", "'variant'"]),
        ("variant,lr,wd,seed,top1\n", ["no runs"]),
        ("", ["empty"]),
        ("  \n", ["empty"]),
        ("variant,lr,wd,seed,top1\nbase,=0.1,1e-4,0,90\n", ["line 2", "'lr'", "'=0.1'"]),
    ],
)
def test_bad_files_name_line_and_column(text, must_name):
    with pytest.raises(ResultsFileError) as info:
        parse_results_csv(text)
    for fragment in must_name:
        assert fragment in str(info.value)


def test_not_utf8_names_the_line():
    data = b"variant,lr,wd,seed,top1\nbase,0.1,1e-4,0,90\n" + "b\u00e4se,0.1,1e-4,0,90\n".encode("latin-1")
    with pytest.raises(ResultsFileError, match=r"line 3: the file is not UTF-8"):
        parse_results_csv(data)


def test_error_is_a_value_error_and_nothing_is_returned_half_parsed():
    # The bad row is the last one: a parser that streamed rows would already have stored the others.
    text = (
        "variant,lr,wd,seed,top1\n" + "".join(f"base,0.1,1e-4,{s},90\n" for s in range(50)) + "base,x,1,0,1\n"
    )
    with pytest.raises(ValueError, match="line 52"):
        parse_results_csv(text)


def test_rows_from_the_database_skip_unfinished_runs():
    rows = [
        {
            "variant": "base",
            "lr": 0.1,
            "wd": 1e-4,
            "seed": 0,
            "top1": 90.0,
            "status": "succeeded",
            "run_id": 7,
        },
        {"variant": "base", "lr": 0.1, "wd": 1e-3, "seed": 0, "top1": None, "status": "running", "run_id": 8},
        {
            "variant": "base",
            "lr": 1.0,
            "wd": 1e-3,
            "seed": 0,
            "top1": None,
            "status": "diverged",
            "run_id": 9,
        },
        {
            "variant": "base",
            "lr": 1.0,
            "wd": 1e-4,
            "seed": 0,
            "top1": 12.0,
            "top5": 40.0,
            "status": "diverged",
        },
    ]
    table = table_from_rows(rows)
    assert len(table) == 2 and table.n_skipped == 2
    assert table.run_id == [7, None] and table.diverged.tolist() == [False, True]
    assert np.isnan(table.top5[0]) and table.top5[1] == 40.0
    with pytest.raises(ResultsFileError, match="row 0, column 'status'"):
        table_from_rows([{**rows[0], "status": "exploded"}])
    with pytest.raises(ResultsFileError, match="row 1: duplicate"):
        table_from_rows([rows[0], rows[0]])


def test_csv_round_trip():
    table = parse_results_csv(GOOD)
    again = parse_results_csv(table_to_csv(table))
    assert again.variant == table.variant and again.run_id == table.run_id
    np.testing.assert_array_equal(again.top1, table.top1)
    np.testing.assert_array_equal(np.isnan(again.top5), np.isnan(table.top5))
    np.testing.assert_array_equal(again.diverged, table.diverged)


def test_vectorised_path_equals_the_row_by_row_path():
    rows = synthetic_rows(
        [SyntheticVariant("base"), SyntheticVariant("u", 0.2)], size=3, seeds=2, run_ids=True
    )
    rows[0]["status"] = "diverged"
    rows[1]["top5"] = 99.0
    fast, slow = _fast_table(rows), _table_row_by_row(rows)
    assert fast is not None
    assert fast.variant == slow.variant and fast.run_id == slow.run_id
    for name in ("lr", "wd", "seed", "top1", "top5", "diverged"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name))
    # anything unusual goes the slow way, which names the problem
    assert _fast_table([*rows, dict(rows[3])]) is None
    with pytest.raises(ResultsFileError, match="row 36: duplicate"):
        table_from_rows([*rows, dict(rows[3])])
    assert _fast_table([dict(rows[0], lr="x")]) is None
    assert _fast_table([dict(rows[0], status="running")]) is None
