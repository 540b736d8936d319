"""``report.generate``: a table in, CSV text and per-column statistics out.

The CSV is meant to be opened in a spreadsheet, so text cells that a spreadsheet would run
as a formula (starting with ``= + - @``, tab or carriage return; OWASP "CSV injection") get
a leading apostrophe. Numbers are written as numbers and never prefixed.

Numbers are bounded (integers within +-1e18, finite floats within +-1e300) so sums and
variances stay finite and the result is always valid JSON.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from security.sanitise import CleanStr
from workers.contract.catalogue import task

__all__ = [
    "FORMULA_PREFIXES",
    "GenerateReport",
    "Summary",
    "generate_report",
    "neutralise",
    "summarise",
    "to_csv",
]

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
MAX_COLUMNS = 50
MAX_ROWS = 10_000

ColumnName = Annotated[str, CleanStr(max_length=100, min_length=1)]
Integer = Annotated[int, Strict(), Field(ge=-(10**18), le=10**18)]


def _not_an_integer(value: Any) -> Any:
    # Without this an integer beyond the Integer bounds would fall through to this branch
    # of the union and quietly become a float.
    if isinstance(value, int):
        raise PydanticCustomError("integer_out_of_range", "Integers must lie within +-1e18")
    return value


# The bounds come before the validator: after it, pydantic cannot express them in JSON
# Schema and writes its own names (``ge``/``le``) instead of ``minimum``/``maximum``. A
# BeforeValidator runs before the inner checks wherever it is listed.
Real = Annotated[
    float,
    Strict(),
    Field(allow_inf_nan=False, ge=-1e300, le=1e300),
    BeforeValidator(_not_an_integer),
]
Cell = Integer | Real | Annotated[str, CleanStr(max_length=200)] | None
Number = int | float
Summary = dict[str, Number | None]


class GenerateReport(BaseModel):
    """Payload of ``report.generate``: named columns and rows of numbers, text or nulls."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    title: Annotated[str, CleanStr(max_length=200, min_length=1)]
    columns: list[ColumnName] = Field(min_length=1, max_length=MAX_COLUMNS)
    rows: list[Annotated[list[Cell], Field(max_length=MAX_COLUMNS)]] = Field(
        default_factory=list, max_length=MAX_ROWS
    )

    @field_validator("columns")
    @classmethod
    def _unique_columns(cls, columns: list[str]) -> list[str]:
        if len(set(columns)) != len(columns):
            raise ValueError("column names must be unique")
        return columns

    @model_validator(mode="after")
    def _rows_match_columns(self) -> GenerateReport:
        width = len(self.columns)
        for index, row in enumerate(self.rows):
            if len(row) != width:
                # Index and counts only: never a cell value.
                raise ValueError(f"row {index} has {len(row)} cells; expected {width}")
        return self


def neutralise(cell: str) -> str:
    """Prefix text a spreadsheet would evaluate as a formula with an apostrophe."""
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


def _csv_cell(cell: Any) -> Any:
    if cell is None:
        return ""
    if isinstance(cell, str):
        return neutralise(cell)
    return cell


def to_csv(columns: list[str], rows: list[list[Any]]) -> str:
    """RFC 4180 CSV (CRLF line ends, minimal quoting) with formula cells neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, dialect="excel")
    writer.writerow([neutralise(name) for name in columns])
    writer.writerows([_csv_cell(cell) for cell in row] for row in rows)
    return buffer.getvalue()


def summarise(values: list[Number]) -> Summary:
    """count, sum, min, max, mean, median and sample stdev (None below two values)."""
    total: Number = sum(values) if all(isinstance(v, int) for v in values) else math.fsum(values)
    return {
        "count": len(values),
        "sum": total,
        "min": min(values),
        "max": max(values),
        "mean": statistics.mean(values),
        "median": statistics.median(values),
        "stdev": statistics.stdev(values) if len(values) >= 2 else None,
    }


def _numeric_columns(columns: list[str], rows: list[list[Any]]) -> dict[str, list[Number]]:
    """Columns whose non-null cells are all numbers, with at least one number."""
    numeric: dict[str, list[Number]] = {}
    for index, name in enumerate(columns):
        cells = [row[index] for row in rows if row[index] is not None]
        if cells and not any(isinstance(cell, str) for cell in cells):
            numeric[name] = cells
    return numeric


@task(
    "report.generate",
    schema=GenerateReport,
    rate_limit="30/minute",
    # 10 000 rows of up to 50 cells: bounded by bytes, not by the row cap alone.
    max_payload_bytes=2 * 1024 * 1024,
    soft_time_limit=60,
    time_limit=90,
)
def generate_report(payload: GenerateReport) -> dict[str, Any]:
    """Render rows as spreadsheet-safe CSV and summarise every numeric column."""
    numeric = _numeric_columns(payload.columns, payload.rows)
    return {
        "title": payload.title,
        "csv": to_csv(payload.columns, payload.rows),
        "summary": {name: summarise(values) for name, values in numeric.items()},
        "row_count": len(payload.rows),
    }
