"""What reports can answer with besides success."""

from __future__ import annotations

from coursehub.core.errors import ValidationFailed


class InvalidReportWindow(ValidationFailed):
    code = "invalid_report_window"
    title = "The report's window is empty"
