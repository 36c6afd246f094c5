"""A check's outcome: verdict, evidence, and on trouble a cause and a fix."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"


@dataclass
class Result:
    id: str
    title: str
    verdict: str
    summary: str
    evidence: list[str] = field(default_factory=list)
    cause: str = ""
    fix: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Report:
    target: str
    server: str
    server_display: str
    results: list[Result]

    @property
    def ok(self) -> bool:
        """True only when nothing failed (what passive transfers need works)."""
        return not any(r.verdict == FAIL for r in self.results)

    def result(self, check_id: str) -> Result | None:
        for r in self.results:
            if r.id == check_id:
                return r
        return None

    @property
    def diagnosis(self) -> list[str]:
        out: list[str] = []
        for r in self.results:
            if r.verdict in (FAIL, WARN) and r.cause and r.cause not in out:
                out.append(r.cause)
        return out

    @property
    def fixes(self) -> list[str]:
        out: list[str] = []
        for r in self.results:
            if r.verdict in (FAIL, WARN):
                for f in r.fix:
                    if f not in out:
                        out.append(f)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "server": self.server,
            "server_display": self.server_display,
            "ok": self.ok,
            "checks": [r.to_json() for r in self.results],
            "diagnosis": self.diagnosis,
            "fix": self.fixes,
        }
