"""Partial downloads: where a download keeps its bytes until it is complete.

A download never writes its destination in place: the bytes go to a hidden file beside it
(the same directory, so the final rename is atomic), which takes the destination's name
only when the transfer is complete. A refused, failed or killed download therefore
leaves an existing file as it was; ``get -c`` continues the partial file; a local mirror
tree does not count it as a file of its own.
"""

from __future__ import annotations

import contextlib
import os

#: what a partial download's name ends with (beside the file it becomes)
PARTIAL_SUFFIX = ".natftp-part"


def partial_path(path: str) -> str:
    """``dir/.NAME.natftp-part`` for a download to ``dir/NAME``."""
    head, name = os.path.split(path)
    return os.path.join(head, f".{name}{PARTIAL_SUFFIX}")


def is_partial(name: str) -> bool:
    return name.startswith(".") and name.endswith(PARTIAL_SUFFIX)


def complete(part: str, final: str) -> None:
    """Put a complete download in place, keeping the mode of the file it replaces."""
    with contextlib.suppress(OSError):
        os.chmod(part, os.stat(final).st_mode & 0o7777)
    os.replace(part, final)
