"""`python -m sparsebench` runs the command line."""

from .cli import main

main()
