"""FTP URLs: one parser for the client and the doctor; the password never shows."""

from __future__ import annotations

import pytest

from natftp.proto.url import URLError, is_url, mask, parse_url

GOOD = [
    ("ftp://h/", ("ftp", "h", 21, None, None, "", None)),
    ("ftp://alice:s3cret@h:2121/dir/f.txt", ("ftp", "h", 2121, "alice", "s3cret",
                                             "dir/f.txt", None)),
    ("ftpes://a@h/", ("ftpes", "h", 21, "a", None, "", "explicit")),
    ("ftps://a:b@h/", ("ftps", "h", 990, "a", "b", "", "implicit")),
    ("FTP://H/", ("ftp", "h", 21, None, None, "", None)),
    ("ftp://[::1]:2122/", ("ftp", "::1", 2122, None, None, "", None)),
    ("ftp://u%40x:p%3Aw@h/%2Fsrv/a%20b", ("ftp", "h", 21, "u@x", "p:w", "/srv/a b", None)),
    ("ftp://u:@h/", ("ftp", "h", 21, "u", "", "", None)),
]


@pytest.mark.parametrize(("url", "want"), GOOD)
def test_parse(url: str, want: tuple[object, ...]) -> None:
    u = parse_url(url)
    assert (u.scheme, u.host, u.port, u.user, u.password, u.path, u.tls) == want


BAD = [
    ("ftp://[::1:2122/", "closing ]"),
    ("ftp://h:99999/", "1 to 65535"),
    ("ftp://h:0/", "1 to 65535"),
    ("ftp://h:abc/", "1 to 65535"),
    ("http://h/", "scheme"),
    ("ftp:///path", "no host"),
    ("ftp://u:p%0d%0aDELE%20x@h/", "control characters"),
    ("ftp://h/a%0d%0aDELE%20b", "control characters"),  # would end the command it is in
    ("ftp://h/a%00b", "control characters"),
]


@pytest.mark.parametrize(("url", "why"), BAD)
def test_bad_urls_are_clear_errors(url: str, why: str) -> None:
    with pytest.raises(URLError, match=why.replace("[", r"\[")):
        parse_url(url)


def test_password_is_masked_in_text_and_in_errors() -> None:
    u = parse_url("ftp://alice:s3cret@host:2121/")
    assert str(u) == u.display() == "ftp://alice:****@host:2121/"
    assert "s3cret" not in repr(u)
    assert str(parse_url("ftpes://bob@[::1]/x y")) == "ftpes://bob@[::1]:21/x%20y"
    assert str(parse_url("ftp://h/")) == "ftp://h:21/"
    for bad in ("ftp://alice:s3cret@host:99999/", "ftp://alice:s3cret@[::1/"):
        with pytest.raises(URLError) as e:
            parse_url(bad)
        assert "s3cret" not in str(e.value) and "alice:****@" in str(e.value)
    assert mask("ftps://a:b:c@h/") == "ftps://a:****@h/"


def test_default_scheme_and_is_url() -> None:
    assert parse_url("host:2121", default_scheme="ftp").port == 2121
    assert is_url("ftpes://h/") and not is_url("h:21") and not is_url("sftp://h/")


def test_mask_hides_every_password_in_a_text() -> None:
    """A usage error quotes the command line: every URL in it is masked, a password
    holding an unencoded @ included (the user info ends at the last @, as urlsplit
    reads it)."""
    text = "Got unexpected extra argument(s) (ftp://alice:s3cret@h:21/ ftps://b:p@ss@h/x)"
    assert mask(text) == ("Got unexpected extra argument(s) (ftp://alice:****@h:21/ "
                          "ftps://b:****@h/x)")
    assert mask("ftp://bob@h/ and ftp://h/") == "ftp://bob@h/ and ftp://h/"
