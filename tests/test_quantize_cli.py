"""`devicelab quantize`: bad types, models and backends are usage errors naming the choices;
a quantiser plugin (installed through a real entry point) is found by type, any case, and its
output lands in the user's cache with its size and bits per weight printed."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from wordsplugin import BUILTINS, install_plugin, run_cli

from devicelab import _plugins as plugin_manager
from devicelab._errors import PluginError

TOY_PLUGIN = textwrap.dedent(
    '''
    """A quantiser that keeps every 4th byte: a stand-in with a known size and bpw."""
    from pathlib import Path

    import devicelab


    class ToyQuantizer(devicelab.Quantizer):
        backend = "toy"
        types = ("TOY4", "Toy8")
        engines = ("toy-engine",)
        suffix = ".toy"

        def quantize(self, source, qtype, out, progress):
            data = source.read_bytes()
            keep = data[::4] if qtype == "TOY4" else data[::2]
            progress(f"keeping {len(keep)} of {len(data)} bytes")
            out.write_bytes(keep)
            return devicelab.QuantizeResult(
                path=out, size_bytes=len(keep), bits_per_weight=8 * len(keep) / len(data),
                params=len(data), backend=self.backend, qtype=qtype, seconds=0.0,
            )


    @devicelab.hookimpl
    def devicelab_register_quantizers(register):
        register(ToyQuantizer())
    '''
)


@pytest.fixture
def toy_installed(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install the toy quantiser as a plugin; the cache goes to a tmp dir. Returns the cache."""
    install_plugin(site, "toyq", TOY_PLUGIN, dist="devicelab_toyq", module="toyquant")
    monkeypatch.setenv("DEVICELAB_PLUGINS", f"{BUILTINS},toyq")
    cache = tmp_path / "cache"
    monkeypatch.setenv("DEVICELAB_CACHE", str(cache))
    plugin_manager.reset()
    return cache


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        # An unknown type: each backend's types are named.
        (
            ["smollm2-135m-instruct", "--to", "q5_9"],
            ["'q5_9'", "gguf: F16, Q8_0, Q4_1, Q4_0, Q4_K_M", "mlc: q4f16_1, q4f16_0, q3f16_1, q0f16"],
        ),
        # An unknown model: every shipped one is named, so the user can copy the right one.
        (
            ["no-such-model", "--to", "q8_0"],
            ["'no-such-model'", "Registered models: ", "smollm2-135m-instruct", "gemma-3-270m"],
        ),
    ],
)  # fmt: skip
def test_an_unknown_name_exits_2_naming_the_known_ones(
    argv: list[str], named: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["quantize", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for text in named:
        assert text in err


def test_unknown_backend_and_type_it_lacks_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["quantize", "smollm2-135m-instruct", "--to", "q8_0", "--backend", "x"]) == 2
    assert "Registered backends: gguf, mlc" in capsys.readouterr().err
    assert run_cli(["quantize", "smollm2-135m-instruct", "--to", "q8_0", "--backend", "mlc"]) == 2
    err = capsys.readouterr().err
    assert "'mlc' cannot make 'q8_0'" in err and "q4f16_1" in err


def test_plugin_quantizer_any_case_into_the_cache(
    toy_installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "weights.bin"
    src.write_bytes(bytes(range(256)) * 4000)  # 1,024,000 bytes
    assert run_cli(["quantize", str(src), "--to", "toy4"]) == 0
    captured = capsys.readouterr()
    made = toy_installed / "models" / "weights-toy4.toy"
    assert made.read_bytes() == src.read_bytes()[::4]
    assert str(made) in captured.out
    assert "size on disk: 0.3 MB (256000 bytes)" in captured.out
    assert "bits per weight: 2.00" in captured.out
    assert "keeping 256000 of 1024000 bytes" in captured.err
    # The canonical spelling is kept ("Toy8"), whatever case the user typed.
    out = tmp_path / "elsewhere" / "w.toy"
    assert run_cli(["quantize", str(src), "--to", "TOY8", "--out", str(out)]) == 0
    assert out.stat().st_size == 512000
    meta = json.loads((out.parent / "w.toy.json").read_text())
    assert meta["qtype"] == "Toy8" and meta["made_from"]["size"] == 1024000


def test_a_quantisation_never_writes_over_its_own_source(
    toy_installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from devicelab._quantize import Source, default_out

    # A model whose file is in the cache under the name its quantisation would get, as the
    # shipped Gemma Q4_K_M is assembled there: the quantised file goes beside it.
    toy = plugin_manager.get_registry().quantizers["toy"][1]
    src = toy_installed / "models" / "weights-toy4.toy"
    src.parent.mkdir(parents=True)
    src.write_bytes(bytes(range(256)) * 40)
    out = default_out(Source("weights", src, "toy-engine", "TOY4"), toy, "TOY4")
    assert out == src.parent / "weights-toy4-requantised.toy"
    assert default_out(Source("weights", src, "toy-engine", "TOY4"), toy, "Toy8") == (
        src.parent / "weights-toy8.toy"
    )
    # Asked outright: refused, naming the fix, and the file is as it was.
    before = src.read_bytes()
    assert run_cli(["quantize", str(src), "--to", "toy8", "--out", str(src)]) == 2
    err = capsys.readouterr().err
    assert "would destroy the source" in err and "Traceback" not in err
    assert src.read_bytes() == before


def test_plugins_command_lists_quantizers(
    toy_installed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["plugins", "--json"]) == 0
    rows = {r["name"]: r["registered"] for r in json.loads(capsys.readouterr().out)}
    assert rows["toyq"]["quantizers"] == ["toy (TOY4, Toy8)"]
    assert rows["llamacpp"]["quantizers"] == ["gguf (F16, Q8_0, Q4_1, Q4_0, Q4_K_M)"]


def test_two_quantizers_with_one_backend_name_is_an_error(toy_installed: Path) -> None:
    import toyquant  # type: ignore[import-not-found]

    pm, broken = plugin_manager.new_plugin_manager()

    class Again:
        @staticmethod
        @toyquant.devicelab.hookimpl
        def devicelab_register_quantizers(register: object) -> None:
            register(toyquant.ToyQuantizer())  # type: ignore[operator]

    plugin_manager.register_plugin(pm, Again(), "again")
    with pytest.raises(PluginError, match="quantizer 'toy' is registered twice"):
        plugin_manager.build_registry(pm, broken)
