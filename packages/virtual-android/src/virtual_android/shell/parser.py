"""The shell's parser: tokens into a tree of commands, lists, loops and conditionals."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .lexer import NAME_RE, Part, ShellSyntaxError, Token, Word, tokenize

_ASSIGN_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")
_TERMINATORS = {"do", "done", "then", "elif", "else", "fi", "}", "esac"}


@dataclass
class Redirect:
    fd: int  # -2 means both stdout and stderr (&>)
    op: str  # > >> < >& <& <>
    target: Word


@dataclass
class Node:
    redirects: list[Redirect] = field(default_factory=list)


@dataclass
class SimpleCommand(Node):
    assigns: list[tuple[str, Word]] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)


@dataclass
class Pipeline(Node):
    commands: list[Node] = field(default_factory=list)
    negate: bool = False


@dataclass
class AndOr(Node):
    first: Node = field(default_factory=Node)
    rest: list[tuple[str, Node]] = field(default_factory=list)


@dataclass
class CommandList(Node):
    items: list[tuple[Node, bool]] = field(default_factory=list)  # (node, background)


@dataclass
class WhileLoop(Node):
    condition: CommandList = field(default_factory=CommandList)
    body: CommandList = field(default_factory=CommandList)
    until: bool = False


@dataclass
class ForLoop(Node):
    var: str = ""
    words: list[Word] | None = None
    body: CommandList = field(default_factory=CommandList)


@dataclass
class IfClause(Node):
    branches: list[tuple[CommandList, CommandList]] = field(default_factory=list)
    otherwise: CommandList | None = None


@dataclass
class Group(Node):
    body: CommandList = field(default_factory=CommandList)
    subshell: bool = False


@dataclass
class CaseClause(Node):
    subject: Word = field(default_factory=Word)
    arms: list[tuple[list[Word], CommandList]] = field(default_factory=list)


@dataclass
class FunctionDef(Node):
    name: str = ""
    body: Node = field(default_factory=Node)


class Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.open: list[str] = []

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def next(self) -> Token:
        token = self.tokens[self.pos]
        if token.kind != "EOF":
            self.pos += 1
        return token

    def at_op(self, *ops: str) -> bool:
        token = self.peek()
        return token.kind == "OP" and token.value in ops

    def at_word(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "WORD" and token.word is not None and token.word.plain() in words

    def describe(self, token: Token) -> str:
        if token.kind == "EOF":
            return "EOF"
        if token.kind == "WORD" and token.word is not None:
            return token.word.literal_text() or "word"
        return "newline" if token.value == "\n" else token.value

    def unexpected(self, token: Token | None = None) -> ShellSyntaxError:
        token = token or self.peek()
        if token.kind == "EOF":
            what = f"unmatched '{self.open[-1]}'" if self.open else "unexpected EOF"
        else:
            what = f"unexpected '{self.describe(token)}'"
        return ShellSyntaxError(f"syntax error: {what}")

    def expect_word(self, word: str) -> None:
        if not self.at_word(word):
            raise self.unexpected()
        self.next()

    def skip_newlines(self) -> None:
        while self.at_op("\n"):
            self.next()

    def parse_program(self) -> CommandList:
        result = self.parse_list(top=True)
        if self.peek().kind != "EOF":
            raise self.unexpected()
        return result

    def parse_line(self) -> CommandList | None:
        """The next line of a script (None at its end): mksh parses and runs a script one
        line at a time, so the lines before a syntax error have run."""
        self.skip_newlines()
        if self.peek().kind == "EOF":
            return None
        line = self.parse_list(top=True, one_line=True)
        if not self.at_op("\n") and self.peek().kind != "EOF":
            raise self.unexpected()
        return line

    def parse_list(self, top: bool = False, one_line: bool = False) -> CommandList:
        items: list[tuple[Node, bool]] = []
        self.skip_newlines()
        while True:
            token = self.peek()
            if token.kind == "EOF":
                break
            if self.at_op(")", ";;") or self.at_word(*_TERMINATORS):
                break
            node = self.parse_and_or()
            background = False
            if self.at_op(";", "&"):
                background = self.next().value == "&"
            elif self.at_op("\n"):
                pass
            elif not (
                self.peek().kind == "EOF" or self.at_op(")", ";;") or self.at_word(*_TERMINATORS)
            ):
                raise self.unexpected()
            items.append((node, background))
            if one_line and self.at_op("\n"):
                break
            self.skip_newlines()
        if not items and not top:
            raise self.unexpected()
        return CommandList(items=items)

    def parse_and_or(self) -> Node:
        first = self.parse_pipeline()
        rest: list[tuple[str, Node]] = []
        while self.at_op("&&", "||"):
            op = self.next().value
            self.skip_newlines()
            rest.append((op, self.parse_pipeline()))
        if not rest:
            return first
        return AndOr(first=first, rest=rest)

    def parse_pipeline(self) -> Node:
        negate = False
        if self.at_word("!"):
            self.next()
            negate = True
        commands = [self.parse_command()]
        while self.at_op("|"):
            self.next()
            self.skip_newlines()
            commands.append(self.parse_command())
        if len(commands) == 1 and not negate:
            return commands[0]
        return Pipeline(commands=commands, negate=negate)

    def parse_redirect(self, token: Token) -> Redirect:
        target = self.next()
        if target.kind != "WORD" or target.word is None:
            raise self.unexpected(target)
        fd = token.fd
        if fd == -1:
            fd = 0 if token.value in ("<", "<&", "<>", "<<") else 1
        return Redirect(fd=fd, op=token.value, target=target.word)

    def parse_trailing_redirects(self, node: Node) -> Node:
        while self.peek().kind == "REDIR":
            node.redirects.append(self.parse_redirect(self.next()))
        return node

    def parse_command(self) -> Node:
        token = self.peek()
        opener = "(" if token.kind == "OP" and token.value == "(" else None
        if token.kind == "WORD" and token.word is not None:
            keyword = token.word.plain()
            if keyword in ("while", "until", "for", "if", "{", "case"):
                opener = keyword
            elif keyword in _TERMINATORS or keyword == "in":
                raise self.unexpected()
            elif keyword and NAME_RE.fullmatch(keyword) and self._at_function_parens():
                self.pos += 3
                self.skip_newlines()
                return FunctionDef(name=keyword, body=self.parse_command())
        if opener is None:
            return self.parse_simple()
        # What is open, so that running out of text names it, as mksh does.
        self.open.append(opener)
        node = self.parse_trailing_redirects(self._compound(opener))
        self.open.pop()
        return node

    def _compound(self, opener: str) -> Node:
        if opener == "(":
            self.next()
            body = self.parse_list()
            if not self.at_op(")"):
                raise self.unexpected()
            self.next()
            return Group(body=body, subshell=True)
        if opener in ("while", "until"):
            self.next()
            condition = self.parse_list()
            self.expect_word("do")
            body = self.parse_list()
            self.expect_word("done")
            return WhileLoop(condition=condition, body=body, until=opener == "until")
        if opener == "{":
            self.next()
            body = self.parse_list()
            self.expect_word("}")
            return Group(body=body)
        return {"for": self.parse_for, "if": self.parse_if, "case": self.parse_case}[opener]()

    def _at_function_parens(self) -> bool:
        after = self.tokens[self.pos + 1 : self.pos + 3]
        return [(t.kind, t.value) for t in after] == [("OP", "("), ("OP", ")")]

    def parse_case(self) -> CaseClause:
        self.next()
        subject = self.next()
        if subject.kind != "WORD" or subject.word is None:
            raise self.unexpected(subject)
        self.skip_newlines()
        self.expect_word("in")
        self.skip_newlines()
        arms: list[tuple[list[Word], CommandList]] = []
        while not self.at_word("esac"):
            if self.at_op("("):
                self.next()
            patterns: list[Word] = []
            while True:
                token = self.next()
                if token.kind != "WORD" or token.word is None:
                    raise self.unexpected(token)
                patterns.append(token.word)
                if not self.at_op("|"):
                    break
                self.next()
            if not self.at_op(")"):
                raise self.unexpected()
            self.next()
            body = CommandList() if self.at_op(";;") else self.parse_list(top=True)
            arms.append((patterns, body))
            if not self.at_op(";;"):
                break
            self.next()
            self.skip_newlines()
        self.expect_word("esac")
        return CaseClause(subject=subject.word, arms=arms)

    def parse_for(self) -> ForLoop:
        self.next()
        name_token = self.next()
        name = name_token.word.plain() if name_token.word is not None else None
        if not name or not NAME_RE.fullmatch(name):
            raise ShellSyntaxError(
                f"syntax error: for: '{self.describe(name_token)}': bad identifier"
            )
        words: list[Word] | None = None
        self.skip_newlines()
        if self.at_word("in"):
            self.next()
            words = []
            while self.peek().kind == "WORD":
                word = self.next().word
                assert word is not None
                words.append(word)
        if self.at_op(";", "\n"):
            self.next()
        self.skip_newlines()
        self.expect_word("do")
        body = self.parse_list()
        self.expect_word("done")
        return ForLoop(var=name, words=words, body=body)

    def parse_if(self) -> IfClause:
        self.next()
        branches: list[tuple[CommandList, CommandList]] = []
        condition = self.parse_list()
        self.expect_word("then")
        branches.append((condition, self.parse_list()))
        otherwise: CommandList | None = None
        while True:
            if self.at_word("elif"):
                self.next()
                condition = self.parse_list()
                self.expect_word("then")
                branches.append((condition, self.parse_list()))
                continue
            if self.at_word("else"):
                self.next()
                otherwise = self.parse_list()
            self.expect_word("fi")
            break
        return IfClause(branches=branches, otherwise=otherwise)

    def parse_simple(self) -> SimpleCommand:
        command = SimpleCommand()
        while True:
            token = self.peek()
            if token.kind == "REDIR":
                command.redirects.append(self.parse_redirect(self.next()))
                continue
            if token.kind != "WORD" or token.word is None:
                break
            word = token.word
            if not command.words:
                first = word.parts[0] if word.parts else None
                if first is not None and first.kind == "lit":
                    match = _ASSIGN_RE.match(first.text)
                    if match:
                        value = Word([Part("lit", first.text[match.end() :]), *word.parts[1:]])
                        value.parts = [
                            p for p in value.parts if not (p.kind == "lit" and not p.text)
                        ]
                        command.assigns.append((match.group(1), value))
                        self.next()
                        continue
            command.words.append(word)
            self.next()
        if not command.words and not command.assigns and not command.redirects:
            raise self.unexpected()
        return command


def parse(text: str) -> CommandList:
    return Parser(tokenize(text)).parse_program()
