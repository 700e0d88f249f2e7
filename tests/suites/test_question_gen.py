"""'harness suite questions': an LLM writes DSG-style questions into the suite's questions file.

Driven through the official openai SDK against the fake Chat Completions server on 127.0.0.1
(harness/testing/fakes/openai_chat.py), whose model list, shut-down dates, body fields and
strict-schema rule come from the installed SDK.
"""

import datetime as dt
import json
import re

import pytest

from harness import cli
from harness.config import SuiteConfig
from harness.errors import ConfigError
from harness.metrics.questions import normalise_questions
from harness.suites import SuiteError, load_suite
from harness.suites.question_file import QuestionError, check_questions, questions_path, read_entries
from harness.suites.question_gen import SCHEMA, check_model, parse_answer, template_hash
from harness.testing.fakes import FakeProviders, Fault, openai_chat
from harness.testing.fakes.openai_chat import Said

openai = pytest.importorskip("openai")

KEY = "sk-questions-test-9f8e7d6c5b4a"

SUITE = """\
name: qsuite
prompts:
  - id: cat
    text: a black cat on a red sofa
  - id: dog
    text: two brown dogs
  - id: sign
    text: a sign that says OPEN
  - id: given
    text: a blue cube
    questions:
      - {id: "1", question: "Is there a cube?"}
      - {id: "2", question: "Is the cube blue?", parents: ["1"]}
"""


def dsg_writer(text: str):
    """The fake model: an entity question and an attribute question that depends on it."""
    prompt = text.removeprefix("Prompt: ")
    if "forbidden" in prompt:
        return Said(refusal="I can't help with that request.")
    words = prompt.split()
    qs = [{"id": "1", "question": f"Is there a {words[-1]}?", "parents": [], "category": "entity",
           "skill": "whole"},
          {"id": "2", "question": f"Is the {words[-1]} {words[1]}?", "parents": ["1"],
           "category": "attribute", "skill": "color"}]
    if "loop" in prompt:
        qs[0]["parents"] = ["2"]
    return json.dumps({"questions": qs})


@pytest.fixture
def fake():
    with FakeProviders(api_key=KEY, providers=(openai_chat.install,)) as f:
        f.chat.writer = dsg_writer
        yield f


@pytest.fixture
def suite_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    p = tmp_path / "qsuite.yaml"
    p.write_text(SUITE, encoding="utf-8")
    return p


def run_cli(fake, suite_file, *args):
    return cli.main(["suite", "questions", f"suite.file={suite_file}", "suite.name=qsuite",
                     f"question_gen.base_url={fake.url}/v1", "question_gen.max_retries=0",
                     "question_gen.workers=2", *args])


def lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# -- validation ------------------------------------------------------------------------------------


def test_check_questions_orders_parents_first_and_rejects_bad_sets():
    qs = check_questions([{"id": "2", "question": "Is it red?", "parents": ["1"], "category": "attribute"},
                          {"id": "1", "question": "Is there a ball?", "parents": []}])
    assert [q["id"] for q in qs] == ["1", "2"]
    assert qs[1] == {"id": "2", "question": "Is it red?", "parents": ["1"], "answer": "yes",
                     "category": "attribute", "skill": ""}
    with pytest.raises(QuestionError, match=r"cycle: 1 -> 2 -> 1|cycle: 2 -> 1 -> 2"):
        check_questions([{"id": "1", "question": "a?", "parents": ["2"]},
                         {"id": "2", "question": "b?", "parents": ["1"]}])
    with pytest.raises(QuestionError, match="cycle: 1 -> 1"):
        check_questions([{"id": "1", "question": "a?", "parents": ["1"]}])
    with pytest.raises(QuestionError, match="depends on '7', which is not a question"):
        check_questions([{"id": "1", "question": "a?", "parents": ["7"]}])
    with pytest.raises(QuestionError, match="appears twice"):
        check_questions([{"id": "1", "question": "a?"}, {"id": "1", "question": "b?"}])
    with pytest.raises(QuestionError, match="category 'colour' is not one of"):
        check_questions([{"id": "1", "question": "a?", "category": "colour"}])
    with pytest.raises(QuestionError, match="non-empty list"):
        check_questions([])


def test_parse_answer_statuses():
    assert parse_answer(None, "no", "stop").status == "refused"
    assert parse_answer('{"questions": [', None, "length").error.startswith("answer cut off")
    bad = parse_answer("not json", None, "stop")
    assert bad.status == "invalid" and bad.error.startswith("not JSON") and bad.raw == "not json"
    assert parse_answer('{"qs": []}', None, "stop").error.startswith("expected an object")
    ok = parse_answer(dsg_writer("Prompt: a red ball"), None, "stop", "m", {"prompt_tokens": 3})
    assert ok.status == "ok" and [q["question"] for q in ok.questions] == ["Is there a ball?",
                                                                          "Is the ball red?"]


def test_model_checks_follow_the_sdk_deprecation_list():
    # The SDK's ChatModel docstring announces gpt-5's shutdown for 2026-12-11.
    assert "2026-12-11" in check_model("gpt-5", dt.date(2026, 12, 1))
    with pytest.raises(ConfigError, match="gpt-5 was shut down on 2026-12-11"):
        check_model("gpt-5", dt.date(2026, 12, 12))
    with pytest.raises(ConfigError, match="Not a supported model ID"):
        check_model("gpt-5.1-mini", dt.date(2026, 12, 1))
    with pytest.raises(ConfigError, match="not a chat model the installed openai SDK knows"):
        check_model("gpt-9-imaginary", dt.date(2026, 12, 1))
    assert check_model("my-local-model", custom_endpoint=True) == ""
    assert check_model("gpt-5.4-mini", dt.date(2026, 12, 1)) == ""  # the default


# -- the fake follows the SDK ----------------------------------------------------------------------


def test_fake_answers_parse_as_the_sdks_chat_completion_and_check_requests(fake):
    client = openai.OpenAI(api_key=KEY, base_url=fake.url + "/v1", max_retries=0)
    fmt = {"type": "json_schema", "json_schema": {"name": "dsg_questions", "strict": True,
                                                  "schema": SCHEMA}}
    r = client.chat.completions.create(model="gpt-5.4-mini", response_format=fmt,
                                       messages=[{"role": "user", "content": "Prompt: a red ball"}])
    assert isinstance(r, openai.types.chat.ChatCompletion)
    assert r.model == "gpt-5.4-mini-2026-03-17" and r.choices[0].finish_reason == "stop"
    assert json.loads(r.choices[0].message.content)["questions"][0]["question"] == "Is there a ball?"
    # Strict Structured Outputs: every property required, no additional properties.
    loose = json.loads(json.dumps(SCHEMA))
    loose["properties"]["questions"]["items"]["required"].remove("skill")
    with pytest.raises(openai.BadRequestError, match="Missing 'skill'"):
        client.chat.completions.create(model="gpt-5.4-mini", messages=[{"role": "user", "content": "x"}],
                                       response_format={"type": "json_schema", "json_schema": {
                                           "name": "q", "strict": True, "schema": loose}})
    with pytest.raises(openai.BadRequestError, match="Unrecognized request argument"):
        client.chat.completions.create(model="gpt-5.4-mini", messages=[{"role": "user", "content": "x"}],
                                       extra_body={"promt": "x"})
    fake.chat.today = dt.date(2026, 12, 12)  # past gpt-5's announced shutdown
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "x"}])


# -- the command -----------------------------------------------------------------------------------


def test_questions_written_once_loaded_by_the_suite_and_usable_by_the_metric(fake, suite_file, capsys):
    assert run_cli(fake, suite_file) == 0
    out = capsys.readouterr().out
    assert "3 of 4 prompt(s) to ask openai:gpt-5.4-mini" in out and "1 carry questions" in out
    qfile = questions_path(suite_file)
    assert qfile.name == "qsuite.questions.jsonl"
    rows = lines(qfile)
    assert sorted(r["prompt_id"] for r in rows) == ["cat", "dog", "sign"]
    assert all(r["status"] == "ok" and r["generator"]["model"] == "gpt-5.4-mini"
               and r["generator"]["served_model"] == "gpt-5.4-mini-2026-03-17"
               and r["generator"]["template"] == template_hash()
               and re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", r["generator"]["date"])
               for r in rows)
    assert KEY not in qfile.read_text(encoding="utf-8")
    # Each request carried the strict schema; each prompt was asked once.
    sent = [r.json for r in fake.requests]
    assert all(b["response_format"]["json_schema"]["strict"] is True for b in sent)
    assert fake.paid_stats()["openai_chat"] == {"paid": 3, "prompts": 3, "duplicates": 0, "images": 0}

    suite = load_suite(SuiteConfig(name="qsuite", file=str(suite_file)))
    by_id = {p.id: p for p in suite.prompts}
    assert [q["question"] for q in by_id["cat"].meta["questions"]] == ["Is there a sofa?",
                                                                       "Is the sofa black?"]
    assert by_id["cat"].meta["questions_source"]["model"] == "gpt-5.4-mini"
    assert "questions_source" not in by_id["given"].meta  # the suite file's own questions stay
    assert by_id["given"].meta["questions"][1]["question"] == "Is the cube blue?"
    # The questions metric takes them as they are (ids, parents first, yes answers).
    qs = normalise_questions(by_id["cat"].meta["questions"], "cat")
    assert [(q["id"], q["parents"], q["answer"], q["category"]) for q in qs] == [
        ("1", [], "yes", "entity"), ("2", ["1"], "yes", "attribute")]

    # Rerun: nothing to ask, nothing sent.
    calls = fake.calls["openai.chat"]
    assert run_cli(fake, suite_file) == 0
    assert "0 of 4 prompt(s) to ask" in capsys.readouterr().out
    assert fake.calls["openai.chat"] == calls


def test_another_model_is_reported_not_redone_until_regenerate(fake, suite_file, capsys):
    assert run_cli(fake, suite_file) == 0
    capsys.readouterr()
    calls = fake.calls["openai.chat"]
    assert run_cli(fake, suite_file, "--model", "gpt-5.5") == 0
    out = capsys.readouterr().out
    assert "kept: 3 prompt(s) have questions written with model gpt-5.4-mini (now gpt-5.5)" in out
    assert "--regenerate" in out and fake.calls["openai.chat"] == calls
    assert run_cli(fake, suite_file, "--model", "gpt-5.5", "--regenerate") == 0
    assert fake.calls["openai.chat"] == calls + 3
    entries = read_entries(questions_path(suite_file))
    assert {e.model for e in entries.values()} == {"gpt-5.5"}  # the newest line wins
    assert len(lines(questions_path(suite_file))) == 6  # the journal keeps both


def test_invalid_and_refused_answers_are_kept_not_reasked_until_retry_failed(fake, suite_file, capsys):
    suite_file.write_text(SUITE.replace("two brown dogs", "a loop of rope")
                          .replace("a sign that says OPEN", "something forbidden"), encoding="utf-8")
    assert run_cli(fake, suite_file) == 1  # an invalid answer: exit 1
    entries = read_entries(questions_path(suite_file))
    assert entries["dog"].status == "invalid" and "cycle" in entries["dog"].error
    assert entries["sign"].status == "refused" and "can't help" in entries["sign"].error
    dog = next(r for r in lines(questions_path(suite_file)) if r["prompt_id"] == "dog")
    assert json.loads(dog["raw"])["questions"][0]["parents"] == ["2"]  # what was paid for, kept
    suite = load_suite(SuiteConfig(name="qsuite", file=str(suite_file)))
    assert {p.id for p in suite.prompts if p.meta.get("questions")} == {"cat", "given"}
    capsys.readouterr()
    calls = fake.calls["openai.chat"]
    run_cli(fake, suite_file)
    out = capsys.readouterr().out
    assert "whose last answer was invalid (dog" in out and "whose last answer was refused (sign" in out
    assert fake.calls["openai.chat"] == calls
    fake.chat.writer = lambda text: dsg_writer(text.replace("loop", "coil").replace("forbidden", "fine"))
    assert run_cli(fake, suite_file, "--retry-failed") == 0
    assert fake.calls["openai.chat"] == calls + 2
    assert {e.status for e in read_entries(questions_path(suite_file)).values()} == {"ok"}


def test_a_provider_failure_keeps_answers_so_far_and_the_rerun_asks_only_the_rest(fake, suite_file, capsys):
    assert run_cli(fake, suite_file, "suite.limit=1") == 0  # one prompt answered
    fake.push("openai.chat", Fault.insufficient_quota())
    assert run_cli(fake, suite_file, "--workers", "1") == 2
    err = capsys.readouterr().err
    assert "rate limit or quota (429)" in err and "exceeded your current quota" in err
    assert "answer(s) saved in" in err and KEY not in err
    done = set(read_entries(questions_path(suite_file)))
    assert "cat" in done and len(done) < 3
    assert run_cli(fake, suite_file) == 0
    assert set(read_entries(questions_path(suite_file))) == {"cat", "dog", "sign"}
    assert fake.paid_stats()["openai_chat"]["duplicates"] == 0


def test_missing_key_bad_key_and_dry_run(fake, suite_file, monkeypatch, capsys):
    assert run_cli(fake, suite_file, "--dry-run") == 0
    assert "3 of 4 prompt(s) to ask" in capsys.readouterr().out
    assert fake.calls["openai.chat"] == 0 and not questions_path(suite_file).exists()
    monkeypatch.delenv("OPENAI_API_KEY")
    assert run_cli(fake, suite_file) == 2
    assert "set the environment variable OPENAI_API_KEY" in capsys.readouterr().err
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-0123456789abcdef")
    assert run_cli(fake, suite_file) == 2
    err = capsys.readouterr().err
    assert "API key was refused (401)" in err and "sk-wrong-key-0123456789abcdef" not in err
    assert run_cli(fake, suite_file, "--model", "gpt-4-32k") == 2
    assert "gpt-4-32k was shut down on" in capsys.readouterr().err


def test_loader_leaves_out_stale_questions_and_names_a_torn_line(fake, suite_file, caplog):
    assert run_cli(fake, suite_file) == 0
    suite_file.write_text(SUITE.replace("two brown dogs", "three brown dogs"), encoding="utf-8")
    suite = load_suite(SuiteConfig(name="qsuite", file=str(suite_file)))
    assert "questions" not in {p.id: p for p in suite.prompts}["dog"].meta
    assert "changed since their questions were written" in caplog.text
    qfile = questions_path(suite_file)
    qfile.write_text(qfile.read_text(encoding="utf-8") + '{"prompt_id": "x", "sta', encoding="utf-8")
    with pytest.raises(SuiteError, match=r"qsuite.questions.jsonl:4: invalid JSON .* cut short"):
        load_suite(SuiteConfig(name="qsuite", file=str(suite_file)))
