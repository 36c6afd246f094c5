"""Every command example in README.md and docs/*.md runs here, so the documentation cannot
drift from the program (issue 14). docs/HACKING.md ("Examples in the documentation")
describes what a runnable example looks like; in short:

- a fenced block whose info string is ``sh`` runs; ``text`` (or any other language)
  does not. A command example outside both (an unmarked fence, an indented block) fails
  :func:`test_every_command_example_is_marked`;
- each command runs in ``bash -c`` in a fresh directory (also its HOME) holding
  ``report.txt`` and ``site/index.html``, with the checkout's ``natftp`` first on PATH;
  state between the commands of a block is files only;
- ``# exit N`` at the end of a command is its documented exit status (default 0); each
  ``#> TEXT`` line after it is text its output (stdout and stderr) must contain, runs
  of white space (line breaks too: a terminal report wraps) counting as one space;
- a command ending in ``&`` is a server: started in the background, ready when it
  prints ``listening on``, stopped with SIGTERM after the block's last command, and it
  must then exit 0;
- a port from 2100 to 2199 written after a colon (``127.0.0.1:2121``, ``:2150``) is a
  placeholder: the test replaces it by a free port, the same number by the same port
  throughout the block (expected texts included);
- when the block names ``:2121`` and does not start a server there itself, the test
  provides one: ``natftp serve`` on 127.0.0.1, user ``alice`` password ``secret``
  (writable), serving ``hello.txt`` and ``pub/readme.txt``;
- hosts are 127.0.0.1, ::1 or localhost only, a server started by an example listens
  on loopback, and nothing that acts on other people's processes or labs runs
  (``lab down --all``, ``pkill``, ``killall``): such a block fails before it starts.
  A lab a block built (``natftp lab up`` prints ``lab NAME up``, to the output or to a
  file of the block) is removed after it, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.peers import free_port

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TIMEOUT = 180  # seconds for one command (a doctor run, a lab being built)
PLACEHOLDER = re.compile(r"(?<=:)(21\d\d)\b")
LOOPBACK = {"127.0.0.1", "::1", "[::1]", "localhost"}
FORBIDDEN = ("lab down --all", "pkill", "killall", "fuser -k")
SERVER_USER, SERVER_PASSWORD = "alice", "secret"


@dataclass
class Command:
    line: int  # where it starts in the Markdown file (1-based)
    text: str
    exit: int = 0
    expect: list[str] = field(default_factory=list)
    background: bool = False


@dataclass
class Block:
    path: Path
    line: int  # the opening fence's line
    text: str
    commands: list[Command]

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


_EXIT = re.compile(r"\s+#\s*exit\s+(\d+)\s*$")
_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)(\w+)\2")


def parse_commands(lines: list[str], first: int) -> list[Command]:
    """The commands of one sh block (``first``: the file line of ``lines[0]``)."""
    out: list[Command] = []
    i = 0
    while i < len(lines):
        raw = lines[i]
        stripped = raw.strip()
        if stripped.startswith("#>"):
            if not out:
                raise ValueError(f"line {first + i}: '#>' before any command")
            out[-1].expect.append(stripped[2:].strip())
            i += 1
            continue
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        start = i
        head = [raw]
        while head[-1].rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            head.append(lines[i])
        i += 1
        body: list[str] = []
        doc = _HEREDOC.search(" ".join(head))
        if doc is not None:
            end = doc.group(3)
            while i < len(lines) and (lines[i].strip() if doc.group(1) else lines[i]) != end:
                body.append(lines[i])
                i += 1
            body.append(end)
            i += 1
        code = 0
        m = _EXIT.search(head[-1])
        if m is not None:
            code = int(m.group(1))
            head[-1] = head[-1][:m.start()]
        text = "\n".join(head).rstrip()
        background = text.endswith("&") and not text.endswith("&&")
        if background:
            text = text[:-1].rstrip()
        out.append(Command(first + start, "\n".join([text, *body]), code,
                           background=background))
    return out


def fences(lines: list[str]) -> Iterator[tuple[int, str, list[str]]]:
    """Each fenced block: (index of its opening line, info string, body lines). A block
    ends at a fence line of at least its own length with nothing after it (CommonMark),
    so a ```` fence can show a ``` one."""
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*(`{3,})\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, info, start = m.group(1), m.group(2), i
        i += 1
        body: list[str] = []
        while i < len(lines) and not re.match(rf"^\s*{fence}`*\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        i += 1
        yield start, info, body


def blocks(path: Path) -> list[Block]:
    """The ``sh`` blocks of a Markdown file."""
    lines = path.read_text().splitlines()
    return [Block(path, start + 1, "\n".join(body), parse_commands(body, start + 2))
            for start, info, body in fences(lines) if info == "sh"]


ALL_BLOCKS = [b for p in DOCS for b in blocks(p)]


def check_safe(block: Block) -> None:
    """Refuse a block that could reach beyond this machine or act on what is not ours."""
    for word in FORBIDDEN:
        assert word not in block.text, (
            f"{block.id}: `{word}` acts on other people's processes or labs; show it in a "
            "```text block and say why")
    for m in re.finditer(r"\b[a-z]+://(?:[^@/\s'\"]*@)?(\[[^\]]+\]|[^:/\s'\"]+)",
                         block.text):
        assert m.group(1) in LOOPBACK, (
            f"{block.id}: {m.group(0)!r}: examples that run talk to loopback only "
            "(127.0.0.1, [::1], localhost); write it for loopback or show it as ```text")
    for c in block.commands:
        if c.background and re.match(r"\s*natftp\s+(serve|gateway)\b", c.text):
            listen = re.search(r"--listen[ =](\S+)", c.text)
            assert listen and listen.group(1).rsplit(":", 1)[0] in LOOPBACK, (
                f"{block.id}:{c.line}: a server in an example listens on loopback "
                "(--listen 127.0.0.1:2121): beyond it, serve would ask the network's "
                "router for its public address")
        if c.background:
            assert not re.search(r"[|;]|&&", c.text.splitlines()[0]), (
                f"{block.id}:{c.line}: a background command is one simple command")


def contains(output: str, want: str) -> bool:
    """``want`` in ``output``, runs of white space counting as one space."""
    return " ".join(want.split()) in " ".join(output.split())


class Run:
    """One block's run: its directory, environment, ports and processes."""

    def __init__(self, block: Block, work: Path) -> None:
        self.block = block
        self.work = work
        self.ports: dict[str, str] = {}
        self.background: list[tuple[Command, subprocess.Popen[bytes], Path]] = []
        self.outputs: list[str] = []
        venv_bin = str(Path(sys.executable).parent)
        self.env = {**os.environ, "HOME": str(work), "COLUMNS": "120", "NO_COLOR": "1",
                    "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}"}

    def sub(self, text: str) -> str:
        def port(m: re.Match[str]) -> str:
            if m.group(1) not in self.ports:
                self.ports[m.group(1)] = str(free_port())
            return self.ports[m.group(1)]
        return PLACEHOLDER.sub(port, text)

    def fixture(self) -> None:
        (self.work / "report.txt").write_text("quarterly report\n")
        (self.work / "site").mkdir()
        (self.work / "site" / "index.html").write_text("<h1>natftp</h1>\n")

    def provide_server(self) -> None:
        own = re.compile(r"--listen(-implicit)?[ =]\S*:2121\b")
        if ":2121" not in self.block.text or any(
                c.background and own.search(c.text) for c in self.block.commands):
            return
        root = self.work.parent / "served"
        (root / "pub").mkdir(parents=True)
        (root / "hello.txt").write_text("hello\n")
        (root / "pub" / "readme.txt").write_text("read me\n")
        cmd = Command(0, f"{sys.executable} -m natftp serve {root} --listen "
                      f"127.0.0.1:{self.sub(':2121')[1:]} --user "
                      f"{SERVER_USER}:{SERVER_PASSWORD}", background=True)
        self.start(cmd, provided=True)

    def start(self, c: Command, provided: bool = False) -> None:
        log = self.work.parent / f"bg-{len(self.background)}.log"
        with open(log, "wb") as f:
            p = subprocess.Popen(["bash", "-c", "exec " + self.sub(c.text)], cwd=self.work,
                                 env=self.env, stdout=f, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        self.background.append((c, p, log))
        end = time.monotonic() + 60
        while "listening on" not in log.read_text(errors="replace"):
            where = "the provided server" if provided else f"{self.block.id}:{c.line}"
            assert p.poll() is None, f"{where} exited {p.returncode}: {log.read_text()}"
            assert time.monotonic() < end, f"{where} never said 'listening on'"
            time.sleep(0.05)

    def run(self, c: Command) -> None:
        if c.background:
            self.start(c)
            return
        r = subprocess.run(["bash", "-c", self.sub(c.text)], cwd=self.work, env=self.env,
                           capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
        self.outputs.append(out)
        where = f"{self.block.id}:{c.line}: {c.text.splitlines()[0]}"
        assert r.returncode == c.exit, (
            f"{where}\nexit {r.returncode}, the documentation says {c.exit}\n{out}")
        for want in c.expect:
            assert contains(out, self.sub(want)), f"{where}\nno {want!r} in:\n{out}"

    def stop(self) -> None:
        """SIGTERM to each background server (its own process group, started here), which
        must then exit 0 and have printed what the documentation says."""
        problems = []
        for c, p, log in reversed(self.background):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                rc = p.wait(30)
            except subprocess.TimeoutExpired:
                rc = None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            if p.poll() is None:
                p.wait(10)
            text = log.read_text(errors="replace")
            self.outputs.append(text)
            if rc != 0:
                problems.append(f"{self.block.id}:{c.line}: exit {rc} after SIGTERM:\n{text}")
            problems += [f"{self.block.id}:{c.line}: no {w!r} in:\n{text}"
                         for w in c.expect if not contains(text, self.sub(w))]
        assert not problems, "\n".join(problems)

    def remove_labs(self) -> None:
        """Labs this block's commands built: `natftp lab up` prints `lab NAME up`, to the
        output or to a file in the block's directory."""
        texts = list(self.outputs)
        texts += [f.read_text(errors="replace") for f in self.work.rglob("*")
                  if f.is_file() and f.stat().st_size < 1 << 20]
        names = set()
        for out in texts:
            names |= set(re.findall(r"^lab (natftp-\d+-[0-9a-f]+) up\b", out, re.M))
        for name in names:
            subprocess.run([sys.executable, "-m", "natftp", "lab", "down", name],
                           capture_output=True, timeout=120, env=self.env)


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.id for b in ALL_BLOCKS])
def test_documented_example_runs(block: Block) -> None:
    check_safe(block)
    with tempfile.TemporaryDirectory(prefix="natftp-doc-") as d:
        work = Path(d) / "work"
        work.mkdir()
        run = Run(block, work)
        run.fixture()
        try:
            run.provide_server()
            for c in block.commands:
                run.run(c)
            run.stop()
        finally:
            for _, p, _ in run.background:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(10)
            run.remove_labs()


def test_every_command_example_is_marked() -> None:
    """A `natftp` command line shown in an unmarked fence or an indented block would
    escape the test above: each is ```sh (it runs) or ```text (it cannot, and the text
    says why)."""
    unmarked = []
    command = re.compile(r"^\s*(\$ )?natftp\s")
    for path in DOCS:
        lines = path.read_text().splitlines()
        inside: set[int] = set()
        for start, info, body in fences(lines):
            inside.update(range(start, start + len(body) + 2))
            unmarked += [f"{path.relative_to(REPO)}:{start + 2 + n}: {line.strip()}"
                         for n, line in enumerate(body) if not info and command.match(line)]
        unmarked += [f"{path.relative_to(REPO)}:{n + 1}: {line.strip()}"
                     for n, line in enumerate(lines)
                     if n not in inside and re.match(r"^ {4,}(\$ )?natftp\s", line)]
    assert not unmarked, ("command examples must be in ```sh (run by the tests) or ```text "
                          "(not run; say why) blocks:\n" + "\n".join(unmarked))


def test_the_parser_reads_what_hacking_md_describes() -> None:
    """The rules above, on a made-up block (so that the documentation of the mechanism
    stays true)."""
    body = ["natftp serve /srv --listen 127.0.0.1:2150 &", "#> listening on",
            "# a comment", "natftp ls ftp://a:b@127.0.0.1:2150/ \\", "    -l   # exit 4",
            "#> 530", "cat > x.toml <<'EOF'", "a = 1", "EOF", "echo done"]
    cmds = parse_commands(body, 10)
    assert [(c.line, c.exit, c.background, c.expect) for c in cmds] == [
        (10, 0, True, ["listening on"]), (13, 4, False, ["530"]), (16, 0, False, []),
        (19, 0, False, [])]
    assert cmds[0].text == "natftp serve /srv --listen 127.0.0.1:2150"
    assert cmds[2].text == "cat > x.toml <<'EOF'\na = 1\nEOF"
    run = Run(Block(REPO / "README.md", 1, "\n".join(body), cmds), Path("/nonexistent"))
    a, b = run.sub("127.0.0.1:2150"), run.sub("ftp://h:2150/ and :2121")
    port = a.split(":")[1]
    assert port != "2150" and b == f"ftp://h:{port}/ and :{run.ports['2121']}"
    assert run.sub("ftp://h:21/ :990 :2200 2121") == "ftp://h:21/ :990 :2200 2121"
    md = ["````text", "```sh", "x", "```", "````", "", "```", "natftp ls", "```"]
    assert list(fences(md)) == [(0, "text", ["```sh", "x", "```"]), (6, "", ["natftp ls"])]


@pytest.mark.parametrize(("line", "why"), [
    ("natftp ls ftp://alice:secret@ftp.example.com/", "loopback only"),
    ("curl ftp://192.168.10.1:2121/", "loopback only"),
    ("natftp lab down --all", "other people's"),
    ("natftp serve . --user a:b &", "listens on loopback"),
    ("natftp serve . --listen :2121 &", "listens on loopback"),
    ("natftp gateway --listen 127.0.0.1:2150 --upstream 127.0.0.1:2121 | tee log &",
     "one simple command"),
])
def test_an_unsafe_example_is_refused_before_it_runs(line: str, why: str) -> None:
    block = Block(REPO / "README.md", 1, line, parse_commands([line], 2))
    with pytest.raises(AssertionError, match=why):
        check_safe(block)
