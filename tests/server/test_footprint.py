"""Issue 22, item 4: an idle `natftp serve` holds only what its configuration uses.

The figure (PSS of an idle server) is in bench/ (`bench/run.py --bench footprint`);
these tests pin the mechanism: what a configuration does not use is not loaded.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from natftp.client import BlockingClient

from support.servertools import Running

HEAVY_DISCOVERY = ("aiohttp", "async_upnp_client")


def loaded_after(code: str) -> set[str]:
    p = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\n"
                        "print('\\n'.join(sys.modules))"],
                       capture_output=True, text=True, timeout=120, check=True)
    return set(p.stdout.split())


def test_the_server_and_discovery_modules_load_no_http_client() -> None:
    """UPnP (async-upnp-client) and the cloud metadata queries (aiohttp) are imported
    by the first search or query, not with the server (~15 MiB, ~0.2 s)."""
    mods = loaded_after("import natftp.server.app, natftp.server.zeroconf, "
                        "natftp.nat.discovery")
    assert "natftp.nat.discovery.upnp" in mods and "natftp.nat.discovery.metadata" in mods
    assert not {m.split(".")[0] for m in mods} & set(HEAVY_DISCOVERY)


def test_a_discovery_loads_the_http_client_when_it_runs() -> None:
    """The other side: a metadata query really runs aiohttp (against a closed port on
    loopback: refused at once), so the lazy import is the one in use."""
    code = ("import asyncio\n"
            "from natftp.nat.discovery import metadata\n"
            "try:\n"
            "    asyncio.run(metadata.query(2.0, '127.0.0.1:1', ('aws',)))\n"
            "except Exception:\n"
            "    pass\n")
    assert "aiohttp" in loaded_after(code)


def test_a_running_server_holds_neither_the_command_line_stack_nor_its_password(
        natftp_server: Callable[..., Running]) -> None:
    """`natftp serve` builds its configuration with typer (click, rich, pydantic) and
    then becomes `python -m natftp.server.run` in the same process (exec): the PID
    stays, the server answers, and none of typer's stack or the HTTP client is mapped.
    Its command line no longer shows `--user NAME:PASSWORD` either."""
    r = natftp_server()
    pid = r.proc.pid
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"natftp.server.run" in cmdline, cmdline
    assert not any(r.password.encode() in arg for arg in cmdline), cmdline
    maps = Path(f"/proc/{pid}/maps").read_text()
    for lib in ("pydantic_core", "aiohttp", "yarl", "multidict"):
        assert f"/{lib}/" not in maps, lib
    with BlockingClient(f"ftp://{r.user}:{r.password.replace(' ', '%20')}@127.0.0.1:"
                        f"{r.port}/") as c:
        assert c.list("") == []
    assert r.stop() == 0
    assert "natftp: stopped" in r.log
