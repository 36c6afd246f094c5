"""`natftp cluster` output and errors, and configuration from NATFTP_* variables with
`serve --explain` saying where each value came from (issue 18)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from natftp.nat.cluster import ClusterError, parse
from natftp.nat.ports import split_range
from natftp.server.config import ConfigError, from_dict, load

NATFTP = [sys.executable, "-m", "natftp"]

CLUSTER = """
[public]
address = "198.51.100.1"
passive_ports = "30000-30299"

[balancer]
address = "10.0.1.1"

[[nodes]]
name = "node1"
address = "10.0.1.11"

[[nodes]]
name = "node2"
address = "10.0.1.12"

[[nodes]]
name = "node3"
address = "10.0.1.13"
port = 2200

[serve]
root = "{root}"
[serve.limits]
max_sessions_per_ip = 8
"""


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NATFTP, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def cluster_toml(tmp_path: Path) -> Path:
    p = tmp_path / "cluster.toml"
    p.write_text(CLUSTER.format(root=tmp_path))
    return p


def test_split_range_gives_every_node_its_own_slice() -> None:
    assert split_range((30000, 30299), 3) == [(30000, 30099), (30100, 30199),
                                              (30200, 30299)]
    assert split_range((1, 10), 3) == [(1, 4), (5, 7), (8, 10)]
    assert split_range((1, 2), 3) is None


def test_node_config_is_a_valid_serve_config_with_its_slice_and_the_balancer(
        cluster_toml: Path, tmp_path: Path) -> None:
    r = _run("cluster", "node", "node3", "--config", str(cluster_toml))
    assert r.returncode == 0, r.stderr
    data = tomllib.loads(r.stdout)
    assert data["listen"] == ["10.0.1.13:2200"]
    assert data["passive"] == {"ports": "30200-30299"}
    assert data["nat"] == {"masquerade": "198.51.100.1"}
    assert data["proxy_protocol"] == {"trusted": ["10.0.1.1"]}
    assert data["limits"] == {"max_sessions_per_ip": 8}
    cfg = from_dict(data)
    assert cfg.passive_ports == (30200, 30299) and cfg.proxy_protocol.trusted


def test_haproxy_config_is_accepted_by_haproxy(cluster_toml: Path, tmp_path: Path) -> None:
    r = _run("cluster", "haproxy", "--config", str(cluster_toml))
    assert r.returncode == 0, r.stderr
    assert "bind 198.51.100.1:30100-30199" in r.stdout
    assert "server node2 10.0.1.12 send-proxy-v2 source 10.0.1.1" in r.stdout
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(r.stdout)
    check = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_nftables_plan_is_accepted_by_nft(cluster_toml: Path, tmp_path: Path) -> None:
    text = cluster_toml.read_text().replace('address = "10.0.1.1"',
                                            'kind = "nftables"\nwan_interface = "wan"')
    cluster_toml.write_text(text)
    r = _run("cluster", "nftables", "--config", str(cluster_toml))
    assert r.returncode == 0, r.stderr
    assert "numgen inc mod 3 map" in r.stdout
    rules = tmp_path / "rules.nft"
    rules.write_text(r.stdout)
    # checked (-c), never applied, in a network namespace of its own
    check = subprocess.run(["unshare", "-n", "nft", "-c", "-f", str(rules)],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    node = tomllib.loads(_run("cluster", "node", "node1", "--config",
                              str(cluster_toml)).stdout)
    assert "proxy_protocol" not in node  # DNAT keeps the client's own address


@pytest.mark.parametrize("edit, key, why", [
    (("30000-30299", "30000-30001"), "public.passive_ports", "fewer ports than the 3"),
    (('address = "10.0.1.1"', 'adress = "10.0.1.1"'), "balancer.adress",
     "did you mean balancer.address"),
    (('name = "node2"', 'name = "node1"'), "nodes", "node name given twice"),
    (("port = 2200", "port = 30250"), "nodes[2].port", "inside the passive slice"),
    (("[serve]", '[serve]\nlisten = ["0.0.0.0:21"]'), "serve.listen", "planned per node"),
])
def test_cluster_toml_errors_name_the_key_and_the_fix(
        cluster_toml: Path, edit: tuple[str, str], key: str, why: str) -> None:
    text = cluster_toml.read_text().replace(*edit)
    with pytest.raises(ClusterError, match=why) as e:
        parse(tomllib.loads(text))
    assert e.value.key == key
    cluster_toml.write_text(text)
    r = _run("cluster", "haproxy", "--config", str(cluster_toml))
    assert r.returncode == 2 and why in r.stderr and "fix:" in r.stderr


def test_unknown_node_is_refused_with_the_near_name(cluster_toml: Path) -> None:
    r = _run("cluster", "node", "nod2", "--config", str(cluster_toml))
    assert r.returncode == 2 and "did you mean node2?" in r.stderr


# -- configuration from the environment --------------------------------------------------

def test_env_variables_set_keys_with_the_files_checks(tmp_path: Path) -> None:
    f = tmp_path / "natftp.toml"
    f.write_text(f'root = "{tmp_path}"\n[nat]\nmasquerade = "203.0.113.1"\n'
                 '[passive]\nports = "30000-30009"\n')
    env = {"NATFTP_PASSIVE_PORTS": "31000-31009", "NATFTP_READ_ONLY": "yes",
           "NATFTP_LIMITS_MAX_SESSIONS_PER_IP": "3", "NATFTP_TLS_MIN_VERSION": "1.3",
           "NATFTP_PROXY_PROTOCOL_TRUSTED": "10.0.1.1, 10.0.2.0/24",
           "NATFTP_LISTEN": "127.0.0.1:2121,[::1]:2121", "NATFTP_LAB_DEBUG": "1",
           "HOME": "/root"}
    cfg = load(f, env=env, overrides={"limits.max_sessions_per_ip": 4})
    assert cfg.passive_ports == (31000, 31009) and cfg.read_only
    assert cfg.limits.max_sessions_per_ip == 4  # a flag beats the environment
    assert cfg.tls.min_version == "1.3" and len(cfg.listen) == 2
    assert [str(n) for n in cfg.proxy_protocol.trusted] == ["10.0.1.1/32", "10.0.2.0/24"]
    src = {k: origin for k, _, origin in cfg.sources}
    assert src["passive.ports"] == "environment NATFTP_PASSIVE_PORTS"
    assert src["nat.masquerade"] == f"file {f}"
    assert src["limits.max_sessions_per_ip"] == "command line"


@pytest.mark.parametrize("env, message", [
    ({"NATFTP_LIMITS_MAX_SESSIONS_PER_IP": "three"},
     'limits.max_sessions_per_ip (NATFTP_LIMITS_MAX_SESSIONS_PER_IP) = "three": expected '
     "an integer"),
    ({"NATFTP_NAT_MASQERADE": "203.0.113.1"},
     "nat.masqerade (NATFTP_NAT_MASQERADE) = \"203.0.113.1\": unknown key; fix: did you "
     "mean nat.masquerade?"),
    ({"NATFTP_PASSIVE_PORTS": "3000-2000"}, "passive.ports (NATFTP_PASSIVE_PORTS)"),
    ({"NATFTP_PROXY_PROTOCOL_TRUSTED": "0.0.0.0/0"}, "trusts every address"),
    ({"NATFTP_BOGUS": "1"}, "NATFTP_BOGUS = \"1\": not a natftp serve setting"),
])
def test_bad_env_values_get_the_files_error_naming_the_variable(
        tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        from_dict({"root": str(tmp_path)}, env=env)
    assert message in str(e.value)


def test_serve_explain_shows_where_each_value_came_from(tmp_path: Path) -> None:
    f = tmp_path / "natftp.toml"
    f.write_text('[nat]\nmasquerade = "203.0.113.1"\n')
    r = _run("serve", str(tmp_path), "--config", str(f), "--listen", "127.0.0.1:2121",
             "--explain", env={"NATFTP_PASSIVE_PORTS": "31000-31009",
                               "NATFTP_PROXY_PROTOCOL_TRUSTED": "10.0.1.1"})
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert 'passive.ports = "31000-31009"  <- environment NATFTP_PASSIVE_PORTS' in out
    assert f'nat.masquerade = "203.0.113.1"  <- file {f}' in out
    assert "listen = ['127.0.0.1:2121']  <- flag --listen" in out
    assert "PROXY protocol: connections from 10.0.1.1/32 must start with" in out
    bad = _run("serve", str(tmp_path), "--explain", env={"NATFTP_TIMEOUTS_IDLE": "soon"})
    assert bad.returncode == 2
    assert "timeouts.idle (NATFTP_TIMEOUTS_IDLE) = \"soon\": expected a number" in bad.stderr
