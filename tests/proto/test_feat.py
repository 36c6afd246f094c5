"""FEAT replies: read once for the client and the doctor, rewritten by the gateway."""

from __future__ import annotations

from natftp.proto.feat import Features, parse_feat, rewrite_feat
from natftp.proto.replies import Reply, ReplyParser

VSFTPD = (b"211-Features:\r\n EPRT\r\n EPSV\r\n MDTM\r\n PASV\r\n REST STREAM\r\n SIZE\r\n"
          b" TVFS\r\n UTF8\r\n211 End\r\n")
PROFTPD = (b"211-Features:\r\n LANG en-US*\r\n MDTM\r\n MFMT\r\n"
           b" MLST modify*;perm*;size*;type*;unique*;UNIX.group*;UNIX.mode*;\r\n"
           b" AUTH TLS\r\n PBSZ\r\n PROT\r\n UTF8\r\n211 End\r\n")


def _reply(raw: bytes) -> Reply:
    (r,) = ReplyParser().feed(raw)
    return r


def test_parse_real_feat_replies() -> None:
    v = parse_feat(_reply(VSFTPD))
    assert "EPSV" in v and "utf8" in v and v["REST"] == "STREAM"
    assert not v.has("MLSD") and "AUTH" not in v
    p = parse_feat(_reply(PROFTPD))
    assert p.has("MLSD") and p["MLST"].startswith("modify*") and p["AUTH"] == "TLS"
    assert p.lines[0] == "LANG en-US*" and len(p) == 8


def test_refused_or_empty_feat_is_no_features() -> None:
    assert len(parse_feat(Reply.of(502, "FEAT not implemented."))) == 0
    assert len(parse_feat(Reply(211, ("No features",)))) == 0
    assert list(Features()) == []


def test_rewrite_adds_and_removes_by_feature_name() -> None:
    r = rewrite_feat(_reply(PROFTPD), add=("EPSV", "EPRT", "MDTM"),
                     remove=("AUTH", "PBSZ", "PROT"))
    f = parse_feat(r)
    assert "AUTH" not in f and "PBSZ" not in f and "PROT" not in f
    assert "EPSV" in f and "EPRT" in f and f.lines.count("MDTM") == 1
    assert r.lines[0] == "Features:" and r.lines[-1] == "End"
    wire = r.format()
    assert wire.startswith(b"211-Features:\r\n") and b"\r\n EPSV\r\n" in wire
    other = Reply.of(502, "no")
    assert rewrite_feat(other, add=("EPSV",)) is other
