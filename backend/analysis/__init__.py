"""Landscape analysis of a study's results: pure numpy/scipy functions returning typed records.

Public entry points: :func:`analyse` (the whole analysis), :func:`landscape_for` (one variant's
landscape), :func:`parse_results_csv` / :func:`table_from_rows` (the results table) and
:class:`ResultsFileError`. Definitions: docs/spec.md section 5; JSON shape: :mod:`backend.analysis.records`.
"""

from backend.analysis.landscape import landscape_for
from backend.analysis.records import AnalysisReport
from backend.analysis.report import analyse
from backend.analysis.table import ResultsFileError, ResultsTable, parse_results_csv, table_from_rows

__all__ = [
    "AnalysisReport",
    "ResultsFileError",
    "ResultsTable",
    "analyse",
    "landscape_for",
    "parse_results_csv",
    "table_from_rows",
]
