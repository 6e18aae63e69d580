"""Module 04's blackboard: the sign-up flow is one trace with propagation and two without; the header
decodes as the W3C recommendation says; failures and unended spans show in the spans; the widget draws."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "course"))

from lessons import tracing

SEED = 4


@pytest.fixture(scope="module")
def joined():
    return tracing.run_flow(SEED)


@pytest.fixture(scope="module")
def split():
    return tracing.run_flow(SEED, propagate=False)


def test_with_propagation_each_signup_is_one_tree_from_the_visitor_to_the_mailer(joined):
    """Every sign-up is one trace of ten spans with a single root, the visitor's CLIENT span, and the
    mailer's SERVER span in it."""
    for user in tracing.VISITORS:
        spans = tracing.signup_spans(joined, user)
        assert len(spans) == 10 and len(tracing.traces_of(spans)) == 1, tracing.span_table(spans)
        (root,) = tracing.roots(spans)
        assert root.kind.name == "CLIENT" and tracing.service_of(root) == user
        assert any(s.kind.name == "SERVER" and tracing.service_of(s) == "mailer-0" for s in spans)
        kinds = {s.kind.name for s in spans}
        assert kinds == {"CLIENT", "SERVER", "PRODUCER", "CONSUMER", "INTERNAL"}


def test_without_propagation_the_consumer_starts_a_new_root_trace(joined, split):
    """Without inject, each sign-up splits in two: the request's trace, and one rooted at the CONSUMER span;
    the spans and timings are otherwise those of the propagated run."""
    for user in tracing.VISITORS:
        spans = tracing.signup_spans(split, user)
        assert len(tracing.traces_of(spans)) == 2
        roots = tracing.roots(spans)
        assert [r.kind.name for r in roots] == ["CLIENT", "CONSUMER"]
        same = tracing.signup_spans(joined, user)
        assert [(s.name, s.start_time, s.end_time) for s in spans] == [(s.name, s.start_time, s.end_time) for s in same]


def test_the_message_header_names_the_trace_and_the_span_current_at_inject(joined, split):
    """The traceparent in ada's message carries her trace id and, as parent, the SERVER span of POST /users;
    without propagation the message has no headers."""
    spans = tracing.signup_spans(joined, "ada")
    header = tracing.parse_traceparent(tracing.message_headers(joined, "ada")["traceparent"])
    assert header.trace_id == f"{spans[0].context.trace_id:032x}" and header.sampled
    parent = next(s for s in spans if f"{s.context.span_id:016x}" == header.parent_id)
    assert parent.kind.name == "SERVER" and parent.name == "POST /users"
    consumer = next(s for s in spans if s.kind.name == "CONSUMER")
    assert f"{consumer.parent.span_id:016x}" == header.parent_id
    assert tracing.message_headers(split, "ada") == {}


def test_parse_traceparent_decodes_the_w3c_example_and_rejects_malformed_headers():
    """The recommendation's example splits into its four fields; wrong lengths, uppercase and zero ids are refused."""
    tp = tracing.parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert tp == ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01") and tp.sampled
    assert not tracing.parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").sampled
    for bad in ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "00-4bf92f35-00f067aa0ba902b7-01",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "nonsense"):
        with pytest.raises(ValueError):
            tracing.parse_traceparent(bad)


def test_the_bounced_email_is_marked_in_cy_s_trace_only(joined):
    """cy's mailer call fails: her CONSUMER span has status ERROR and an exception event; ada's sign-up is clean."""
    cy = tracing.signup_spans(joined, "cy")
    consumer = next(s for s in cy if s.kind.name == "CONSUMER")
    assert consumer.status.status_code.name == "ERROR"
    assert consumer.events[0].name == "exception" and "502" in consumer.events[0].attributes["exception.message"]
    assert all(s.status.status_code.name == "UNSET" for s in tracing.signup_spans(joined, "ada"))
    assert [s.attributes["user.id"] for s in joined.spans() if s.attributes.get("user.id") == "cy"]


def test_a_span_never_ended_is_missing_and_orphans_its_children():
    """With end_spans=False the hand-opened span is never exported and the mailer call under it has no parent."""
    spans = tracing.signup_spans(tracing.run_flow(SEED, end_spans=False), "ada")
    assert "send-welcome-email" not in {s.name for s in spans}
    ids = {s.context.span_id for s in spans}
    orphans = [s for s in spans if s.parent is not None and s.parent.span_id not in ids]
    assert [tracing.describe(s) for s in orphans] == ["CLIENT 'POST mailer/send' on emails-0"]


def test_head_sampling_is_one_decision_per_trace_id():
    """TraceIdRatioBased keeps ids whose low 64 bits are under ratio x 2^64: all at 1.0, none at 0.0."""
    assert tracing.kept_by_sampler(5, 0.5) and not tracing.kept_by_sampler(2**63 + 5, 0.5)
    assert tracing.kept_by_sampler((7 << 64) | 5, 0.5)  # the high 64 bits do not matter
    assert not tracing.kept_by_sampler(0, 0.0)


def test_the_widget_adds_spans_one_by_one_and_the_caption_follows(joined, split):
    """Moving the slider redraws and names the newest span; toggling to the split run shows a new root at span 7."""
    widget = tracing.span_by_span({"on": tracing.signup_spans(joined, "cy"), "off": tracing.signup_spans(split, "cy")})
    toggle, (prev, slider, nxt), caption, image = widget.children[0], widget.children[1].children, \
        widget.children[2], widget.children[3]
    assert slider.max == 10 and "1/10" in caption.value
    first = image.value
    nxt.click()
    assert slider.value == 2 and "2/10" in caption.value and image.value != first
    slider.value = 7
    assert "CONSUMER" in caption.value and "POST /users" in caption.value
    toggle.value = "off"
    assert "CONSUMER" in caption.value and "NEW TRACE" in caption.value
    prev.click()
    assert slider.value == 6 and "PRODUCER" in caption.value


def test_the_waterfall_has_a_row_per_span_and_a_heading_per_trace(split):
    """Two traces: ten span rows, two headings; drawing only the first spans keeps the full height."""
    spans = tracing.signup_spans(split, "cy")
    rows = tracing._rows(spans)
    assert sum(r.span is None for r in rows) == 2 and sum(r.span is not None for r in rows) == 10
    full, part = tracing.waterfall(spans), tracing.waterfall(spans, shown=3)
    assert tuple(full.get_size_inches()) == tuple(part.get_size_inches())


def test_the_room_of_the_spans_still_to_come_says_so(joined):
    """Stepping span by span, the empty rows below the last span drawn say how many spans are to come and how to
    see them; the whole waterfall says nothing of the kind."""
    spans = tracing.signup_spans(joined, "cy")

    def texts(fig):
        return [t.get_text() for ax in fig.axes for t in ax.texts]

    first = [t for t in texts(tracing.waterfall(spans, shown=1)) if "to come" in t]
    assert first == [f"{len(spans) - 1} more spans to come: press next \N{BLACK RIGHT-POINTING SMALL TRIANGLE} or "
                     f"move the slider"]
    assert [t for t in texts(tracing.waterfall(spans, shown=len(spans) - 1)) if "to come" in t] == [
        "1 more span to come: press next \N{BLACK RIGHT-POINTING SMALL TRIANGLE} or move the slider"]
    assert not [t for t in texts(tracing.waterfall(spans)) if "to come" in t]
