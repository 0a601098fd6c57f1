"""Plugin ``Options`` dataclasses are validated from their annotations, whatever the types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from devicelab._errors import ScenarioError
from devicelab._options import parse_options

WHERE = "s.toml: [models.options]"


@dataclass(frozen=True)
class Window:
    width: int = 80
    unit: Literal["tokens", "chars"] = "tokens"


@dataclass(frozen=True)
class Options:
    n_ctx: int = 2048
    threads: int | None = None
    temperature: float = 0.5
    mode: Literal["fast", "exact"] = "fast"
    stops: list[str] = field(default_factory=list)
    pair: tuple[str, ...] = ()
    window: Window | None = None
    extra_body: dict[str, Any] | None = None
    # Option names that are also names of pydantic's model attributes.
    model: str | None = None
    json: str = ""


@dataclass(frozen=True)
class Needs:
    url: str


def test_defaults_and_every_kind_of_annotation() -> None:
    assert parse_options(Options, {}, WHERE) == Options()
    got = parse_options(
        Options,
        {
            "n_ctx": 512,
            "threads": None,
            "temperature": 1,  # an integer where a number is asked for
            "mode": "exact",
            "stops": ["</s>"],
            "pair": ["a", "b"],  # TOML has arrays, not tuples
            "window": {"width": 40, "unit": "chars"},  # a TOML table fills a dataclass
            "extra_body": {"cache_prompt": False},
            "model": "m",
            "json": "j",
        },
        WHERE,
    )
    assert got == Options(
        512, None, 1.0, "exact", ["</s>"], ("a", "b"), Window(40, "chars"),
        {"cache_prompt": False}, "m", "j",
    )  # fmt: skip
    assert isinstance(got.temperature, float) and isinstance(got.window, Window)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"n_ctx": "big"}, "option 'n_ctx' must be int, not str ('big')."),
        ({"n_ctx": True}, "option 'n_ctx' must be int, not bool (True)."),
        ({"n_ctx": "8"}, "option 'n_ctx' must be int, not str ('8')."),
        ({"n_ctx": 8.5}, "option 'n_ctx' must be int, not float (8.5)."),
        ({"temperature": "hot"}, "option 'temperature' must be float, not str ('hot')."),
        ({"threads": "2"}, "option 'threads' must be int | None, not str ('2')."),
        ({"mode": "slow"}, "option 'mode' must be 'fast' or 'exact', not str ('slow')."),
        ({"stops": "</s>"}, "option 'stops' must be list[str], not str ('</s>')."),
        ({"stops": ["a", 1]}, "option 'stops' must be list[str]: at stops[1], input should be a valid string, not an integer (1)."),
        ({"window": {"width": "wide"}}, "option 'window' must be Window | None: at window.width, input should be a valid integer, not a string ('wide')."),
        ({"window": {"unit": "lines"}}, "option 'window' must be Window | None: at window.unit, input should be 'tokens' or 'chars', not a string ('lines')."),
        ({"window": {"height": 3}}, "option 'window': window.height is not a known key. Remove it or fix its spelling."),
        ({"extra_body": [1]}, "option 'extra_body' must be dict[str, Any] | None, not list ([1])."),
        ({"n_ctxx": 1, "thread": 2}, "unknown option 'n_ctxx', 'thread'. Options accepted here: extra_body, json, mode, model, n_ctx, pair, stops, temperature, threads, window."),
    ],
)  # fmt: skip
def test_wrong_values_are_named_with_what_they_must_be(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_options(Options, values, WHERE)
    assert str(info.value) == f"{WHERE}: {message}"


def test_an_option_without_a_default_is_required() -> None:
    with pytest.raises(ScenarioError, match=r"option 'url' is required but missing. Add it"):
        parse_options(Needs, {}, WHERE)
    assert parse_options(Needs, {"url": "http://x"}, WHERE) == Needs("http://x")


def test_post_init_checks_still_run_and_raise_their_own_error() -> None:
    @dataclass(frozen=True)
    class Checked:
        n: int = 1

        def __post_init__(self) -> None:
            if self.n > 3:
                raise ScenarioError("n must be at most 3")

    assert parse_options(Checked, {"n": 2}, WHERE) == Checked(2)
    with pytest.raises(ScenarioError, match=r"^n must be at most 3$"):
        parse_options(Checked, {"n": 5}, WHERE)
