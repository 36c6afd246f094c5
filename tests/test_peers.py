"""The real-peer fixtures work: each server logs in, stores, lists and returns a file over
passive mode with ftplib, advertises the masquerade address, and honours its options."""

from __future__ import annotations

import ftplib
import io
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from support.peers import KINDS, Peer

MASQUERADE = "127.0.0.2"


def _login(peer: Peer) -> ftplib.FTP:
    ftp = ftplib.FTP(timeout=15)
    ftp.connect(peer.host, peer.port)
    ftp.login(peer.user, peer.password)
    return ftp


def _pasv_address(ftp: ftplib.FTP) -> tuple[str, int]:
    reply = ftp.sendcmd("PASV")
    m = re.search(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", reply)
    assert reply.startswith("227") and m, reply
    n = [int(x) for x in m.groups()]
    return ".".join(map(str, n[:4])), n[4] * 256 + n[5]


def test_upload_list_download_round_trip(ftp_peer: Peer) -> None:
    blob = os.urandom(200_000) + "natftp ✓\n".encode()
    with _login(ftp_peer) as ftp:
        ftp.storbinary("STOR peer-check.bin", io.BytesIO(blob))
        assert "peer-check.bin" in ftp.nlst()
        lines: list[str] = []
        ftp.retrlines("LIST", lines.append)
        assert any(line.endswith("peer-check.bin") for line in lines), lines
        got = io.BytesIO()
        ftp.retrbinary("RETR peer-check.bin", got.write)
    assert got.getvalue() == blob
    assert (ftp_peer.root / "peer-check.bin").read_bytes() == blob
    assert ftp_peer.pid > 0 and ftp_peer.log.parent.is_dir()


@pytest.mark.parametrize("kind", KINDS)
def test_masquerade_address_is_in_227(kind: str, make_peer: Callable[..., Peer]) -> None:
    peer = make_peer(kind, masquerade=MASQUERADE)
    with _login(peer) as ftp:
        host, port = _pasv_address(ftp)
    assert host == MASQUERADE
    assert peer.passive_ports[0] <= port <= peer.passive_ports[1]


@pytest.mark.parametrize("kind", KINDS)
def test_passive_range_without_masquerade(kind: str, make_peer: Callable[..., Peer]) -> None:
    peer = make_peer(kind)
    with _login(peer) as ftp:
        host, port = _pasv_address(ftp)
        epsv = ftp.sendcmd("EPSV")
    assert host == "127.0.0.1"
    assert peer.passive_ports[0] <= port <= peer.passive_ports[1]
    m = re.search(r"\(\|\|\|(\d+)\|\)", epsv)
    assert epsv.startswith("229") and m, epsv
    assert peer.passive_ports[0] <= int(m.group(1)) <= peer.passive_ports[1]


def _refused(ftp: ftplib.FTP, cmd: str) -> str:
    with pytest.raises(ftplib.error_perm) as ei:
        ftp.sendcmd(cmd)
    return str(ei.value)


@pytest.mark.parametrize("kind", ["pyftpdlib", "proftpd", "pure-ftpd"])
def test_epsv_off_keeps_pasv(kind: str, make_peer: Callable[..., Peer]) -> None:
    peer = make_peer(kind, epsv=False)
    with _login(peer) as ftp:
        assert _refused(ftp, "EPSV")[:1] == "5"
        assert _pasv_address(ftp)[0] == "127.0.0.1"


@pytest.mark.parametrize("kind", KINDS)
def test_pasv_off(kind: str, make_peer: Callable[..., Peer]) -> None:
    # vsftpd and Pure-FTPd can only turn off both passive commands at once
    peer = make_peer(kind, pasv=False, epsv=kind not in ("vsftpd", "pure-ftpd"))
    with _login(peer) as ftp:
        assert _refused(ftp, "PASV")[:1] == "5"
        if kind in ("vsftpd", "pure-ftpd"):
            assert _refused(ftp, "EPSV")[:1] == "5"
        else:
            assert ftp.sendcmd("EPSV").startswith("229")


def test_vsftpd_cannot_refuse_epsv_alone() -> None:
    from support.peers import vsftpd

    with pytest.raises(ValueError, match="EPSV"), vsftpd(epsv=False):
        pass


@pytest.mark.parametrize("kind", KINDS)
def test_write_off_refuses_store(kind: str, make_peer: Callable[..., Peer]) -> None:
    peer = make_peer(kind, write=False)
    (peer.root / "there.txt").write_text("there\n")
    with _login(peer) as ftp:
        with pytest.raises(ftplib.error_perm):
            ftp.storbinary("STOR nope.txt", io.BytesIO(b"nope"))
        got = io.BytesIO()
        ftp.retrbinary("RETR there.txt", got.write)
    assert got.getvalue() == b"there\n"
    assert not (peer.root / "nope.txt").exists()


def test_vsftpd_listen_ipv6_takes_ipv4_mapped(make_peer: Callable[..., Peer]) -> None:
    peer = make_peer("vsftpd", listen_ipv6=True)
    with _login(peer) as ftp:
        assert ftp.nlst() == []


def test_server_is_gone_after_exit(tmp_path: Path) -> None:
    from support.peers import peer_server, read_banner

    with peer_server("pyftpdlib", root=tmp_path) as peer:
        assert read_banner(peer.host, peer.port).startswith("220")
        pid = peer.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(OSError):
        read_banner(peer.host, peer.port, timeout=1)
