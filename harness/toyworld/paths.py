"""``zoo:`` names for the embedded models and data, usable wherever a local path is expected.

``zoo:toy-unet`` (any trained model) is the model's folder inside the package;
``zoo:reference`` (or ``zoo:reference-N``) is a folder of N held-out real toy-world images (the
``reference`` split, 1000 by default), rendered into the cache on first use: the FID reference.
Anything else is an ordinary path (``~`` expanded).
"""

from __future__ import annotations

import os
from pathlib import Path

PREFIX = "zoo:"
ZOO_DIR = Path(__file__).resolve().parents[1] / "data" / "zoo"
REFERENCE_N = 1000


def is_zoo(spec: object) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def resolve_path(spec: str | os.PathLike) -> Path:
    """The local path a setting names (``zoo:`` names resolved, ``~`` expanded)."""
    if not is_zoo(spec):
        return Path(spec).expanduser()
    name = str(spec)[len(PREFIX):]
    if name == "reference" or name.startswith("reference-"):
        n = int(name.split("-", 1)[1]) if "-" in name else REFERENCE_N
        return reference_folder(n)
    return ZOO_DIR / name


def reference_folder(n: int = REFERENCE_N, size: int = 64) -> Path:
    """N real images of the held-out reference split as PNG files (rendered once, cached)."""
    from harness.toyworld import data, world

    folder = data.cache_root() / f"reference-{n}-{size}px"
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for i, scene in enumerate(world.scenes("reference", n, seed=0)):
        world.render(scene, size).save(folder / f"{i:05d}.png", optimize=False)
    done.write_text(str(n))
    return folder
