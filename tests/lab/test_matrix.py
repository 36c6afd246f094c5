"""The matrix runner against real clients and pyftpdlib in the contest topology."""

from __future__ import annotations

from natftp.lab.launchers import pyftpdlib_launcher
from natftp.lab.matrix import ROWS, ServerConfig, run_matrix


def test_masquerade_behind_server_nat_without_helper_passive_all_green() -> None:
    res = run_matrix(["contest"], helpers=(False,),
                     servers=[ServerConfig("pyftpdlib+masq", pyftpdlib_launcher, True)])
    (col,) = res.columns
    passive = [r for r in ROWS if r.mode == "passive"]
    bad = {r.name: res.cell(r.name, col).detail for r in passive
           if not res.cell(r.name, col).ok}
    assert not bad, bad
    md = res.to_markdown()
    assert "contest:contest no helper pyftpdlib+masq" in md


def test_private_pasv_address_without_helper_fails_only_for_trusting_clients() -> None:
    res = run_matrix(["contest"], helpers=(False,),
                     servers=[ServerConfig("pyftpdlib", pyftpdlib_launcher, False)],
                     rows=[r for r in ROWS if r.name in ("curl PASV trust", "curl PASV",
                                                         "ftplib PASV trust", "curl EPSV")],
                     timeout=5)
    (col,) = res.columns
    assert not res.cell("curl PASV trust", col).ok
    assert "172.16.0.2" in res.cell("curl PASV trust", col).detail
    assert not res.cell("ftplib PASV trust", col).ok
    assert res.cell("curl PASV", col).ok
    assert res.cell("curl EPSV", col).ok
