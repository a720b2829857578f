"""Baseline benchmark of the sparse formats on this machine (also: `sparsebench bench-formats`).

Usage: python benchmarks/formats.py [--quick] [--output docs/formats-baseline.md]
"""

from sparsebench.cli import app

if __name__ == "__main__":
    app(["bench-formats", *__import__("sys").argv[1:]], prog_name="benchmarks/formats.py")
