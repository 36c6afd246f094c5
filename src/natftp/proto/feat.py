"""FEAT (RFC 2389): reading a server's feature list, and rewriting one.

A 211 reply lists one feature per line, a name and optional parameters
(``MLST type*;size*;modify*;``, ``AUTH TLS``). The client decides with it (MLSD? UTF8?
MFMT?), the doctor reports it, and the gateway rewrites it (it answers AUTH/PBSZ/PROT
and EPSV/EPRT itself, so those lines are its own to add or to remove).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from natftp.proto.replies import Reply

#: RFC 3659 7.8: a server that has MLST has MLSD
_IMPLIED = {"MLSD": "MLST"}


class Features(Mapping[str, str]):
    """Feature name (upper case) -> its parameters; ``lines`` keeps them as written.

    ``"AUTH" in features`` is true for ``AUTH TLS``; :meth:`has` also knows what a
    feature implies (MLSD from MLST).
    """

    def __init__(self, lines: Iterable[str] = ()) -> None:
        self.lines = tuple(lines)
        self._table: dict[str, str] = {}
        for line in self.lines:
            name, _, params = line.partition(" ")
            self._table.setdefault(name.upper(), params.strip())

    def __getitem__(self, name: str) -> str:
        return self._table[name.upper()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.upper() in self._table

    def __repr__(self) -> str:
        return f"Features({list(self.lines)!r})"

    def has(self, name: str) -> bool:
        """Whether the server offers ``name``, directly or implied by another feature."""
        name = name.upper()
        return name in self or (name in _IMPLIED and _IMPLIED[name] in self)


def parse_feat(reply: Reply) -> Features:
    """The features of a FEAT reply; none when the server refused FEAT (500/502)."""
    if reply.code != 211:
        return Features()
    body = reply.lines[1:-1] if len(reply.lines) > 1 else ()
    return Features(tuple(line.strip() for line in body if line.strip()))


def rewrite_feat(reply: Reply, *, add: Iterable[str] = (), remove: Iterable[str] = ()
                 ) -> Reply:
    """A 211 reply with the lines whose feature name is in ``remove`` taken out and the
    ``add`` lines appended (unless the same line is already there). Other replies are
    returned unchanged."""
    if reply.code != 211 or len(reply.lines) < 2:
        return reply
    gone = {r.upper() for r in remove}
    body = [line for line in reply.lines[1:-1]
            if line.strip().partition(" ")[0].upper() not in gone]
    have = {line.strip().upper() for line in body}
    body += [f for f in add if f.upper() not in have]
    return Reply(reply.code, (reply.lines[0], *body, reply.lines[-1]))
