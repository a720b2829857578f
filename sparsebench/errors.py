"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""


class SparsebenchError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class MissingExtraError(SparsebenchError):
    """An optional package is not installed; the message names the extra that provides it."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the optional package '{package}': pip install 'sparsebench[{extra}]'"
        )
        self.package = package
        self.extra = extra


def first_line(exc: BaseException, with_type: bool = False) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    return f"{type(exc).__name__}: {lines[0]}" if with_type else lines[0]
