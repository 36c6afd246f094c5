"""Virtual paths: normalisation, and every way out of the home refused."""

from __future__ import annotations

import pytest

from natftp.proto import paths
from natftp.proto.paths import PathError


@pytest.mark.parametrize(("cwd", "arg", "out"), [
    ("/", "a", "/a"), ("/a", "b/c", "/a/b/c"), ("/a/b", "..", "/a"), ("/a/b", "../c", "/a/c"),
    ("/a", "/x//y/./", "/x/y"), ("/a", ".", "/a"), ("/a", "", "/a"), ("/", "/", "/"),
    ("/a", "b/../../c", "/c"), ("/", "with space/進捗どうですか.jpg",
                                "/with space/進捗どうですか.jpg"),
    ("/", "C:\\evil", "/C:\\evil"),
])
def test_resolve(cwd: str, arg: str, out: str) -> None:
    assert paths.resolve(cwd, arg) == out


@pytest.mark.parametrize(("cwd", "arg"), [("/", ".."), ("/", "../etc"), ("/a", "../.."),
                                          ("/", "/../x"), ("/a", "b/../../../c")])
def test_escape_is_refused(cwd: str, arg: str) -> None:
    with pytest.raises(PathError, match="above the home"):
        paths.resolve(cwd, arg)


def test_nul_and_long_names_and_paths() -> None:
    with pytest.raises(PathError, match="NUL"):
        paths.resolve("/", "a\0b")
    with pytest.raises(PathError, match="255"):
        paths.resolve("/", "x" * 256)
    assert paths.resolve("/", "x" * 255) == "/" + "x" * 255
    with pytest.raises(PathError, match="255"):
        paths.resolve("/", "進" * 86)  # 258 bytes in UTF-8
    with pytest.raises(PathError, match="4096"):
        paths.resolve("/", "/".join(["y" * 200] * 21))
    with pytest.raises(PathError):
        paths.resolve("relative", "x")


def test_to_real_and_within() -> None:
    assert paths.to_real("/srv/ftp", "/") == "/srv/ftp"
    assert paths.to_real("/srv/ftp/", "/a/b") == "/srv/ftp/a/b"
    assert paths.to_real("/", "/a") == "/a"
    for bad in ("a", "/a/../b", "/./a", "/a\0"):
        with pytest.raises(PathError):
            paths.to_real("/srv", bad)
    assert paths.within("/srv/ftp", "/srv/ftp")
    assert paths.within("/srv/ftp", "/srv/ftp/a")
    assert not paths.within("/srv/ftp", "/srv/ftpx")
    assert not paths.within("/srv/ftp", "/srv")
    assert paths.within("/", "/anything")


def test_parent_basename_quote() -> None:
    assert paths.parent("/a/b") == "/a" and paths.parent("/a") == "/"
    assert paths.parent("/") == "/"
    assert paths.basename("/a/b") == "b" and paths.basename("/") == ""
    assert paths.quote_257('/say "hi"') == '"/say ""hi"""'


@pytest.mark.parametrize(("cwd", "arg", "want"), [
    ("/", "..", "/"), ("/", "../..", "/"), ("/", "/..", "/"), ("/", "./../.", "/"),
    ("/a/b", "..", "/a"), ("/a/b", "../..", "/"), ("/a/b", "../../../..", "/"),
    ("/a/b", "/..", "/"), ("/a/b", "../", "/a"),
])
def test_steps_up_stop_at_the_top(cwd: str, arg: str, want: str) -> None:
    assert paths.only_up(arg)
    assert paths.resolve_up(cwd, arg) == want


@pytest.mark.parametrize("arg", ["../etc", "a/..", "..x", "", ".", "/", "../../x/.."])
def test_a_path_that_names_something_is_not_only_up(arg: str) -> None:
    assert not paths.only_up(arg)
    with pytest.raises(PathError):
        paths.resolve_up("/a", arg)
