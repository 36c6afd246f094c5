"""Explicit FTPS against pyftpdlib's TLS handler (TLS required on control and data)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from natftp.client import BlockingClient, TLSError

from support.clientpeers import Server, self_signed


@pytest.fixture
def tls_server(ftpd: Callable[..., Server], tmp_path: Path) -> tuple[Server, Path, str]:
    pem, fp = self_signed(tmp_path / "cert.pem")
    return ftpd("--tls", str(pem), "--tls-required"), pem, fp


def test_explicit_tls_with_ca_verification_transfers_over_protected_data(
        tls_server: tuple[Server, Path, str]) -> None:
    s, pem, _ = tls_server
    blob = os.urandom(300_000)
    with BlockingClient(s.url, tls="explicit", verify=str(pem)) as ftp:
        ftp.upload(blob, "secret.bin")
        assert ftp.read_bytes("secret.bin") == blob
        assert [e.name for e in ftp.list()] == ["secret.bin"]
        assert ftp.last_data_tls_reused is not None  # the data connection was TLS
    assert hashlib.sha256((s.root / "secret.bin").read_bytes()).digest() == \
        hashlib.sha256(blob).digest()


def test_data_connections_resume_the_control_tls_session(
        tls_server: tuple[Server, Path, str]) -> None:
    s, pem, _ = tls_server
    with BlockingClient(s.url.replace("ftp://", "ftpes://"), verify=str(pem)) as ftp:
        ftp.list()
        ftp.list()
        assert ftp.last_data_tls_reused is True


def test_self_signed_certificate_is_refused_by_default(
        tls_server: tuple[Server, Path, str]) -> None:
    s, _, _ = tls_server
    with pytest.raises(TLSError) as ei, BlockingClient(s.url, tls="explicit"):
        pass
    assert "certificate" in str(ei.value).lower()


def test_fingerprint_pin_accepts_the_right_certificate_only(
        tls_server: tuple[Server, Path, str]) -> None:
    s, _, fp = tls_server
    pretty = ":".join(fp[i:i + 2] for i in range(0, 64, 2)).upper()
    with BlockingClient(s.url, tls="explicit", fingerprint=pretty) as ftp:
        assert ftp.list() == []
    wrong = "0" * 64
    with pytest.raises(TLSError) as ei, BlockingClient(s.url, tls="explicit",
                                                        fingerprint=wrong):
        pass
    assert fp in str(ei.value)


def test_server_requiring_tls_refuses_plain_login(tls_server: tuple[Server, Path, str]) -> None:
    from natftp.client import ReplyError
    s, _, _ = tls_server
    with pytest.raises(ReplyError), BlockingClient(s.url):
        pass


def test_implicit_tls(ftpd: Callable[..., Server], tmp_path: Path) -> None:
    pem, fp = self_signed(tmp_path / "cert.pem")
    s = ftpd("--tls", str(pem), "--implicit")
    url = s.url.replace("ftp://", "ftps://")
    with BlockingClient(url, fingerprint=fp) as ftp:
        ftp.upload(b"implicit\n", "i.txt")
        assert ftp.read_bytes("i.txt") == b"implicit\n"
        assert ftp.last_data_tls_reused is not None
    with pytest.raises(TLSError), BlockingClient(url):
        pass  # self-signed, no pin: verification refuses it
