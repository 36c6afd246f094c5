"""Real clients against natftp serve: curl (EPSV, PASV, active), lftp, wget, aioftp."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import aioftp
import pytest

from support.servertools import Running

JAPANESE = "進捗どうですか.jpg"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: run scripts/setup-system.sh (apt-get install {name})"
    return path


def run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{cmd} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


CURL_MODES = {
    "epsv": [],
    "pasv": ["--disable-epsv"],
    "pasv-trusting": ["--disable-epsv", "--no-ftp-skip-pasv-ip"],
    "active": ["--ftp-port", "-"],
}


@pytest.mark.parametrize("mode", list(CURL_MODES))
def test_curl_upload_download_list(any_server: Running, big_file: Path, tmp_path: Path,
                                   mode: str) -> None:
    if ":" in any_server.host and mode.startswith("pasv"):
        mode_args = ["--ftp-pasv"]  # PASV is IPv4-only; curl uses EPSV on IPv6
    else:
        mode_args = CURL_MODES[mode]
    curl = [tool("curl"), "-sS", "--max-time", "60", *mode_args]
    run([*curl, "-T", str(big_file), any_server.url("dir/big.bin"),
         "--ftp-create-dirs"])
    assert sha(any_server.root / "dir" / "big.bin") == sha(big_file)
    out = tmp_path / "down.bin"
    run([*curl, "-o", str(out), any_server.url("dir/big.bin")])
    assert sha(out) == sha(big_file)
    listing = run([*curl, any_server.url("dir/")]).stdout
    assert listing.rstrip().endswith(" big.bin") and str(16 << 20) in listing
    jp = tmp_path / JAPANESE
    jp.write_bytes(b"jpeg")
    run([*curl, "-T", str(jp), any_server.url("with%20space/")
         , "--ftp-create-dirs"])
    assert (any_server.root / "with space" / JAPANESE).read_bytes() == b"jpeg"


def test_curl_resumes_a_download_and_an_upload(server: Running, big_file: Path,
                                               tmp_path: Path) -> None:
    data = big_file.read_bytes()
    (server.root / "big.bin").write_bytes(data)
    part = tmp_path / "part.bin"
    part.write_bytes(data[: 7 << 20])
    curl = [tool("curl"), "-sS", "--max-time", "60"]
    run([*curl, "-C", "-", "-o", str(part), server.url("big.bin")])
    assert sha(part) == sha(big_file)
    (server.root / "up.bin").write_bytes(data[: 3 << 20])
    run([*curl, "-C", "-", "-T", str(big_file), server.url("up.bin")])
    assert sha(server.root / "up.bin") == sha(big_file)


def test_curl_quote_commands_rename_delete_mkdir(server: Running) -> None:
    (server.root / "a.txt").write_text("a")
    curl = [tool("curl"), "-sS", "--max-time", "30"]
    run([*curl, server.url(), "-Q", "RNFR a.txt", "-Q", "RNTO b.txt", "-Q", "MKD d",
         "-Q", "DELE b.txt", "-o", "/dev/null"])
    assert not (server.root / "a.txt").exists()
    assert not (server.root / "b.txt").exists()
    assert (server.root / "d").is_dir()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
@pytest.mark.parametrize("active", [False, True], ids=["passive", "active"])
def test_lftp_put_get_ls_mirror_commands(natftp_server: Callable[..., Running],
                                         big_file: Path, tmp_path: Path, active: bool,
                                         host: str) -> None:
    any_server = natftp_server(host=host, args=["-v"])
    (any_server.root / "with space").mkdir()
    (any_server.root / "with space" / JAPANESE).write_bytes(b"jp")
    out = tmp_path / "got.bin"
    settings = (f"set ftp:passive-mode {'off' if active else 'on'}; "
                "set net:max-retries 1; set net:timeout 20; set ftp:ssl-allow no; "
                "set ftp:prefer-epsv yes; set ftp:port-ipv4 127.0.0.1; ")
    script = (f"{settings} open -u {any_server.user},'{any_server.password}' "
              f"-p {any_server.port} {any_server.url_host}; "
              f"put {big_file} -o big.bin; get big.bin -o {out}; "
              f"cls -1 'with space'; mkdir newdir; mv big.bin newdir/moved.bin; "
              f"rm newdir/moved.bin; rmdir newdir; bye")
    p = run([tool("lftp"), "-c", script], timeout=120)
    assert sha(out) == sha(big_file)
    assert JAPANESE in p.stdout
    assert not (any_server.root / "newdir").exists()
    # lftp silently falls back to passive after a refused PORT: prove which mode ran
    log = any_server.log
    if active:
        assert "<- EPRT" in log or "<- PORT" in log
        assert "<- EPSV" not in log and "<- PASV" not in log and "refused" not in log
    else:
        assert "<- EPRT" not in log and "<- PORT" not in log


def test_lftp_resumes_an_interrupted_download(server: Running, big_file: Path,
                                              tmp_path: Path) -> None:
    data = big_file.read_bytes()
    (server.root / "big.bin").write_bytes(data)
    out = tmp_path / "big.bin"
    out.write_bytes(data[:1234567])
    run([tool("lftp"), "-c", f"set ftp:ssl-allow no; open -u {server.user},"
         f"'{server.password}' -p {server.port} {server.host}; get -c big.bin -o {out}"])
    assert sha(out) == sha(big_file)


def test_wget_download_and_recursive(any_server: Running, big_file: Path,
                                     tmp_path: Path) -> None:
    (any_server.root / "tree").mkdir()
    (any_server.root / "tree" / "big.bin").write_bytes(big_file.read_bytes())
    (any_server.root / "tree" / JAPANESE).write_bytes(b"jp")
    wget = [tool("wget"), "-q", "--tries=1", "--timeout=30",
            f"--ftp-user={any_server.user}", f"--ftp-password={any_server.password}"]
    out = tmp_path / "one.bin"
    run([*wget, "-O", str(out), any_server.url("tree/big.bin", auth=False)])
    assert sha(out) == sha(big_file)
    run([*wget, "-r", "-nH", "-P", str(tmp_path / "mirror"),
         any_server.url("tree/", auth=False)])
    assert (tmp_path / "mirror" / "tree" / JAPANESE).read_bytes() == b"jp"
    assert sha(tmp_path / "mirror" / "tree" / "big.bin") == sha(big_file)


def test_wget_active_mode(server: Running, tmp_path: Path) -> None:
    (server.root / "f.txt").write_bytes(b"active!")
    out = tmp_path / "f.txt"
    run([tool("wget"), "-q", "--tries=1", "--timeout=30", "--no-passive-ftp",
         "-O", str(out), server.url("f.txt")])
    assert out.read_bytes() == b"active!"


def test_aioftp_client(any_server: Running, big_file: Path, tmp_path: Path) -> None:
    async def main() -> None:
        async with aioftp.Client.context(any_server.host, any_server.port,
                                         any_server.user, any_server.password,
                                         socket_timeout=30) as c:
            await c.make_directory("aio dir")
            await c.upload(big_file, f"aio dir/{JAPANESE}", write_into=True)
            names = {str(p.name): info for p, info in await c.list("aio dir")}
            assert names[JAPANESE]["type"] == "file"
            assert int(names[JAPANESE]["size"]) == 16 << 20
            await c.download(f"aio dir/{JAPANESE}", tmp_path / "x.bin", write_into=True)
            await c.rename(f"aio dir/{JAPANESE}", "aio dir/renamed.bin")
            assert await c.exists("aio dir/renamed.bin")
            await c.remove_file("aio dir/renamed.bin")
            await c.remove_directory("aio dir")

    asyncio.run(main())
    assert sha(tmp_path / "x.bin") == sha(big_file)
    assert not (any_server.root / "aio dir").exists()
