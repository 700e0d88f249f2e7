"""GenEval (Ghosh et al. 2023): ``evaluation_metadata.jsonl``, one object a line.

Each line has ``prompt``, ``tag`` (single_object, two_object, counting, colors, position,
color_attr), ``include`` (objects the image must show: class, count, optional color and
position) and, for counting, ``exclude``. The object specs are kept in ``Prompt.meta`` for
GenEval-style scoring.
"""

from __future__ import annotations

from pathlib import Path

from harness.suites.base import Parsed, json_lines, located, numbered_prompt, register_format

SOURCE = ("evaluation_metadata.jsonl is in https://github.com/djghosh13/geneval (prompts/); "
          "set HARNESS_GENEVAL or suite.file to its path.")


@register_format("geneval", source=SOURCE)
def load(path: Path) -> Parsed:
    """Read GenEval metadata: ids ``geneval-0000`` (line order), tag ``category:<tag>``."""
    prompts = []
    for n, (line, obj) in enumerate(json_lines(path)):
        for key in ("prompt", "tag"):
            if not isinstance(obj.get(key), str):
                raise located(path, line, f"missing {key!r} (GenEval lines carry prompt, tag, "
                                          "include); is this evaluation_metadata.jsonl?")
        meta = {k: v for k, v in obj.items() if k not in ("prompt", "tag")}
        prompts.append(numbered_prompt("geneval", n, 4, obj["prompt"], {"category": obj["tag"]},
                                       meta, path, line))
    return Parsed(tuple(prompts))
