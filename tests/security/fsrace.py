"""The attacker of the symlink-race tests: a separate process that swaps two names in a
tree as fast as it can, for a bounded time.

``python fsrace.py A B SECONDS`` exchanges the entries ``A`` and ``B`` atomically
(``renameat2(RENAME_EXCHANGE)``) in a loop until SECONDS have passed, then prints how many
swaps it made. A separate process, not a thread: it must run at full speed beside the
client loop (the GIL would otherwise take turns with it).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from pathlib import Path

RENAME_EXCHANGE = 2
AT_FDCWD = -100


def exchange_loop(a: str, b: str, seconds: float) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.renameat2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                   ctypes.c_uint]
    ab, bb = os.fsencode(a), os.fsencode(b)
    n = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(200):
            if fn(AT_FDCWD, ab, AT_FDCWD, bb, RENAME_EXCHANGE) != 0:
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e), a)
            n += 1
    return n


class Swapper:
    """Runs this module as a process exchanging ``a`` and ``b`` for at most ``seconds``;
    ``stop()`` ends it (by its PID) and returns the number of swaps."""

    def __init__(self, a: Path, b: Path, seconds: float) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, str(a), str(b),
                                      str(seconds)], stdout=subprocess.PIPE)

    def stop(self) -> int:
        out, _ = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, f"swapper failed ({self.proc.returncode})"
        return int(out.decode().split()[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


if __name__ == "__main__":
    print("swaps", exchange_loop(sys.argv[1], sys.argv[2], float(sys.argv[3])))
