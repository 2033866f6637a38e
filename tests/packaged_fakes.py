"""Both packaged tiers replaced by tiny chunk packages on sys.path (a few hundred bytes each):
what `make install` puts in site-packages, so model_files' real lookup, join and verification
run on them, and a conversion is a cache hit (a real one needs real weights)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from engine.model import model_files
from engine.model.model_files import PACKAGED_MODELS


def install_fake_tiers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Fake chunk packages for every tier; returns each tier's joined GGUF bytes by spec."""
    site = tmp_path / "site-packages"
    joined: dict[str, bytes] = {}
    for number, (spec, model) in enumerate(list(PACKAGED_MODELS.items())):
        chunks = [b"GGUF" + bytes([number]) * 100, bytes([number + 10]) * 50]
        packages = []
        for index, data in enumerate(chunks, start=1):
            package = f"fake_tier{number}_part{index}"
            (site / package / "data").mkdir(parents=True)
            (site / package / "__init__.py").write_text("")
            (site / package / "data" / f"part{index:02d}.bin").write_bytes(data)
            packages.append(package)
        whole = joined[spec] = b"".join(chunks)
        fake = dataclasses.replace(model, parts=tuple(packages), size=len(whole),
                                   sha256=hashlib.sha256(whole).hexdigest())  # fmt: skip
        monkeypatch.setitem(PACKAGED_MODELS, spec, fake)
    monkeypatch.syspath_prepend(str(site))
    return joined


def mark_converted(gguf: Path, cache: Path) -> Path:
    """The folder a finished conversion of `gguf` left in the cache (its marker included)."""
    folder = model_files.converted_folder(gguf, cache)
    folder.mkdir(parents=True)
    (folder / "converted.ok").write_text(gguf.name + "\n")
    return folder
