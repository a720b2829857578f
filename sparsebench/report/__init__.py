"""Rendering of reports (terminal, markdown, JSON, CSV); reports only read measured results."""

from .writer import read_report, write_report

__all__ = ["read_report", "write_report"]
