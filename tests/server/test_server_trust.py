"""Issue 14, server side: secrets never printed, a hash argon2 cannot read is an error at
start, ``serve`` says what it shares, a masquerade name that resolves nowhere stops it,
a missing certificate is named, and ``--explain`` on loopback does not ask for a
masquerade address. Real ``natftp serve`` processes; exit codes and messages exact."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError

from natftp.server import config as cfgmod
from natftp.server.app import Server
from natftp.server.config import ConfigError, from_dict

from support.servertools import PASSWORD, USER, Running

REPO = Path(__file__).resolve().parents[2]
NATFTP = [sys.executable, "-m", "natftp"]
HASH = PasswordHasher().hash("pw")
PLACEHOLDER = "$argon2id$v=19$m=65536,t=3,p=4$..."  # docs/server.md's example on main


def serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A ``natftp serve`` expected to refuse to start."""
    return subprocess.run([*NATFTP, "serve", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


# -- 5: no password in an error ---------------------------------------------------------

def test_plain_password_in_the_file_is_masked_and_points_to_natftp_passwd(
        tmp_path: Path) -> None:
    cfg = tmp_path / "natftp.toml"
    cfg.write_text('[[users]]\nname = "alice"\npassword = "s3cret"\n')
    p = serve(str(tmp_path), "--listen", "127.0.0.1:0", "--config", str(cfg))
    assert p.returncode == 2
    assert p.stderr == (
        "natftp serve: configuration error: users[0].password = ****: plain passwords are "
        "not accepted in the file; fix: run `natftp passwd`, write its output as "
        "users[0].password_hash and remove users[0].password\n")
    assert "s3cret" not in p.stdout + p.stderr


def test_user_flag_without_a_name_does_not_echo_its_password(tmp_path: Path) -> None:
    p = serve(str(tmp_path), "--listen", "127.0.0.1:0", "--user", ":s3cret")
    assert p.returncode == 2
    assert p.stderr == ('natftp serve: configuration error: --user = ":****": not '
                        "NAME:PASSWORD; fix: write --user alice:secret\n")


def test_a_stray_natftp_password_variable_is_not_echoed(tmp_path: Path) -> None:
    """NATFTP_* variables configure serve (issue 18); one that names no setting is an
    error naming it, and a password kept there for another tool is not printed."""
    p = subprocess.run([*NATFTP, "serve", str(tmp_path), "--listen", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                       env={**os.environ, "NATFTP_PASSWORD": "s3cret"})
    assert p.returncode == 2
    assert p.stderr.startswith("natftp serve: configuration error: NATFTP_PASSWORD = ****: ")
    assert "s3cret" not in p.stdout + p.stderr


@pytest.mark.parametrize("value", ["hunter2 is my password", 12345, HASH[:-4] + "!!!!"])
def test_password_hash_errors_never_show_a_password_salt_or_digest(
        tmp_path: Path, value: object) -> None:
    """A plain password pasted as password_hash, a wrong type, a cut-off hash: the error
    shows the argon2 parameters at most (main printed the first 12 characters)."""
    with pytest.raises(ConfigError) as ei:
        from_dict({"root": str(tmp_path),
                   "users": [{"name": "alice", "password_hash": value}]})
    msg = str(ei.value)
    assert msg.startswith("users[0].password_hash = ")
    assert "hunter2" not in msg and "12345" not in msg
    salt, digest = HASH.split("$")[4:6]
    assert salt not in msg and digest[:10] not in msg


# -- 6: a hash argon2 cannot read stops the server ---------------------------------------

def test_placeholder_hash_stops_the_server_naming_user_and_fix(tmp_path: Path) -> None:
    cfg = tmp_path / "natftp.toml"
    cfg.write_text(f'[[users]]\nname = "alice"\npassword_hash = "{PLACEHOLDER}"\n')
    p = serve(str(tmp_path), "--listen", "127.0.0.1:0", "--config", str(cfg))
    assert p.returncode == 2, p.stdout
    assert p.stderr == (
        'natftp serve: configuration error: users[0].password_hash = '
        '"$argon2id$v=19$m=65536,t=3,p=4$****": argon2 cannot read this hash (not '
        "$argon2id$v=19$m=...,t=...,p=...$SALT$DIGEST): a placeholder or a cut-off copy, "
        'with which user "alice" could never log in; fix: run `natftp passwd` and paste '
        "its whole output as users[0].password_hash\n")
    assert "listening" not in p.stdout


@pytest.mark.parametrize("bad", [
    PLACEHOLDER,
    "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$...",  # good salt, no digest
    HASH[:HASH.rindex("$")],                                # cut before the digest
    HASH[:-2],                                              # cut inside the digest
    HASH[:-4] + "!!!!",                                     # damaged digest
    HASH.replace("m=65536", "m=lots"),                      # damaged parameters
    "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$" + HASH.split("$")[5],  # 4-byte salt
])
def test_hashes_argon2_cannot_read_are_refused_in_process(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError) as ei:
        from_dict({"root": str(tmp_path), "users": [{"name": "bob", "password_hash": bad}]})
    assert ei.value.key == "users[0].password_hash"
    assert 'user "bob" could never log in' in str(ei.value)
    assert "natftp passwd" in ei.value.fix


@pytest.mark.parametrize("good", [
    HASH,
    PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, hash_len=16,
                   salt_len=8).hash("pw"),
    # argon2i, as other tools (and older natftp configurations) write it
    "$argon2i$v=19$m=4096,t=3,p=1$c29tZXNhbHQ$iWh06vD8Fy27wf9npn6FXWiCX4K6pW6Ue1Bnzz07Z8A",
])
def test_real_hashes_of_any_parameters_are_accepted(tmp_path: Path, good: str) -> None:
    cfg = from_dict({"root": str(tmp_path),
                     "users": [{"name": "bob", "password_hash": good}]})
    u = cfg.user("bob")
    assert u is not None and u.password_hash == good


def test_a_user_with_a_good_hash_logs_in(natftp_server: Callable[..., Running]) -> None:
    """The check must not refuse what argon2 verifies: the server starts and the
    password of the hash logs in (and a wrong one does not)."""
    from support.ftpraw import Ctl

    h = PasswordHasher().hash(PASSWORD)
    r = natftp_server(users=False, config=f'[[users]]\nname = "{USER}"\n'
                                          f'password_hash = "{h}"\n')
    with Ctl(r.host, r.port) as c:
        assert c.cmd(f"USER {USER}").code == 331
        assert c.cmd(f"PASS {PASSWORD}").code == 230


def test_the_password_hash_in_the_docs_example_is_a_real_hash() -> None:
    """docs/server.md's example configuration: its hash is the one of the password it
    names ("change me"), so the example starts a server someone can log in to (on main
    it was the placeholder ``$argon2id$v=19$m=65536,t=3,p=4$...``)."""
    text = (REPO / "docs" / "server.md").read_text()
    example = text[text.index("## Example"):]
    example = example[:example.index("\n```\n", example.index("```toml"))]
    found = re.findall(r'password_hash = "([^"]*)"', example)
    assert len(found) == 1
    try:
        assert PasswordHasher().verify(found[0], "change me")
    except InvalidHashError:
        pytest.fail(f"argon2 cannot read the documented hash {found[0]!r}")


# -- 9: what is shared, and the URL's scheme ---------------------------------------------

def _startup(r: Running) -> list[str]:
    deadline = time.monotonic() + 20
    while "natftp: ftp" not in r.log and time.monotonic() < deadline:
        time.sleep(0.05)
    return r.log.splitlines()


def test_serve_says_what_it_shares_without_tls(natftp_server: Callable[..., Running]
                                               ) -> None:
    r = natftp_server(users=False)
    lines = _startup(r)
    assert f"natftp: sharing {r.root}, writable; anonymous logins off" in lines
    assert ("natftp: TLS off: logins and files cross the network in the clear (--tls to "
            "offer FTPS)") in lines
    assert any(re.fullmatch(rf"natftp: ftp://natftp:\S+@127\.0\.0\.1:{r.port}/", ln)
               for ln in lines), lines


def test_serve_with_tls_prints_an_ftpes_url_and_says_logins_may_be_clear(
        natftp_server: Callable[..., Running], tmp_path: Path) -> None:
    r = natftp_server(args=["--tls", "--state-dir", str(tmp_path / "state"), "--anonymous",
                            "--read-only"])
    lines = _startup(r)
    assert (f"natftp: sharing {r.root}, read-only (read_only = true / --read-only); "
            "anonymous logins on (read-only, for anyone who can connect)") in lines
    assert ("natftp: TLS offered (AUTH TLS), not required: logins may still come in the "
            "clear; --tls-required control refuses them") in lines
    url = f"ftpes://127.0.0.1:{r.port}/"
    assert f"natftp: {url}" in lines
    (r.root / "shared.txt").write_text("x")
    # the printed URL is one a client can use as it is: TLS, and the anonymous login
    p = subprocess.run([*NATFTP, "ls", url, "--cacert", str(tmp_path / "state" /
                                                             "server-cert.pem")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "shared.txt" in p.stdout, p.stderr
    # and it is TLS: without the certificate the same URL is refused (self-signed)
    p = subprocess.run([*NATFTP, "ls", url], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "shared.txt" not in p.stdout


def test_serve_with_tls_required_says_so(natftp_server: Callable[..., Running],
                                         tmp_path: Path) -> None:
    r = natftp_server(args=["--tls", "--state-dir", str(tmp_path / "state"),
                            "--tls-required", "control"])
    lines = _startup(r)
    assert f"natftp: sharing {r.root}, writable; anonymous logins off" in lines
    assert ("natftp: TLS required for logins: AUTH TLS before USER (tls.required = "
            "control); files may still cross in the clear (PROT C)") in lines
    assert not any("in the clear;" in ln for ln in lines)


# -- 10: a masquerade name that resolves nowhere; a missing certificate -----------------

def _in_own_netns(*args: str) -> list[str]:
    """``natftp serve ARGS`` in a network namespace of its own (``unshare -n``, gone when
    the process ends) with only loopback: a lookup of a name not in /etc/hosts fails
    there at once, and no DNS query leaves this machine."""
    cmd = " ".join(["exec", *NATFTP, "serve", *args])
    return ["unshare", "-n", "sh", "-c", f"ip link set lo up && {cmd}"]


@pytest.mark.parametrize(("value", "fix"), [
    ("yes", 'did you mean "auto" (discover the public address)? Else give the public IP '
            'address or a hostname that resolves, or "off"'),
    ("ftp.example.invalid", 'give the public IP address or a hostname that resolves, '
                            '"auto" to discover the address, or "off"'),
])
def test_masquerade_name_that_does_not_resolve_stops_serve_and_explain(
        tmp_path: Path, value: str, fix: str) -> None:
    for extra in ([], ["--explain"]):
        p = subprocess.run(_in_own_netns(str(tmp_path), "--listen", "127.0.0.1:0",
                                         "--masquerade", value, *extra),
                           capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        assert p.returncode == 2, (extra, p.stdout, p.stderr)
        assert p.stderr == (
            f'natftp serve: configuration error: nat.masquerade (--masquerade) = "{value}": '
            "the hostname does not resolve (Temporary failure in name resolution); clients "
            f"outside would be sent nowhere; fix: {fix}\n"), extra
        assert "listening" not in p.stdout


@pytest.mark.parametrize("value", ["localhost", "auto", "off"])
def test_masquerade_that_resolves_auto_and_off_still_start(tmp_path: Path, value: str
                                                           ) -> None:
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(_in_own_netns(str(tmp_path), "--listen", "127.0.0.1:0",
                                              "--masquerade", value),
                                stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while "natftp: ftp://" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)
        assert "natftp: ftp://" in log.read_text(), log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)  # sh exec'd natftp: this PID is the server
        rc = proc.wait(60)  # generous: discovery (auto) may be under way, on a loaded box
    assert rc == 0 and "natftp: stopped" in log.read_text()


def test_masquerade_lookup_failure_at_start_is_a_config_error_in_process(tmp_path: Path
                                                                          ) -> None:
    async def nowhere(host: str) -> list:  # type: ignore[type-arg]
        raise OSError(-2, "Name or service not known")

    async def empty(host: str) -> list:  # type: ignore[type-arg]
        return []

    async def main() -> list[str]:
        cfg = cfgmod.from_dict({"root": str(tmp_path), "listen": ["127.0.0.1:0"],
                                "nat": {"masquerade": "ftp.example.net"}})
        errors = []
        for fake in (nowhere, empty):
            srv = Server(cfg, resolve=fake)
            try:
                await srv.start()
            except ConfigError as e:
                assert srv.bound == []  # refused before binding anything
                errors.append(str(e))
            else:
                await srv.stop()
                errors.append("started")
        return errors

    errors = asyncio.run(main())
    assert errors[0].startswith('nat.masquerade (--masquerade) = "ftp.example.net": the '
                                "hostname does not resolve (Name or service not known)")
    assert "(no usable address in the answer)" in errors[1]


def test_missing_certificate_and_key_are_named_by_their_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "cert.pem"
    p = serve(str(tmp_path), "--listen", "127.0.0.1:0", "--tls-cert", str(missing))
    assert p.returncode == 2
    assert p.stderr == (f'natftp serve: configuration error: tls.cert (--tls-cert) = '
                        f'"{missing}": cannot read it (No such file or directory); fix: '
                        "give the path of a readable PEM certificate\n")
    from natftp.server.tls import CertStore  # a real certificate, to miss only the key

    state = tmp_path / "state"
    cfg = from_dict({"root": str(tmp_path), "tls": {"enabled": True,
                                                    "state_dir": str(state)}})
    store = CertStore(cfg.tls)
    store.load()
    store.close()
    key = tmp_path / "gone-key.pem"
    p = serve(str(tmp_path), "--listen", "127.0.0.1:0", "--tls-cert",
              str(state / "server-cert.pem"), "--tls-key", str(key))
    assert p.returncode == 2
    assert p.stderr == (f'natftp serve: configuration error: tls.key (--tls-key) = '
                        f'"{key}": cannot read it (No such file or directory); fix: give '
                        "the path of a readable PEM private key\n")


# -- 12: --explain on loopback ------------------------------------------------------------

def test_explain_on_a_loopback_listen_says_who_cannot_connect_not_to_set_masquerade(
        tmp_path: Path) -> None:
    p = subprocess.run([*NATFTP, "serve", str(tmp_path), "--listen", "127.0.0.1:2121",
                        "--explain"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "nat.masquerade" not in p.stdout and "WARNING" not in p.stdout
    assert "masquerade: (none: serving on loopback only)" in p.stdout
    assert ("  public client 198.51.100.77: cannot connect (this server listens on "
            "loopback only); to serve it, listen on an address it can reach, e.g. "
            "--listen 0.0.0.0:2121") in p.stdout.splitlines()
    assert "  loopback client 127.0.0.1 (reaches us at 127.0.0.1): told 127.0.0.1" \
        in p.stdout
