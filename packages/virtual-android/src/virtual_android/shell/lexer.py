"""The shell's lexer: text into words (quoted and unquoted parts) and operators."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import VirtualAndroidError

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ShellSyntaxError(VirtualAndroidError):
    pass


@dataclass(frozen=True)
class Part:
    kind: str  # lit | qlit | var | qvar | arith | cmdsub | qcmdsub
    text: str
    op: str = ""  # for ${NAME<op>arg}
    arg: str = ""


@dataclass
class Word:
    parts: list[Part] = field(default_factory=list)

    def plain(self) -> str | None:
        """The text if the word is one unquoted literal (keywords, names)."""
        if len(self.parts) == 1 and self.parts[0].kind == "lit":
            return self.parts[0].text
        return None

    def literal_text(self) -> str:
        return "".join(p.text for p in self.parts if p.kind in ("lit", "qlit"))


@dataclass(frozen=True)
class Token:
    kind: str  # WORD | OP | REDIR | EOF
    value: str = ""
    word: Word | None = None
    fd: int = -1


_SPECIAL_VARS = set("?$#!@*-0123456789")
BRACED_RE = r"([A-Za-z_][A-Za-z0-9_]*|[?$#!0-9])(?:(:?[-=+?])(.*))?"


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    n = len(text)
    word: Word | None = None
    lit = ""

    def flush_lit() -> None:
        nonlocal lit
        if lit:
            assert word is not None
            word.parts.append(Part("lit", lit))
            lit = ""

    def end_word() -> None:
        nonlocal word
        flush_lit()
        if word is not None:
            tokens.append(Token("WORD", word=word))
            word = None

    def start_word() -> Word:
        nonlocal word
        if word is None:
            word = Word()
        return word

    def closing_paren(pos: int) -> int:
        """The `)` that closes the `(` at text[pos], past quotes and nested parentheses."""
        depth = 0
        j = pos
        while j < n:
            c = text[j]
            if c == "\\":
                j += 2
                continue
            if c == "'":
                j = text.find("'", j + 1)
                if j < 0:
                    break
            elif c == '"':
                j += 1
                while j < n and text[j] != '"':
                    j += 2 if text[j] == "\\" else 1
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    return j
            j += 1
        raise ShellSyntaxError("syntax error: unmatched '('")

    def read_backticks(pos: int) -> tuple[str, int]:
        """The command between the backquote at text[pos] and the next unescaped one."""
        out: list[str] = []
        j = pos + 1
        while j < n and text[j] != "`":
            if text[j] == "\\" and j + 1 < n and text[j + 1] in "`$\\":
                j += 1
            out.append(text[j])
            j += 1
        if j >= n:
            raise ShellSyntaxError("no closing quote")
        return "".join(out), j + 1

    def read_var(pos: int, quoted: bool) -> tuple[Part | None, int]:
        """Parse after a `$` at text[pos]; returns (part or None for a literal $, new pos)."""
        kind = "qvar" if quoted else "var"
        if pos >= n:
            return None, pos
        ch = text[pos]
        if ch == "{":
            end = text.find("}", pos + 1)
            if end < 0:
                raise ShellSyntaxError("no closing quote")
            inner = text[pos + 1 : end]
            match = re.fullmatch(BRACED_RE, inner, re.S)
            if not match:
                raise ShellSyntaxError(f"${{{inner}}}: bad substitution")
            return Part(kind, match.group(1), match.group(2) or "", match.group(3) or ""), end + 1
        if ch == "(":
            if text.startswith("((", pos):
                depth = 0
                j = pos
                while j < n:
                    if text[j] == "(":
                        depth += 1
                    elif text[j] == ")":
                        depth -= 1
                        if depth == 0:
                            break
                    j += 1
                if j >= n or not text.startswith("))", j - 1) or text[j - 1] != ")":
                    raise ShellSyntaxError("no closing quote")
                return Part("arith", text[pos + 2 : j - 1]), j + 1
            end = closing_paren(pos)
            return Part("qcmdsub" if quoted else "cmdsub", text[pos + 1 : end]), end + 1
        if ch in _SPECIAL_VARS:
            return Part(kind, ch), pos + 1
        match = NAME_RE.match(text, pos)
        if match:
            return Part(kind, match.group(0)), match.end()
        return None, pos

    # Here-documents seen on the current line: (delimiter, strip tabs, word to fill). Their
    # bodies start on the next line, so the word is filled in when the newline is reached.
    pending: list[tuple[str, bool, Word, bool]] = []

    def read_heredoc_delimiter(pos: int) -> int:
        strip = text.startswith("-", pos)
        if strip:
            pos += 1
        while pos < n and text[pos] in " \t":
            pos += 1
        start = pos
        while pos < n and text[pos] not in " \t\n;&|<>()":
            pos += 1
        raw = text[start:pos]
        if not raw:
            raise ShellSyntaxError("here document delimiter missing")
        delimiter = raw.replace("'", "").replace('"', "").replace("\\", "")
        pending.append((delimiter, strip, Word(), delimiter != raw))
        return pos

    def read_heredocs(pos: int) -> int:
        for delimiter, strip, word, quoted in pending:
            lines: list[str] = []
            while True:
                if pos >= n:
                    raise ShellSyntaxError(f"here document '{delimiter}' unclosed")
                end = text.find("\n", pos)
                end = n if end < 0 else end
                line = text[pos:end]
                pos = end + 1
                if strip:
                    line = line.lstrip("\t")
                if line == delimiter:
                    break
                lines.append(line + "\n")
            body = "".join(lines)
            word.parts = [Part("qlit", body)] if quoted or not body else _heredoc_word(body).parts
        pending.clear()
        return pos

    while i < n:
        ch = text[i]
        if ch in " \t":
            end_word()
            i += 1
            continue
        if ch == "\\":
            if i + 1 < n and text[i + 1] == "\n":
                i += 2
                continue
            start_word()
            flush_lit()
            if i + 1 < n:
                assert word is not None
                word.parts.append(Part("qlit", text[i + 1]))
                i += 2
            else:
                lit += "\\"
                i += 1
            continue
        if ch == "#" and word is None:
            while i < n and text[i] != "\n":
                i += 1
            continue
        if ch == "\n":
            end_word()
            tokens.append(Token("OP", "\n"))
            i = read_heredocs(i + 1)
            continue
        if ch in ";&|()":
            end_word()
            two = text[i : i + 2]
            if two in ("&&", "||", ";;"):
                tokens.append(Token("OP", two))
                i += 2
            elif two == "&>":
                j = i + 2
                append = text.startswith(">", j)
                if append:
                    j += 1
                tokens.append(Token("REDIR", ">>" if append else ">", fd=-2))
                i = j
            else:
                tokens.append(Token("OP", ch))
                i += 1
            continue
        if ch in "<>":
            fd = -1
            if word is not None and len(word.parts) == 0 and lit.isdigit():
                fd = int(lit)
                lit = ""
                word = None
            else:
                end_word()
            two = text[i : i + 2]
            if two == "<<":
                i = read_heredoc_delimiter(i + 2)
                tokens.append(Token("REDIR", "<<", fd=fd))
                tokens.append(Token("WORD", word=pending[-1][2]))
                continue
            if two in (">>", ">&", "<&", ">|", "<>"):
                op = ">" if two == ">|" else two
                i += 2
            else:
                op = ch
                i += 1
            tokens.append(Token("REDIR", op, fd=fd))
            continue
        if ch == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ShellSyntaxError("no closing quote")
            start_word()
            flush_lit()
            assert word is not None
            word.parts.append(Part("qlit", text[i + 1 : end]))
            i = end + 1
            continue
        if ch == '"':
            start_word()
            flush_lit()
            assert word is not None
            j = i + 1
            buf = ""
            quoted_any = False
            while True:
                if j >= n:
                    raise ShellSyntaxError("no closing quote")
                c = text[j]
                if c == '"':
                    j += 1
                    break
                if c == "\\" and j + 1 < n and text[j + 1] in '$`"\\\n':
                    if text[j + 1] != "\n":
                        buf += text[j + 1]
                    j += 2
                    continue
                if c in "$`":
                    part: Part | None
                    if c == "`":
                        inner, new_j = read_backticks(j)
                        part = Part("qcmdsub", inner)
                    else:
                        part, new_j = read_var(j + 1, quoted=True)
                    if part is not None:
                        if buf:
                            word.parts.append(Part("qlit", buf))
                            buf = ""
                        word.parts.append(part)
                        quoted_any = True
                        j = new_j
                        continue
                buf += c
                j += 1
            if buf or not quoted_any:
                word.parts.append(Part("qlit", buf))
            i = j
            continue
        if ch == "`":
            inner, i = read_backticks(i)
            start_word()
            flush_lit()
            assert word is not None
            word.parts.append(Part("cmdsub", inner))
            continue
        if ch == "$":
            part, new_i = read_var(i + 1, quoted=False)
            start_word()
            if part is None:
                lit += "$"
                i += 1
                continue
            flush_lit()
            assert word is not None
            word.parts.append(part)
            i = new_i
            continue
        start_word()
        lit += ch
        i += 1
    end_word()
    if pending:
        raise ShellSyntaxError(f"here document '{pending[0][0]}' unclosed")
    tokens.append(Token("EOF"))
    return tokens


def _heredoc_word(body: str) -> Word:
    """An unquoted here-document's body expands as inside double quotes, except that `"`
    is just a character: lexed as a double-quoted string once each `"`, and each backslash
    that escapes nothing here, is escaped."""
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body) and body[i + 1] in "$`\\\n":
            out.append(body[i : i + 2])
            i += 2
            continue
        out.append('\\"' if ch == '"' else "\\\\" if ch == "\\" else ch)
        i += 1
    word = tokenize('"' + "".join(out) + '"')[0].word
    assert word is not None
    return word
