"""`sparsebench compare`: every format of every checkpoint, measured side by side."""

from .config import CompareConfig
from .results import CompareReport, CompareRow
from .run import compare

__all__ = ["CompareConfig", "CompareReport", "CompareRow", "compare"]
