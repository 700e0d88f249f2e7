"""``harness suite questions``: have an LLM write DSG-style questions for a suite's prompts.

The ``harness`` command composes the ``key=value`` overrides (``suite=NAME``, ``suite.file=...``,
``question_gen.model=...``) and calls ``main(options, cfg)``; the options are this module's
flags. Answers go to ``<suite stem>.questions.jsonl`` beside the suite file, where
:func:`harness.suites.load_suite` finds them (:mod:`harness.suites.question_file`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.errors import ConfigError, UserError, did_you_mean

EPILOG = """\
examples:
  harness suite questions suite=drawbench --dry-run          # what would be asked, nothing sent
  harness suite questions suite=drawbench                    # question_gen.model (gpt-5.4-mini)
  harness suite questions suite=my-suite --model gpt-5.5 --regenerate
  harness suite questions suite.file=prompts.yaml suite.name=mine question_gen.workers=8

The API key is read from the environment variable question_gen.api_key_env (OPENAI_API_KEY).
Prompts answered before are never asked again: answers by another model or template are kept and
reported (--regenerate asks again), as are refusals and invalid answers (--retry-failed).
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="harness suite questions", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write DSG-style questions (id, question, parents, category, skill) with an "
                    "LLM for the suite's prompts that have none, into <suite>.questions.jsonl.")
    p.add_argument("--provider", help="overrides question_gen.provider (openai)")
    p.add_argument("--model", help="overrides question_gen.model")
    p.add_argument("--base-url", help="overrides question_gen.base_url")
    p.add_argument("--workers", type=int, help="overrides question_gen.workers")
    p.add_argument("--regenerate", action="store_true",
                   help="ask again for every selected prompt (the newest answer wins)")
    p.add_argument("--retry-failed", action="store_true",
                   help="ask again for prompts whose last answer was refused or invalid")
    p.add_argument("--dry-run", action="store_true", help="say what would be asked; send nothing")
    return p


def main(argv: list[str], cfg) -> int:
    """``harness suite ACTION [flags] [key=value ...]``; returns the exit status."""
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: harness suite questions [--help] [flags] [suite=NAME] [key=value ...]\n\n"
              "actions:\n  questions  have an LLM write DSG-style questions for prompts lacking them")
        return 0
    action, rest = argv[0], argv[1:]
    if action != "questions":
        raise UserError(f"unknown action {action!r}.{did_you_mean(action, ['questions'])}")
    args, extra = _parser().parse_known_args(rest)
    if extra:
        raise UserError(f"unexpected argument(s) {' '.join(extra)}; name the suite as suite=NAME "
                        "(a config under conf/suite/) or suite.file=PATH.")
    return run(args, cfg)


def run(args: argparse.Namespace, cfg) -> int:
    """Load the suite, check the model and key, and write the questions."""
    from harness.config import validate
    from harness.suites import load_suite
    from harness.suites.question_gen import PROVIDERS, OpenAIQuestionWriter, check_model, write_questions

    try:
        cfg = validate(cfg)
        q = cfg.question_gen
        provider = args.provider or q.provider
        model = args.model or q.model
        base_url = args.base_url or q.base_url
        if provider not in PROVIDERS:
            raise ConfigError(f"question_gen.provider: {provider!r} is not supported."
                              f"{did_you_mean(provider, PROVIDERS)}")
        suite = load_suite(cfg.suite)
        note = check_model(model, custom_endpoint=bool(base_url))
    except ConfigError as e:
        raise UserError(str(e)) from None
    if note:
        print(note, file=sys.stderr)
    key = os.environ.get(q.api_key_env, "")
    if not key and not args.dry_run:
        raise UserError(f"no API key: set the environment variable {q.api_key_env} "
                        "(question_gen.api_key_env names it).")

    class DryWriter:  # nothing is sent in a dry run, so no client (and no key) is needed
        def __init__(self) -> None:
            self.provider, self.model = provider, model

    writer = DryWriter() if args.dry_run else OpenAIQuestionWriter(
        model, api_key=key, base_url=base_url, timeout_s=float(q.timeout_s),
        max_retries=int(q.max_retries))
    try:
        counts = write_questions(suite.prompts, Path(suite.source), writer,
                                 regenerate=args.regenerate, retry_failed=args.retry_failed,
                                 workers=args.workers or int(q.workers), dry_run=args.dry_run)
    except ConfigError as e:  # a questions file that cannot be read
        raise UserError(str(e)) from None
    return 0 if counts["invalid"] == 0 else 1

