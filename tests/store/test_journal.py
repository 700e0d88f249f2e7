"""StoreJournal: the store's implementation of the Journal protocol (table ``submits``)."""

from harness.store import Store
from harness.store.journal import StoreJournal
from harness.types import Journal


def test_a_submitted_job_and_a_one_call_answer_both_end_done(tmp_path):
    s = Store(tmp_path)
    j = StoreJournal(s)
    assert isinstance(j, Journal)
    j.record_sending("k1", "bfl", "flux")
    assert [(e.key, e.state) for e in j.pending()] == [("k1", "sending")]
    j.record_submitted("k1", "job-1", "https://poll/1", "https://result/1")
    created = j.find("k1").created_at
    # the job's answer keeps its job id, URLs and creation time
    j.record_answer("k1", "bfl", "flux", {"status": "refused"}, job_id="other")
    e = j.find("k1")
    assert (e.state, e.job_id, e.poll_url, e.result_url, e.created_at) == (
        "done", "job-1", "https://poll/1", "https://result/1", created)
    assert e.outcome == {"status": "refused"} and j.image(e) is None and j.pending() == []
    # a one-call answer is inserted done, with its image in the store
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(buf, format="PNG")
    j.record_answer("k2", "openai", "gpt-image-1", {"status": "ok"}, buf.getvalue(), job_id="req-2")
    e2 = j.find("k2")
    assert (e2.state, e2.job_id, e2.provider) == ("done", "req-2", "openai")
    assert j.image(e2) == buf.getvalue() == s.read_image(e2.image_sha256)
    j.forget("k2")
    assert j.find("k2") is None
