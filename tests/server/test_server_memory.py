"""A 1 GiB RETR and a 1 GiB STOR keep the server's memory flat: nothing is buffered whole.

The server (``natftp serve``, a real subprocess) is sampled every 20 ms while the bytes
move; its resident set may grow by less than 64 MiB over what it held before the
transfer. The download is a sparse file (no disk reads); the upload is written for real
and removed at the end. No timing is asserted.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from support.ftpraw import Ctl
from support.servertools import Running

SIZE = 1 << 30
BOUND = 64 << 20
CHUNK = bytearray(1 << 20)


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) << 10
    raise AssertionError(f"no VmRSS for {pid}")


@contextmanager
def sampled(pid: int) -> Iterator[list[int]]:
    """RSS samples of ``pid`` taken while the body runs (bounded by the body's own time)."""
    samples = [rss(pid)]
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(0.02):
            samples.append(rss(pid))

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield samples
    finally:
        stop.set()
        t.join(5)
        samples.append(rss(pid))


def check_flat(what: str, baseline: int, samples: list[int]) -> None:
    assert len(samples) >= 3, f"{what}: too few samples ({len(samples)})"
    growth = max(samples) - baseline
    assert growth < BOUND, (f"{what}: server RSS grew by {growth >> 20} MiB "
                            f"(from {baseline >> 20} MiB; bound {BOUND >> 20} MiB)")


def test_1gib_retr_and_stor_keep_server_memory_flat(
        natftp_server: Callable[..., Running], tmp_path: Path) -> None:
    srv = natftp_server()
    big = srv.root / "sparse.bin"
    with open(big, "wb") as f:
        f.truncate(SIZE)
    pid = srv.proc.pid
    try:
        with Ctl(srv.host, srv.port, timeout=60) as c:
            c.login(srv.user, srv.password)
            assert c.cmd("TYPE I").code == 200
            c.cmd("NOOP")
            baseline = rss(pid)

            data = c.epsv_data()
            assert c.cmd("RETR sparse.bin").code == 150
            got = 0
            with sampled(pid) as samples, data:
                while n := data.recv_into(CHUNK):
                    got += n
            assert c.read().code == 226
            assert got == SIZE
            check_flat("RETR", baseline, samples)

            data = c.epsv_data()
            assert c.cmd("STOR up.bin").code == 150
            with sampled(pid) as samples, data, open(big, "rb") as f:
                assert data.sendfile(f) == SIZE  # os.sendfile, waiting within the timeout
                data.shutdown(socket.SHUT_WR)
            assert c.read().code == 226
            check_flat("STOR", baseline, samples)
            assert (srv.root / "up.bin").stat().st_size == SIZE
    finally:
        big.unlink(missing_ok=True)
        (srv.root / "up.bin").unlink(missing_ok=True)
