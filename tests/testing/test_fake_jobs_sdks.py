"""The submit-and-poll fakes (Replicate, fal) driven by the providers' official Python SDKs
(``replicate``, ``fal-client``, in the dev extra): the SDKs' own parsers and types read the
fake's answers, so a fake that drifts from the wire format, or an SDK release that changes it,
fails here. Both are installed by ``pip install -e '.[dev]'``."""

import typing

import pytest

from harness.generators.fal import REFUSAL_TYPES
from harness.generators.replicate import FINAL
from harness.testing.fakes import FakeProviders

replicate = pytest.importorskip("replicate", reason="pip install -e '.[dev]' (replicate SDK)")
fal_client = pytest.importorskip("fal_client", reason="pip install -e '.[dev]' (fal-client)")

KEY = "sdk-planted-key-3e5a7c9b1d"
MODEL = "black-forest-labs/flux-schnell"


@pytest.fixture
def fake():
    with FakeProviders(api_key=KEY) as f:
        f.pending_polls = 0
        yield f


def test_replicate_sdk_creates_gets_and_lists_predictions(fake):
    client = replicate.Client(api_token=KEY, base_url=fake.url)
    made = [client.predictions.create(model=MODEL, input={"prompt": f"p{i}", "seed": i})
            for i in range(3)]
    got = client.predictions.get(made[0].id)
    assert got.status == "succeeded" and got.input == {"prompt": "p0", "seed": 0}
    page = client.predictions.list()
    assert [p.id for p in page.results] == [m.id for m in reversed(made)]  # newest first
    assert page.next is None and all(p.model == MODEL for p in page)
    # The statuses the adapter treats as final are the SDK's own (plus Replicate's 'aborted').
    statuses = set(typing.get_args(replicate.prediction.Prediction.__fields__["status"].outer_type_))
    assert FINAL - {"aborted"} <= statuses and {"starting", "processing"} <= statuses


def test_replicate_list_follows_the_sdk_cursor(fake):
    from harness.testing.fakes.replicate import PAGE

    client = replicate.Client(api_token=KEY, base_url=fake.url)
    for i in range(PAGE + 2):
        client.predictions.create(model=MODEL, input={"prompt": f"p{i}"})
    first = client.predictions.list()
    assert len(first.results) == PAGE and first.next
    second = client.predictions.list(first.next)
    assert len(second.results) == 2 and second.previous
    assert {p.input["prompt"] for p in second} == {"p0", "p1"}  # the oldest two


@pytest.fixture
def fal(fake, monkeypatch):
    """fal-client's SyncClient pointed at the fake's queue (the SDK builds queue URLs from a
    module constant, https://queue.fal.run/, set from FAL_QUEUE_RUN_HOST at import)."""
    monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", fake.url + "/fal/")
    return fal_client.SyncClient(key=KEY)


def test_fal_client_submit_status_result(fake, fal):
    handle = fal.submit("fal-ai/flux/dev", {"prompt": "a red cube", "output_format": "png"})
    status = handle.status()
    assert isinstance(status, fal_client.Completed) and status.error is None
    result = handle.get()
    assert result["images"][0]["url"].startswith(fake.url)
    again = fal.get_handle("fal-ai/flux/dev", handle.request_id)  # lookup by id, as on resume
    assert isinstance(again.status(), fal_client.Completed)


@pytest.mark.parametrize("outcome, kind", [("runner_error", "runner_server_error"),
                                           ("policy", "content_policy_violation")])
def test_fal_client_reads_a_completed_status_with_an_error(fake, fal, outcome, kind):
    fake.set_outcome("bad", outcome)
    handle = fal.submit("fal-ai/flux/dev", {"prompt": "bad"})
    status = handle.status()
    assert isinstance(status, fal_client.Completed)
    assert status.error_type == kind and status.error
    assert (kind in REFUSAL_TYPES) == (outcome == "policy")
    if outcome == "policy":  # a 422: fal-client raises at once (a 500 it retries for long)
        with pytest.raises(fal_client.client.FalClientHTTPError) as e:
            handle.get()
        assert e.value.error_type == kind and e.value.status_code == 422


def test_fal_history_lists_ended_requests_with_their_input(fake, fal):
    import json
    import urllib.request

    handle = fal.submit("fal-ai/flux/dev", {"prompt": "history"})
    url = (fake.url + "/fal/platform/v1/models/requests/by-endpoint?endpoint_id=fal-ai/flux/dev"
           "&expand=payloads")
    r = urllib.request.Request(url, headers={"Authorization": f"Key {KEY}"})
    with urllib.request.urlopen(r, timeout=5) as resp:
        body = json.loads(resp.read())
    assert body["has_more"] is False and body["next_cursor"] is None
    (item,) = body["items"]
    assert item["request_id"] == handle.request_id and item["json_input"] == {"prompt": "history"}
    assert fake.jobs[handle.request_id].prompt == "history"
