"""natftp.nat.firewall: the exact rules, and the real tools accept them (in a namespace)."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from natftp.cli import app
from natftp.nat.firewall import (
    FirewallError,
    FirewallParams,
    Router,
    iptables_remove,
    iptables_rules,
    nftables_rules,
    parse_port_range,
    render,
)

ROUTER = Router(wan_if="eth0", server="10.0.0.5", lan_if="eth1")
FULL = FirewallParams(control_port=2121, passive_ports=(50000, 50100), router=ROUTER,
                      ftp_helper=True)
VARIANTS = [
    FirewallParams(),
    FirewallParams(passive_ports=(60000, 60010), active=False),
    FirewallParams(control_port=2121, passive_ports=(50000, 50100), active_source_port=None),
    FULL,
    FirewallParams(host=False, router=Router("wan", "172.16.0.2", server_port=21),
                   passive_ports=(50000, 50049), control_port=2121),
    FirewallParams(host=False, ftp_helper=True),
    FirewallParams(router=Router("wan", "fd00::2", lan_if="lan"), passive_ports=(5000, 5010)),
]


def test_nftables_full_text() -> None:
    text = nftables_rules(FULL)
    body = text[text.index("\ntable inet natftp\n") + 1:]
    assert body.startswith("table inet natftp\ndelete table inet natftp\n")
    for line in [
        '\tct helper ftp-2121 {\n\t\ttype "ftp" protocol tcp\n\t\tl3proto inet\n\t}',
        '\t\ttcp dport 2121 ct helper set "ftp-2121"',
        "\t\ttcp dport { 2121, 50000-50100 } ct state new accept",
        "\t\ttcp sport 20 ct state new accept",
        '\t\tiifname "eth0" tcp dport 2121 dnat ip to 10.0.0.5:2121',
        '\t\tiifname "eth0" tcp dport 50000-50100 dnat ip to 10.0.0.5',
        '\t\tiifname "eth0" oifname "eth1" ip daddr 10.0.0.5 tcp dport { 2121, 50000-50100 } '
        "ct status dnat accept",
        '\t\tiifname "eth1" oifname "eth0" ip saddr 10.0.0.5 tcp sport 20 ct state new accept',
    ]:
        assert line in text, line
    assert "# remove: nft delete table inet natftp" in text
    assert render(FULL, "nftables") == text


def test_iptables_full_text() -> None:
    text = iptables_rules(FULL)
    for line in [
        "-A NATFTP-HELPER -p tcp --dport 2121 -j CT --helper ftp",
        "-A NATFTP-INPUT -p tcp --dport 50000:50100 -m conntrack --ctstate NEW -j ACCEPT",
        "-A NATFTP-OUTPUT -p tcp --sport 20 -m conntrack --ctstate NEW -j ACCEPT",
        "-A NATFTP-DNAT -i eth0 -p tcp --dport 2121 -j DNAT --to-destination 10.0.0.5:2121",
        "-A NATFTP-DNAT -i eth0 -p tcp --dport 50000:50100 -j DNAT --to-destination 10.0.0.5",
        "-A NATFTP-FORWARD -i eth0 -o eth1 -d 10.0.0.5 -p tcp --dport 50000:50100 "
        "-m conntrack --ctstate DNAT -j ACCEPT",
        "-A PREROUTING -j NATFTP-DNAT",
    ]:
        assert line in text, line
    # every table is committed, raw before nat before filter
    assert [x for x in text.splitlines() if x.startswith("*")] == ["*raw", "*nat", "*filter"]
    assert text.count("COMMIT") == 3
    assert ["iptables", "-t", "nat", "-X", "NATFTP-DNAT"] in iptables_remove(FULL)


def test_sections_are_optional() -> None:
    only_helper = nftables_rules(FirewallParams(host=False, ftp_helper=True))
    assert "ct helper set" in only_helper and "host_input" not in only_helper
    assert "dnat" not in only_helper
    no_active = nftables_rules(FirewallParams(active=False))
    assert "host_output" not in no_active
    ipv6 = nftables_rules(VARIANTS[-1])
    assert "dnat ip6 to [fd00::2]:21" in ipv6
    assert "ip6tables" in iptables_rules(VARIANTS[-1])


@pytest.mark.parametrize("bad,msg", [
    (FirewallParams(control_port=0), "control port 0"),
    (FirewallParams(passive_ports=(6000, 5000)), "ends before it starts"),
    (FirewallParams(router=Router("eth0", "not-an-ip")), "not an IP address"),
    (FirewallParams(router=Router('eth0"; drop', "10.0.0.1")), "interface name"),
    (FirewallParams(table_name="x y"), "table name"),
])
def test_invalid_parameters_are_refused(bad: FirewallParams, msg: str) -> None:
    with pytest.raises(FirewallError, match=msg):
        nftables_rules(bad)


def test_parse_port_range() -> None:
    assert parse_port_range("50000-50100") == (50000, 50100)
    assert parse_port_range("50000:50100") == (50000, 50100)
    assert parse_port_range("50000") == (50000, 50000)  # as the server reads it
    with pytest.raises(FirewallError, match="LOW above HIGH"):
        parse_port_range("50001-50000")


def test_cli_prints_what_the_function_returns() -> None:
    r = CliRunner().invoke(app, ["firewall", "--control-port", "2121", "--passive-ports",
                                 "50000-50100", "--router", "eth0", "--server", "10.0.0.5",
                                 "--lan-if", "eth1", "--ftp-helper", "--active-source-port", "20"])
    assert r.exit_code == 0, r.output
    assert r.output == nftables_rules(FULL)
    r = CliRunner().invoke(app, ["firewall", "--backend", "iptables", "--control-port",
                                 "2121", "--passive-ports", "50000-50100", "--router", "eth0",
                                 "--server", "10.0.0.5", "--lan-if", "eth1", "--ftp-helper",
                                 "--active-source-port", "20"])
    assert r.exit_code == 0 and r.output == iptables_rules(FULL)


@pytest.mark.parametrize("args,msg", [
    (["--backend", "pf"], "unknown backend"),
    (["--router", "eth0"], "--router WAN_IF and --server ADDR go together"),
    (["--passive-ports", "9-1"], "ends before it starts"),
])
def test_cli_refusals(args: list[str], msg: str) -> None:
    r = subprocess.run([sys.executable, "-m", "natftp", "firewall", *args],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and msg in r.stderr


# ---------------------------------------------------------------- the real tools


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    """A throwaway namespace (the root namespace's firewall is never touched)."""
    import shutil

    from natftp.lab.core import require_root_and_tools

    try:
        require_root_and_tools(("iptables-restore",))
    except RuntimeError as e:
        pytest.fail(f"{e} (scripts/setup-system.sh installs them)", pytrace=False)
    assert shutil.which("nft")
    name = f"natftp-{secrets.token_hex(3)}-fwtest"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], timeout=10)


@pytest.mark.parametrize("p", VARIANTS)
def test_nft_accepts_and_applies_it_twice(netns: str, p: FirewallParams) -> None:
    text = nftables_rules(p)
    ex = ["ip", "netns", "exec", netns]
    chk = subprocess.run([*ex, "nft", "-c", "-f", "-"], input=text, capture_output=True,
                         text=True, timeout=10)
    assert chk.returncode == 0, chk.stderr
    for _ in range(2):  # idempotent: the script replaces its own table
        r = subprocess.run([*ex, "nft", "-f", "-"], input=text, capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 0, r.stderr
    listed = subprocess.run([*ex, "nft", "list", "tables"], capture_output=True, text=True,
                            timeout=10).stdout
    assert listed.split() == ["table", "inet", "natftp"]
    subprocess.run([*ex, "nft", "delete", "table", "inet", "natftp"], check=True, timeout=10)


@pytest.mark.parametrize("p", VARIANTS)
def test_iptables_restore_accepts_it_and_remove_cleans_up(netns: str,
                                                          p: FirewallParams) -> None:
    text = iptables_rules(p)
    ex = ["ip", "netns", "exec", netns]
    exe = "ip6tables" if "ip6tables" in text.split("apply:")[1].split()[0] else "iptables"
    t = subprocess.run([*ex, f"{exe}-restore", "--test", "--noflush"], input=text,
                       capture_output=True, text=True, timeout=10)
    assert t.returncode == 0, t.stderr
    subprocess.run([*ex, f"{exe}-restore", "--noflush"], input=text, text=True, check=True,
                   timeout=10)
    saved = subprocess.run([*ex, f"{exe}-save"], capture_output=True, text=True,
                           timeout=10).stdout
    assert "NATFTP-" in saved
    for cmd in iptables_remove(p):
        subprocess.run([*ex, *cmd], check=True, timeout=10, capture_output=True)
    saved = subprocess.run([*ex, f"{exe}-save"], capture_output=True, text=True,
                           timeout=10).stdout
    assert "NATFTP" not in saved


def test_firewall_reads_ports_from_the_server_configuration(tmp_path) -> None:
    import subprocess
    import sys

    cfg = tmp_path / "natftp.toml"
    cfg.write_text('listen = ["0.0.0.0:2121"]\n[passive]\nports = "40000-40099"\n'
                   '[active]\nsource_port = 20\n')
    natftp = [sys.executable, "-m", "natftp", "firewall"]
    from_cfg = subprocess.run([*natftp, "--config", str(cfg)], capture_output=True,
                              text=True, check=True).stdout
    explicit = subprocess.run([*natftp, "--control-port", "2121", "--passive-ports",
                               "40000-40099", "--active-source-port", "20"],
                              capture_output=True, text=True, check=True).stdout
    assert from_cfg == explicit
    assert "2121, 40000-40099" in from_cfg
    bad = tmp_path / "bad.toml"
    bad.write_text('passive_ports = "1-2"\n')
    r = subprocess.run([*natftp, "--config", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "passive_ports" in r.stderr and "did you mean" in r.stderr
