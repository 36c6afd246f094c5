"""The status listener seen from a test (issue 20): its port from the server's start line,
an HTTP GET, and the samples of a metrics exposition parsed by prometheus_client's own
parser. Shared by the operations test files."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from support.servertools import Running, wait_for


def status_port(r: Running) -> int:
    wait_for(lambda: "status page http://" in r.log, "the status listener line")
    return int(re.findall(r"status page http://\S+?:(\d+)/", r.log)[0])


def http_get(port: int, path: str = "/", accept: str = "") -> tuple[int, str, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a classic text exposition, parsed by prometheus_client."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return got.get((name, tuple(sorted(labels.items()))), 0.0)
