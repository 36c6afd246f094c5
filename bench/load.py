"""The load generator: one client, the same for every server and for the raw-TCP ceiling.

Run as a worker process by bench/run.py (pinned to the load core), one JSON object per
result on stdout::

    python bench/load.py MODE '{"host": ..., "port": ..., ...}'

Modes
- ``raw-recv`` / ``raw-send``: the ceiling's client side against ``raw-serve`` (below):
  receive into a reused buffer with ``recv_into``, or send a file with ``os.sendfile``.
- ``raw-serve``: the ceiling's server side (run on the server core): accepts one
  connection, then either sends the file (``sendfile``) or receives into a reused buffer
  and writes every byte to a file on the same disk as STOR, then answers one byte.
- ``retr`` / ``stor``: one FTP session, one binary transfer (EPSV), the same loops.
- ``small``: asyncio (uvloop) sessions, each logged in once, then EPSV + RETR of a small
  file in a loop for a fixed time; reports each transfer's latency.
- ``idle``: open and log in many sessions (ramped or burst), print READY, wait for the
  word ``probe`` on stdin, time NOOPs on random open sessions, report, close.
- ``storm``: the FTPS login storm: connections that each do AUTH TLS (a full handshake,
  no session offered) and QUIT over TLS, for a fixed time; reports how many completed.
  No USER/PASS: what is measured is the handshake, not each server's password hash
  (vsftpd's PAM login alone costs ~30 ms of its core here).

With ``"tls": true`` every FTP mode speaks FTPS as bench/servers.py's ``TLS`` sets the
servers up: AUTH TLS before USER, PBSZ 0 + PROT P, TLS 1.3 only, no certificate check
(the benchmark's own self-signed one), and every data connection resumes the control
connection's TLS session (vsftpd and ProFTPD require it). A data connection's handshake
starts after the 150, as ftplib's does (vsftpd starts TLS on it only then).

Receiving never keeps data: one preallocated buffer per process. Loops are bounded in
time (``duration``, timeouts) and count (``sessions``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import resource
import socket
import ssl
import sys
import time
from collections.abc import Callable
from typing import Any

from natftp.tls import ReuseContext  # asyncio's start_tls has no session=; see there

BUF = bytearray(1 << 20)
VIEW = memoryview(BUF)
EPSV_PORT = re.compile(rb"\(\|\|\|(\d+)\|\)")


def take_reply(buf: bytes) -> tuple[int, bytes, bytes] | None:
    """The first complete reply in ``buf`` (code, text, rest), or None. A multi-line reply
    ("DDD-" ... "DDD ") ends at the line that repeats its code followed by a space."""
    end = buf.find(b"\n")
    if end < 0:
        return None
    code = buf[:3]
    if buf[3:4] != b"-":
        return int(code), buf[:end + 1], buf[end + 1:]
    pos = end + 1
    while True:
        nxt = buf.find(b"\n", pos)
        if nxt < 0:
            return None
        if buf[pos:pos + 3] == code and buf[pos + 3:pos + 4] == b" ":
            return int(code), buf[:nxt + 1], buf[nxt + 1:]
        pos = nxt + 1


def client_context() -> ReuseContext:
    """TLS 1.3 only, no certificate check (the run's own self-signed certificate); its
    ``reuse_session``, when set, is offered by every connection it makes."""
    ctx = ReuseContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1 << 17
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


# --- the byte loops (shared by ceiling and FTP) -----------------------------------------

def recv_all(sock: socket.socket) -> int:
    """Read until EOF into the reused buffer; return the byte count."""
    got = 0
    recv_into = sock.recv_into
    while True:
        n = recv_into(BUF)
        if not n:
            return got
        got += n


def send_file(sock: socket.socket, path: str) -> int:
    """The whole file over ``sock`` with kernel sendfile."""
    sock.setblocking(True)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        offset = 0
        while offset < size:
            n = os.sendfile(sock.fileno(), f.fileno(), offset, size - offset)
            if n == 0:
                break
            offset += n
    return offset


def send_file_tls(sock: ssl.SSLSocket, path: str) -> int:
    """The whole file over a TLS socket: read into the reused buffer, encrypt, send (no
    sendfile through TLS without kTLS)."""
    sock.setblocking(True)
    fd = os.open(path, os.O_RDONLY)
    sent = 0
    try:
        while True:
            n = os.preadv(fd, [BUF], sent)
            if not n:
                return sent
            sock.sendall(VIEW[:n])
            sent += n
    finally:
        os.close(fd)


def recv_to_file(sock: socket.socket, path: str) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    got = 0
    try:
        while True:
            n = sock.recv_into(BUF)
            if not n:
                return got
            view = VIEW[:n]
            while view:
                w = os.write(fd, view)
                view = view[w:]
            got += n
    finally:
        os.close(fd)


# --- ceiling ----------------------------------------------------------------------------

def raw_serve(a: dict[str, Any]) -> None:
    """Server side of the ceiling: listen, print the port, serve ``a['count']`` connections."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a["host"], 0))
    ls.listen(8)
    emit({"port": ls.getsockname()[1]})
    ls.settimeout(120)
    for _ in range(int(a["count"])):
        conn, _ = ls.accept()
        with conn:
            if a["role"] == "send":
                send_file(conn, a["file"])
                conn.shutdown(socket.SHUT_WR)
                conn.recv(1)  # the client closes after EOF
            else:
                recv_to_file(conn, a["file"])
                conn.sendall(b"k")  # written: like a 226 after the file is closed
    ls.close()


def raw_client(a: dict[str, Any], send: bool) -> None:
    s = socket.create_connection((a["host"], a["port"]), timeout=120)
    with s:
        t0 = time.perf_counter()
        if send:
            n = send_file(s, a["file"])
            s.shutdown(socket.SHUT_WR)
            s.settimeout(120)
            s.recv(1)
        else:
            n = recv_all(s)
        secs = time.perf_counter() - t0
    emit({"bytes": n, "seconds": secs})


# --- FTP, blocking (single stream) ------------------------------------------------------

class Ctl:
    """A blocking control connection; FTPS (AUTH TLS, then PROT P at login) if ``tls``."""

    def __init__(self, host: str, port: int, timeout: float = 60,
                 tls: bool = False) -> None:
        self.sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.host = host
        self.tls = client_context() if tls else None
        self.reused: bool | None = None  # PROT P: the last data connection resumed
        self.expect(220)
        if self.tls is not None:
            self.expect(234, line="AUTH TLS")
            self.sock = self.tls.wrap_socket(self.sock)

    def read(self) -> tuple[int, bytes]:
        while True:
            r = take_reply(self.buf)
            if r is not None:
                code, text, self.buf = r
                return code, text
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"control connection closed; got {self.buf!r}")
            self.buf += chunk

    def cmd(self, line: str) -> tuple[int, bytes]:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.read()

    def expect(self, *codes: int, line: str | None = None) -> bytes:
        code, text = self.cmd(line) if line is not None else self.read()
        if code not in codes:
            raise RuntimeError(f"{line!r}: expected {codes}, got {text!r}")
        return text

    def login(self, user: str, password: str) -> None:
        code, text = self.cmd(f"USER {user}")
        if code == 331:
            self.expect(230, line=f"PASS {password}")
        elif code != 230:
            raise RuntimeError(f"USER: {text!r}")
        if self.tls is not None:
            self.expect(200, line="PBSZ 0")
            self.expect(200, line="PROT P")
        self.expect(200, line="TYPE I")

    def epsv(self) -> socket.socket:
        text = self.expect(229, line="EPSV")
        m = EPSV_PORT.search(text)
        assert m is not None, text
        return socket.create_connection((self.host, int(m.group(1))), timeout=60)

    def secure(self, data: socket.socket) -> socket.socket:
        """PROT P: TLS on a data connection (after the 150), offering the control
        connection's session (whether the server resumed it is in ``reused``: Pure-FTPd
        does not, and does not ask for it); the clear socket as it is otherwise."""
        if self.tls is None:
            return data
        assert isinstance(self.sock, ssl.SSLSocket)
        tls = self.tls.wrap_socket(data, session=self.sock.session)
        self.reused = tls.session_reused
        return tls


def ftp_transfer(a: dict[str, Any], upload: bool) -> None:
    c = Ctl(a["host"], a["port"], tls=bool(a.get("tls")))
    c.login(a["user"], a["password"])
    data = c.epsv()
    t0 = time.perf_counter()
    if upload:
        c.expect(150, 125, line=f"STOR {a['name']}")
        data = c.secure(data)
        if isinstance(data, ssl.SSLSocket):
            n = send_file_tls(data, a["file"])
            data = data.unwrap()  # close_notify: the end of the upload
        else:
            n = send_file(data, a["file"])
        data.close()
    else:
        c.expect(150, 125, line=f"RETR {a['name']}")
        data = c.secure(data)
        n = recv_all(data)
        data.close()
    c.expect(226, 250)
    secs = time.perf_counter() - t0
    version = c.sock.version() if isinstance(c.sock, ssl.SSLSocket) else None
    c.cmd("QUIT")
    c.sock.close()
    emit({"bytes": n, "seconds": secs, "tls": version, "reused": c.reused})


# --- FTP, asyncio (many sessions) -------------------------------------------------------

class Control(asyncio.Protocol):
    """A control connection whose replies resolve futures, one command at a time."""

    def __init__(self) -> None:
        self.buf = b""
        self.waiting: asyncio.Future[tuple[int, bytes]] | None = None
        self.replies: list[tuple[int, bytes]] = []
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            r = take_reply(self.buf)
            if r is None:
                return
            code, text, self.buf = r
            self.replies.append((code, text))
            self._deliver()

    def _deliver(self) -> None:
        if self.waiting is not None and not self.waiting.done() and self.replies:
            self.waiting.set_result(self.replies.pop(0))
            self.waiting = None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_exception(ConnectionError("control connection lost"))

    def reply(self) -> asyncio.Future[tuple[int, bytes]]:
        fut: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        if self.transport is None or self.transport.is_closing():
            if self.replies:
                fut.set_result(self.replies.pop(0))
            else:
                fut.set_exception(ConnectionError("control connection closed"))
            return fut
        self.waiting = fut
        self._deliver()
        return fut

    async def cmd(self, line: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.transport.write(line)
        return await self.reply()


class Sink(asyncio.BufferedProtocol):
    """A data connection read into the process's one buffer; done at EOF."""

    def __init__(self) -> None:
        self.got = 0
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint: int) -> memoryview:
        return VIEW

    def buffer_updated(self, nbytes: int) -> None:
        self.got += nbytes

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.got)


async def start_tls(loop: asyncio.AbstractEventLoop, ctl: Control,
                    ctx: ssl.SSLContext) -> None:
    """AUTH TLS on a control connection: the handshake, then the same protocol on top."""
    code, text = await ctl.cmd(b"AUTH TLS\r\n")
    if code != 234:
        raise RuntimeError(f"AUTH TLS: {text!r}")
    assert ctl.transport is not None
    tr = await loop.start_tls(ctl.transport, ctl, ctx)
    assert tr is not None
    ctl.transport = tr  # type: ignore[assignment]


async def login(loop: asyncio.AbstractEventLoop, a: dict[str, Any],
                timeout: float, tls: ssl.SSLContext | None = None) -> Control:
    """Connect and log in; with ``tls`` (a client context), AUTH TLS first and PBSZ 0 +
    PROT P after."""
    async def go() -> Control:
        _, ctl = await loop.create_connection(Control, a["host"], a["port"])
        code, text = await ctl.reply()
        if code != 220:
            raise RuntimeError(f"banner {text!r}")
        if tls is not None:
            await start_tls(loop, ctl, tls)
        code, text = await ctl.cmd(f"USER {a['user']}\r\n".encode())
        if code == 331:
            code, text = await ctl.cmd(f"PASS {a['password']}\r\n".encode())
        if code != 230:
            raise RuntimeError(f"login: {text!r}")
        if tls is not None:
            for line in (b"PBSZ 0\r\n", b"PROT P\r\n"):
                code, text = await ctl.cmd(line)
                if code != 200:
                    raise RuntimeError(f"{line.strip().decode()}: {text!r}")
        return ctl

    return await asyncio.wait_for(go(), timeout)


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def small(a: dict[str, Any]) -> None:
    loop = new_loop()
    asyncio.set_event_loop(loop)
    lat: list[float] = []
    errors: list[str] = []
    retr = f"RETR {a['name']}\r\n".encode()
    size = int(a["size"])

    ready = [0]

    # logins are ramped (a few in flight): this benchmark is about transfers; the
    # connection storm is the sessions benchmark's burst start
    gate = asyncio.Semaphore(8)

    async def session(start: asyncio.Event, stop_at: list[float]) -> None:
        tls = client_context() if a.get("tls") else None
        try:
            async with gate:
                ctl = await login(loop, a, 60, tls)
                code, text = await ctl.cmd(b"TYPE I\r\n")
                if tls is not None:  # data connections resume the control session
                    assert ctl.transport is not None
                    tls.reuse_session = ctl.transport.get_extra_info("ssl_object").session
        except Exception as e:  # noqa: BLE001 - counted and reported
            errors.append(f"login: {e!r}"[:200])
            return
        finally:
            ready[0] += 1
        await start.wait()
        perf = time.perf_counter
        while perf() < stop_at[0]:
            t0 = perf()
            try:
                code, text = await ctl.cmd(b"EPSV\r\n")
                if code != 229:
                    raise RuntimeError(f"EPSV: {text!r}")
                m = EPSV_PORT.search(text)
                assert m is not None
                dtr, sink = await loop.create_connection(Sink, a["host"], int(m.group(1)))
                code, text = await ctl.cmd(retr)
                if code not in (125, 150):
                    raise RuntimeError(f"RETR: {text!r}")
                if tls is not None:
                    await loop.start_tls(dtr, sink, tls)
                code, text = await ctl.reply()
                got = await sink.done
                if code != 226 or got != size:
                    raise RuntimeError(f"RETR end: {text!r}, {got} bytes")
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors.append(repr(e)[:200])
                if ctl.transport is None or ctl.transport.is_closing():
                    return
                await asyncio.sleep(0.05)
                continue
            lat.append(perf() - t0)
        if ctl.transport is not None:
            ctl.transport.close()

    async def main() -> dict[str, Any]:
        start = asyncio.Event()
        stop_at = [0.0]
        tasks = [loop.create_task(session(start, stop_at)) for _ in range(int(a["sessions"]))]
        await asyncio.sleep(0)
        # every session logged in (or failed) before the clock starts
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and ready[0] < len(tasks):
            await asyncio.sleep(0.02)
        c0 = cpu_seconds()
        t0 = time.perf_counter()
        stop_at[0] = t0 + float(a["duration"])
        start.set()
        await asyncio.wait(tasks, timeout=float(a["duration"]) + 30)
        secs = time.perf_counter() - t0
        return {"transfers": len(lat), "seconds": secs, "errors": len(errors),
                "error_samples": errors[:3], "latencies": lat,
                "cpu": cpu_seconds() - c0}

    emit(loop.run_until_complete(main()))
    loop.close()


def idle(a: dict[str, Any]) -> None:
    raise_nofile()
    loop = new_loop()
    asyncio.set_event_loop(loop)
    n = int(a["sessions"])
    ramp = a["start"] == "ramped"
    timeout = float(a.get("login_timeout", 30))

    tls = client_context() if a.get("tls") else None

    async def main() -> None:
        sem = asyncio.Semaphore(int(a.get("ramp_concurrency", 16)) if ramp else n)
        errors: list[str] = []
        ctls: list[Control] = []
        skipped = [0]
        budget_end = time.monotonic() + float(a.get("open_budget", 150))

        async def one() -> None:
            async with sem:
                if time.monotonic() > budget_end:  # bounded: report what opened in time
                    skipped[0] += 1
                    return
                try:
                    ctls.append(await login(loop, a, timeout, tls))
                except Exception as e:  # noqa: BLE001 - counted and reported
                    errors.append((type(e).__name__ + ": " + str(e))[:160])

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        opened = time.perf_counter() - t0
        emit({"ready": True, "open": len(ctls), "failed": len(errors),
              "skipped": skipped[0],
              "error_samples": sorted(set(errors))[:4], "open_seconds": opened})
        line = await loop.run_in_executor(None, sys.stdin.readline)
        rtts: list[float] = []
        lost = 0
        if line.strip() == "probe" and ctls:
            end = time.monotonic() + float(a.get("probe_seconds", 10))
            for _ in range(int(a.get("probes", 300))):
                if time.monotonic() > end:
                    break
                c = random.choice(ctls)
                t = time.perf_counter()
                try:
                    code, _ = await asyncio.wait_for(c.cmd(b"NOOP\r\n"), 10)
                except Exception:  # noqa: BLE001 - counted and reported
                    lost += 1
                    continue
                if code == 200:
                    rtts.append(time.perf_counter() - t)
                else:
                    lost += 1
            still = sum(1 for c in ctls if c.transport is not None
                        and not c.transport.is_closing())
        else:
            still = len(ctls)
        for c in ctls:
            if c.transport is not None:
                c.transport.close()
        await asyncio.sleep(0.1)
        emit({"rtts": rtts, "probe_failed": lost, "still_open": still})

    loop.run_until_complete(main())
    loop.close()


def storm(a: dict[str, Any]) -> None:
    """``concurrency`` loops, each: connect, 220, AUTH TLS (a full handshake: no session
    is offered), QUIT and its 221 over TLS, close; for ``duration`` seconds."""
    loop = new_loop()
    asyncio.set_event_loop(loop)
    ctx = client_context()
    done: list[float] = []
    errors: list[str] = []
    versions: set[str] = set()

    async def handshake() -> Control:
        _, ctl = await loop.create_connection(Control, a["host"], a["port"])
        code, text = await ctl.reply()
        if code != 220:
            raise RuntimeError(f"banner {text!r}")
        await start_tls(loop, ctl, ctx)
        return ctl

    async def one(stop_at: float) -> None:
        perf = time.perf_counter
        while perf() < stop_at:
            t0 = perf()
            try:
                ctl = await asyncio.wait_for(handshake(), 30)
                assert ctl.transport is not None
                versions.add(ctl.transport.get_extra_info("ssl_object").version())
                code, text = await asyncio.wait_for(ctl.cmd(b"QUIT\r\n"), 30)
                ctl.transport.close()
                if code != 221:
                    raise RuntimeError(f"QUIT: {text!r}")
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors.append(repr(e)[:200])
                await asyncio.sleep(0.05)
                continue
            done.append(perf() - t0)

    async def main() -> dict[str, Any]:
        c0, t0 = cpu_seconds(), time.perf_counter()
        stop_at = t0 + float(a["duration"])
        await asyncio.wait([loop.create_task(one(stop_at))
                            for _ in range(int(a["concurrency"]))],
                           timeout=float(a["duration"]) + 60)
        return {"logins": len(done), "seconds": time.perf_counter() - t0,
                "errors": len(errors), "error_samples": errors[:3], "latencies": done,
                "cpu": cpu_seconds() - c0, "tls": sorted(versions)}

    emit(loop.run_until_complete(main()))
    loop.close()


MODES: dict[str, Callable[[dict[str, Any]], None]] = {
    "raw-serve": raw_serve,
    "raw-recv": lambda a: raw_client(a, send=False),
    "raw-send": lambda a: raw_client(a, send=True),
    "retr": lambda a: ftp_transfer(a, upload=False),
    "stor": lambda a: ftp_transfer(a, upload=True),
    "small": small,
    "idle": idle,
    "storm": storm,
}

if __name__ == "__main__":
    MODES[sys.argv[1]](json.loads(sys.argv[2]))
