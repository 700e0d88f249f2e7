"""GenEval 2 (Kamath et al. 2025): ``geneval2_data.jsonl``, one object a line.

Each line has ``prompt``, ``atom_count`` (its compositionality), ``vqa_list`` (pairs
``[question, answer]``: "Yes" for yes/no atoms, a number word for "How many ...?") and
``skills`` (one per pair: object, attribute, count, position, ...). The pairs become
``Prompt.meta["questions"]`` (category = skill) for the ``questions`` metric, whose ``soft``
output is Soft-TIFA (AM) and ``soft_gm`` Soft-TIFA GM; tags ``atoms:<n>``.
"""

from __future__ import annotations

from pathlib import Path

from harness.suites.base import Parsed, json_lines, located, numbered_prompt, register_format

SOURCE = ("geneval2_data.jsonl is in https://github.com/facebookresearch/GenEval2 (CC BY-NC 4.0); "
          "set suite.file to its path.")


@register_format("geneval2", source=SOURCE)
def load(path: Path) -> Parsed:
    """Read GenEval 2: ids ``geneval2-0000`` (line order)."""
    prompts = []
    for n, (line, obj) in enumerate(json_lines(path)):
        vqa, skills = obj.get("vqa_list"), obj.get("skills")
        if not isinstance(obj.get("prompt"), str) or not isinstance(vqa, list):
            raise located(path, line, "missing prompt or vqa_list (GenEval 2 lines carry prompt, "
                                      "atom_count, vqa_list, skills); is this geneval2_data.jsonl?")
        if skills is not None and (not isinstance(skills, list) or len(skills) != len(vqa)):
            raise located(path, line, f"skills has {len(skills) if isinstance(skills, list) else '?'} "
                                      f"entries for {len(vqa)} vqa_list pairs.")
        questions = []
        for k, pair in enumerate(vqa):
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise located(path, line, f"vqa_list[{k}] must be [question, answer], got {pair!r}.")
            questions.append({"id": str(k + 1), "question": pair[0], "answer": pair[1],
                              "category": str(skills[k]) if skills else ""})
        meta = {"questions": questions, **{k: v for k, v in obj.items()
                                           if k not in ("prompt", "vqa_list", "skills")}}
        tags = {"atoms": str(obj["atom_count"])} if "atom_count" in obj else {}
        prompts.append(numbered_prompt("geneval2", n, 4, obj["prompt"], tags, meta, path, line))
    return Parsed(tuple(prompts))
