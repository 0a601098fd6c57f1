"""The virtual phone's shell and userland against the real thing: each command line runs
through the phone's /system/bin/sh (over adb, shell v2) and through Debian's mksh (the
shell Android ships) with toybox (Android's userland) first on PATH, in a directory holding
the same files on both sides; stdout, stderr and the exit code must match byte for byte.

What is left out, and why, is listed below and in the package README.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import adbutils
import pytest
from virtual_android.device import VirtualS24

MKSH = shutil.which("mksh")
TOYBOX = shutil.which("toybox")
pytestmark = pytest.mark.skipif(
    MKSH is None or TOYBOX is None,
    reason="needs the real mksh and toybox to compare with (apt-get install -y mksh toybox)",
)

FILES = {
    "fruits.txt": b"banana\napple\ncherry\napple\n",
    "cols.txt": b"a:1:x\nb:2:y\nc:3:z\n",
    "nums.txt": b"10\n9\n100\n-1\n",
    "sub/one": b"",
    "sub/two": b"2\n",
}
PHONE_DIR = "/data/local/tmp/vs"

SHELL = [
    # quoting and parameters
    "echo 'a  b' \"c  d\" e\\ f",
    "X='p  q'; echo $X \"$X\" '$X'",
    "echo a\"b\"'c'd",
    "echo \"x\\\"y\" 'it'\\''s'",
    "printf '%s|' a 'b c' \"d\"; echo",
    'echo \\$HOME "\\$HOME"',
    "X=1; echo ${X:-d} ${Y:-d} ${Y:=z} $Y ${X:+set} ${U+u}",
    "echo ${X:?}",
    'X=; echo "${X-unset}" "${X:-empty}"',
    'set -- a b c; echo $# $1 $3 "$@"',
    "echo $0",
    # pipes and status
    "printf 'b\\na\\nc\\n' | sort | head -n 2",
    "cat fruits.txt | grep apple | wc -l",
    "false | true; echo $?",
    "true | false; echo $?",
    "! true; echo $?",
    "true && echo y || echo n",
    "false && echo y || echo n",
    "false || false || echo third",
    "set -e; false || echo rescued; echo after",
    # redirections
    "echo hi > f1; cat f1; echo ho >> f1; cat < f1",
    "cat nope 2>&1",
    "cat nope 2>/dev/null; echo $?",
    "echo out >&2",
    "{ echo a; echo b; } > f2; cat f2",
    "(echo sub; exit 3); echo $?",
    # control flow
    "if [ -f fruits.txt ]; then echo yes; else echo no; fi",
    'for f in sub/*; do echo "[$f]"; done',
    "i=0; while [ $i -lt 3 ]; do echo $i; i=$((i+1)); done",
    "for i in 1 2 3; do for j in a b; do [ $j = b ] && continue 2; echo $i$j; done; done",
    "/nope/x; echo $?",
    "./fruits.txt; echo $?",
    "cd sub && pwd",
    "exit 7",
    # arithmetic
    "echo $((1+2*3)) $((7/2)) $((7%3)) $((-7/2)) $((1<2)) $(( (1+2)*3 ))",
    "X=5; echo $((X*2)) $(($X+1)) $((X > 3 && X < 10))",
    "echo $((0x10)) $((1 << 4)) $((7 & 3)) $((7 | 8)) $((5 ^ 1)) $((~0))",
    "echo $((2 ** 3))",
    "echo $((7/0))",
    "X=3; echo $((X+=2)) $X",
    "echo $((1 ? 2 : 3))",
    "echo $((1 +))",
    "echo $((1 2))",
    "echo $((7%0))",
    "X=abc; echo $((X+1))",
    "X=2; echo $((X<<=2)) $X",
    "echo $((2147483647+1))",
    "echo $((010)) $((0x1F)) $((1?0:2)) $((0 || 5)) $((3&&0))",
    "echo $((y=4, y+1))",
    "echo $(( -(3) * -2 )) $((!0)) $((!5))",
    "i=0; while [ $i -lt 3 ]; do i=$((i+1)); done; echo $i",
    "echo $((${N:-4}*2))",
    "echo x > sub; echo $?",
    "cat < nope; echo $?",
    "nope; echo $?",
    "cd nope",
    # command substitution
    "echo $(echo hi)",
    'echo "$(echo hi there)"',
    "echo `echo tick`",
    "X=$(printf 'a  b\n\n'); echo \"[$X]\" [$X]",
    'echo $(echo a; echo b) "$(echo a; echo b)"',
    "echo $(cat fruits.txt | wc -l)",
    "n=$(grep -c apple fruits.txt); echo $((n*10))",
    "X=$(false); echo $?",
    'echo "$(echo "inner quotes")"',
    "echo $(echo $(echo nested))",
    'echo "`echo back`tick"',
    'for f in $(ls sub); do echo "<$f>"; done',
    "case $(echo abc) in a*) echo matched;; esac",
    "echo $(nope) after",
    "echo \"x$(echo ')')y\"",
    "cat <<EOF\n$(echo from heredoc)\nEOF",
    "echo $( (echo sub) )",
    # syntax errors: the lines before one have run
    "if true",
    "while true; do echo",
    "for i in a",
    "{ echo",
    "( echo",
    "echo )",
    "echo ;;",
    "case x in",
    "echo 'abc",
    'echo "abc',
    "fi",
    "done",
    "echo a | ",
    "echo a &&",
    "f() {",
    "echo $((1",
    "echo ok\nfi",
    "echo a; echo b\nif\necho c",
    "echo $(",
    "echo $(echo a",
    "cat <<EOF\nabc",
    # case, functions, here-documents, set -e
    "case abc in a*) echo A;; *) echo other;; esac",
    "case x in a|x) echo AX;; esac",
    'case "a b" in "a b") echo q;; esac',
    "X=a; case $X in (a) echo paren;; esac",
    "case z in a) echo a;; esac; echo $?",
    "case abc in\n  a*)\n    echo multi\n    ;;\n  *) echo no ;;\nesac",
    'f() { echo "f:$1"; return 3; }; f arg; echo $?',
    'h() { echo "$#:$*"; }; h a b c; echo "$#"',
    "g() { return; }; false; g; echo $?",
    "f() (echo subshell); f",
    "cat <<EOF\nline $((1+1))\nEOF",
    "cat <<'EOF'\n$HOME\nEOF",
    'X=v; cat <<EOF\n"q" \\" \\x \\$X \\\\ $X\nEOF',
    "X=v; cat <<-EOF\n\t$X tab\n\tEOF",
    "cat <<A; cat <<B\na\nA\nb\nB",
    'echo "$((1+1))" "a$((2*3))b"',
    "set -e; false; echo not-here",
    "set -e; if false; then :; fi; echo ok",
    "set -e; ! true; echo ok",
    "set -e; false && true; echo ok",
    "set -e; true && false; echo no",
    "set -e; { false; echo no; } || echo rescue",
    "f() { echo in; false; echo after; }; set -e; f; echo no",
    "set -e; false | true; echo ok",
    "set -e; (false; echo no); echo $?",
    "set -e; set +e; false; echo yes",
]

APPLETS = [
    "cat fruits.txt cols.txt",
    "cat nope fruits.txt; echo $?",
    "ls",
    "ls sub",
    "ls -1 sub",
    "ls -a sub",
    "ls -d sub",
    "ls nope; echo $?",
    "ls sub/one sub/nope",
    "md5sum fruits.txt cols.txt",
    "md5sum nope; echo $?",
    "printf abc | md5sum",
    "sha1sum fruits.txt",
    "sha256sum cols.txt",
    "grep apple fruits.txt",
    "grep -c apple fruits.txt",
    "grep -v apple fruits.txt",
    "grep -n an fruits.txt",
    "grep -i APPLE fruits.txt",
    "grep -E 'ban|che' fruits.txt",
    "grep -o 'an' fruits.txt",
    "grep -q apple fruits.txt; echo $?",
    "grep nomatch fruits.txt; echo $?",
    "grep apple fruits.txt cols.txt",
    "grep -l apple fruits.txt cols.txt",
    "head -n 2 fruits.txt",
    "head -1 fruits.txt",
    "tail -n 2 fruits.txt",
    "tail -1 fruits.txt",
    "tail -n +3 fruits.txt",
    "wc -l fruits.txt",
    "wc -c fruits.txt",
    "wc -w fruits.txt",
    "wc -l < fruits.txt",
    "cat fruits.txt | wc -l",
    "cut -d: -f2 cols.txt",
    "cut -d: -f1,3 cols.txt",
    "sort fruits.txt",
    "sort -r fruits.txt",
    "sort -u fruits.txt",
    "sort -n nums.txt",
    "sort -rn nums.txt",
    "echo -n abc; echo",
    "echo -e 'a\\tb'",
    "echo a\\\\nb",
    "printf '%s-%d\\n' a 3 b 4",
    "printf '%x %o %c\\n' 255 8 z",
    "printf 'no newline'",
    "test -f fruits.txt; echo $?",
    "test -d sub; echo $?",
    "test -e nope; echo $?",
    "[ 1 -lt 2 ]; echo $?",
    "[ abc = abc ]; echo $?",
    '[ -z "" ] && [ -n x ]; echo $?',
    "[ 2 -gt 1 -a 3 -gt 2 ]; echo $?",
    "test; echo $?",
    "basename /a/b/c.txt .txt",
    "dirname /a/b/c.txt",
    "stat -c %s fruits.txt",
    "touch newf; ls newf",
    "mkdir d1; ls -d d1; rmdir d1; ls d1",
    "cp fruits.txt copy.txt; md5sum copy.txt",
    "mv fruits.txt moved.txt; head -1 moved.txt; cat fruits.txt",
    "rm cols.txt; cat cols.txt",
    "grep x nope; echo $?",
    "grep apple nope fruits.txt; echo $?",
    "head -c 5 fruits.txt; echo",
    "head -c 3 fruits.txt cols.txt",
    "head -n 1 fruits.txt cols.txt; tail -n 1 fruits.txt cols.txt",
    "wc fruits.txt",
    "wc -lw fruits.txt",
    "wc -l fruits.txt cols.txt",
    "wc -c < fruits.txt",
    "printf abc | wc",
    "cut -c1-3 fruits.txt",
    "cut -c-2,4- fruits.txt",
    "cut -d: -f2- cols.txt",
    "sort -t: -k2 -n cols.txt",
    "sort -t: -k2,2n cols.txt",
    "sort -t: -k3 -r cols.txt",
    "sort -k2 cols.txt",
    "uniq fruits.txt",
    "uniq -c fruits.txt",
    "sort fruits.txt | uniq -c",
    "sort fruits.txt | uniq -d",
    "sort fruits.txt | uniq -u",
    "printf '%5s|%-5s|%05d|%.2s|%3d|%-4d|\\n' ab cd 42 xyz 7 3",
    "printf '%d\\n' x",
    "printf '%d %s\\n' 1",
    "printf '%.3f\\n' 2",
    "printf '%x %o %c %X\\n' 255 8 z 255",
    "printf '%b\\n' 'a\\\\tb'",
    "printf '%+d % d\\n' 5 5",
    "printf '%d\\n' 0x1f 010",
    "sed 's/a/A/' fruits.txt",
    "sed 's/a/A/g' fruits.txt",
    "sed -n 2p fruits.txt",
    "sed -n '/apple/p' fruits.txt",
    "sed '1d' fruits.txt",
    "sed -e 's/:/ /g' cols.txt",
    "sed 's/\\(.\\):\\(.\\)/\\2-\\1/' cols.txt",
    "sed s/a/A/ nope; echo $?",
    "sed -n '$p' fruits.txt",
    "sed '2,3d' fruits.txt",
    "sed '/apple/,/cherry/d' fruits.txt",
    "sed -n '/apple/!p' fruits.txt",
    "sed '2q' fruits.txt",
    "sed = cols.txt",
    "sed -e 's/a/1/' -e 's/b/2/' fruits.txt",
    "sed 's|:|/|g;s/x/X/' cols.txt",
    "sed -E 's/(a)(n)/\\2\\1/g' fruits.txt",
    "cp cols.txt c2; sed -i 's/:/-/g' c2; cat c2",
    "sed 's/A/z/I' fruits.txt",
    "sed; echo $?",
    "printf 'x\ny\n' | sed 's/^/> /'",
    "sed 's/p/\n/' fruits.txt",
    "sed 'y/abc/xyz/' fruits.txt",
    "sed '1i\\\ntop' cols.txt",
    "sed '$a end' cols.txt",
    "sed -n '2,$p' fruits.txt cols.txt",
    "sed 's/[aeiou]//g' fruits.txt",
    "sed -n 's/an/AN/p' fruits.txt",
    "sed '/^c/s/:/=/' cols.txt",
    "printf 'no newline' | sed 's/no/yes/'",
    "sed 's/x*/-/g' cols.txt",
    "cat -n fruits.txt",
    "cat -u fruits.txt | head -1; cat -x fruits.txt; echo $?; cat -nx fruits.txt; cat - < cols.txt | head -1",
    "cat -un fruits.txt",
    "true; echo $?",
    "false; echo $?",
]

# Left out, the phone's nature: the host runs mksh as root (id, whoami), the phone as
# shell; ps and /proc list the phone's processes (ps is compared by shape below; a bare `ps`
# is Android's own column set, which Debian's toybox build lacks); ls -l shows owners,
# modes and times. Toybox 0.8.9 as Debian builds it has no tr (Android's has), and its
# `sed 's/a/&&/3'` writes NUL bytes (a toybox bug the phone does not copy).


@pytest.fixture(scope="module")
def toybox_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of `toybox APPLET` links, as Android's /system/bin holds them."""
    assert TOYBOX is not None
    directory = tmp_path_factory.mktemp("toybox-bin")
    applets = subprocess.run([TOYBOX], capture_output=True, text=True, check=True).stdout
    for applet in applets.split():
        (directory / applet).symlink_to(TOYBOX)
    return directory


@pytest.fixture(scope="module")
def phone(adb_server: adbutils.AdbClient) -> Iterator[tuple[VirtualS24, adbutils.AdbDevice]]:
    """One phone for the module: every line runs in a directory of its own."""
    s24 = VirtualS24(port=0)
    s24.start()
    try:
        adb_server.connect(s24.serial, timeout=5)
        deadline = time.monotonic() + 10
        while not any(d.serial == s24.serial for d in adb_server.device_list()):
            assert time.monotonic() < deadline, "the phone never came online"
            time.sleep(0.05)
        yield s24, adb_server.device(s24.serial)
    finally:
        s24.stop()
        with contextlib.suppress(adbutils.AdbError):
            adb_server.disconnect(s24.serial)


def _on_phone(phone: tuple[VirtualS24, adbutils.AdbDevice], case: str, line: str) -> tuple:
    s24, device = phone
    directory = f"{PHONE_DIR}/{case}"
    for name, data in FILES.items():
        s24.fs.write(f"{directory}/{name}", data, make_parents=True)
    result = device.shell2(f"cd {directory} || exit 99\n{line}", v2=True, rstrip=False)
    return result.stdout, result.stderr, result.returncode


def _real(tmp_path: Path, toybox_bin: Path, line: str) -> tuple:
    for name, data in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    result = subprocess.run(
        ["/system/bin/sh", "-c", f"cd {tmp_path} || exit 99\n{line}"],
        executable=MKSH,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": str(toybox_bin), "HOME": "/"},
        timeout=30,
    )
    # Debian's mksh marks its own errors 'E: ' and warnings 'W: '; a phone's does not
    # (`/system/bin/sh: su: inaccessible or not found` on a Galaxy S22).
    stderr = "".join(
        line[3:] if line[:3] in ("E: ", "W: ") else line
        for line in result.stderr.splitlines(keepends=True)
    )
    return tuple(
        text.replace(str(tmp_path), f"{PHONE_DIR}/{tmp_path.name}")
        if isinstance(text, str)
        else text
        for text in (result.stdout, stderr, result.returncode)
    )


CASES = [
    *(pytest.param(line, id=f"sh{index}") for index, line in enumerate(SHELL)),
    *(pytest.param(line, id=f"applet{index}") for index, line in enumerate(APPLETS)),
]


@pytest.mark.parametrize("line", CASES)
def test_same_as_mksh_and_toybox(
    line: str,
    phone: tuple[VirtualS24, adbutils.AdbDevice],
    toybox_bin: Path,
    tmp_path: Path,
) -> None:
    real = _real(tmp_path, toybox_bin, line)
    virtual = _on_phone(phone, tmp_path.name, line)
    fields = ("stdout", "stderr", "exit code")
    assert dict(zip(fields, virtual, strict=True)) == dict(zip(fields, real, strict=True))


@pytest.mark.parametrize("columns", ["PID,PPID,NAME", "USER,PID,NAME", "PID,S,NAME"])
def test_ps_has_the_same_shape(
    columns: str,
    phone: tuple[VirtualS24, adbutils.AdbDevice],
    toybox_bin: Path,
    tmp_path: Path,
) -> None:
    """The processes differ; the header and the number of fields on each line do not."""
    line = f"ps -A -o {columns}"
    real, virtual = _real(tmp_path, toybox_bin, line), _on_phone(phone, tmp_path.name, line)
    for stdout, _, code in (real, virtual):
        assert code == 0
        rows = [row.split() for row in stdout.splitlines()]
        assert rows[0] == columns.split(",") and len(rows) > 1
        assert {len(row) for row in rows} == {len(rows[0])}
