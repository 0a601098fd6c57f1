"""Stop sequences: devicelab.stop_at on finished text, StopCutter token by token."""

from __future__ import annotations

import pytest

from devicelab import StopCutter, find_stop, stop_at


@pytest.mark.parametrize(
    ("text", "stops", "cut"),
    [
        (" 12\n\nQuestion: How long?", ("\n\n", "Question:"), " 12"),
        (" 12 Question: again", ("\n\n", "Question:"), " 12 "),  # the earliest stop wins
        ("The port grew.", ("\n\n",), "The port grew."),  # no stop: all of it
        # Blank lines before the answer has begun do not end it.
        ("\n\nThe port grew.\n\nDocument:", ("\n\n", "Document:"), "\n\nThe port grew."),
        ("Question: first", ("Question:",), ""),  # a stop right at the start does
        ("abc", (), "abc"),
        ("abc", ("",), "abc"),  # an empty stop is no stop
    ],
)
def test_stop_at_cuts_at_the_earliest_stop_after_the_answer_begins(
    text: str, stops: tuple[str, ...], cut: str
) -> None:
    assert stop_at(text, stops) == cut
    assert find_stop(text, stops) == (None if cut == text else len(cut))


def feed(
    pieces: list[str], stops: tuple[str, ...]
) -> tuple[list[tuple[str, int]], StopCutter[int]]:
    cutter = StopCutter[int](stops)
    out: list[tuple[str, int]] = []
    for i, piece in enumerate(pieces):
        out += cutter.add(piece, i)
        if cutter.stopped:
            break
    out += cutter.flush()
    return out, cutter


def test_cutter_drops_the_tokens_of_the_stop_and_after_it() -> None:
    out, cutter = feed([" 1", "2", "\n", "\n", "Question", ":", " How"], ("\n\n", "Question:"))
    assert cutter.stopped and cutter.text == " 12"
    # The two newline tokens were held back (they might begin "\n\n"), then dropped.
    assert out == [(" 1", 0), ("2", 1)]


def test_cutter_releases_a_held_token_once_it_cannot_begin_a_stop() -> None:
    cutter = StopCutter[int](("\n\n", "Question:"))
    assert cutter.add(" 12", 0) == [(" 12", 0)]
    assert cutter.add("\n", 1) == []  # may be the start of "\n\n"
    # "\nQue" cannot begin a stop, so the newline is answer; "Que" may begin "Question:".
    assert cutter.add("Que", 2) == [("\n", 1)]
    assert cutter.add("en", 3) == [("Que", 2), ("en", 3)]
    assert not cutter.stopped
    assert cutter.text == " 12\nQueen"


def test_cutter_keeps_the_answer_part_of_a_token_that_runs_into_a_stop() -> None:
    out, cutter = feed(["The end.", "\n\nDocument", ":"], ("\n\n", "Document:"))
    assert cutter.text == "The end."
    assert out == [("The end.", 0)]
    out, cutter = feed(["Yes.Ques", "tion: no"], ("Question:",))
    assert cutter.text == "Yes."
    assert out == [("Yes.", 0)]  # the token is counted, with its text up to the stop


def test_cutter_without_a_stop_releases_everything_and_text_is_whole() -> None:
    pieces = ["\n", "\n", "A", " quay", "\n"]
    out, cutter = feed(pieces, ("\n\n",))
    assert not cutter.stopped
    assert out == [(p, i) for i, p in enumerate(pieces)]
    assert cutter.text == "".join(pieces) == stop_at("".join(pieces), ("\n\n",))
