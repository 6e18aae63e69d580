"""Module 01 (CAP): the blackboard's like counter does what the module says of each design."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "course"))

from lessons import cap  # noqa: E402


def _run(design: str, partition: bool):
    return cap.simulate(design, partition=partition, seed=1)


def test_cp_refuses_on_the_minority_side_during_the_partition_and_never_reads_stale():
    """CP: requests at the cut-off replica are refused only while the partition lasts; no read is stale; nothing is lost."""
    run = _run("CP", True)
    refused = [r for r in run.requests if r.outcome != "ok"]
    assert refused and all(r.replica == "likes-2" for r in refused)
    assert all(cap.PARTITION_START <= r.start <= cap.PARTITION_END for r in refused)
    assert run.per_side()["majority"]["refused"] == 0
    assert run.stale_reads == 0
    assert run.lost == 0 and run.final["truth"] > 0


def test_cp_without_a_partition_answers_everything():
    """CP on a healthy network: every request answered, every read fresh, every replica agrees."""
    run = _run("CP", False)
    assert run.refused == 0 and run.stale_reads == 0 and run.lost == 0


def test_ap_answers_everywhere_diverges_then_the_pn_counter_converges():
    """AP-PN: nothing refused, the minority reads stale during the partition, all replicas end at the true total."""
    run = _run("AP-PN", True)
    assert run.refused == 0
    during = [r for r in run.requests if r.side == "minority" and r.stale and cap.PARTITION_START < r.start < cap.PARTITION_END]
    assert during
    assert {run.final[r] for r in cap.REPLICAS} == {run.final["truth"]}


def test_last_writer_wins_loses_acknowledged_likes():
    """AP-LWW converges to one value, but below the acknowledged total: concurrent updates were overwritten."""
    for partition in (False, True):
        run = _run("AP-LWW", partition)
        values = {run.final[r] for r in cap.REPLICAS}
        assert len(values) == 1 and values.pop() < run.final["truth"]
        assert run.refused == 0


def test_runs_are_deterministic():
    """The same design, partition and seed give the same run (fingerprint), in a fresh world too."""
    a = _run("AP-PN", True)
    world = cap.build_world("AP-PN", partition=True, seed=1)
    world.run(settle=0.1)
    assert world.fingerprint() == a.fingerprint
    assert cap.simulate("AP-PN", partition=True, seed=2).fingerprint != a.fingerprint


def test_pn_counter_merge_commutes_and_is_idempotent():
    """Merging PN-counters in either order, or twice, gives the same value; LWW keeps only the later write."""
    a, b = cap.PNCounter(), cap.PNCounter()
    a.add("a", 1)
    a.add("a", 1)
    b.add("b", 1)
    b.add("b", -1)
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(b).value() == a.merge(b).value() == 2
    x, y = cap.LWWCount(2, (1.0, "a")), cap.LWWCount(1, (2.0, "b"))
    assert x.merge(y) == y.merge(x) == y  # two increments became one


def test_stale_read_detection():
    """A read is stale iff its value is outside what the acknowledged and in-flight changes allow."""
    R = cap.Request
    like = R("ana", "likes-0", "like", 0.0, 0.1, "ok", 1)
    pending = R("ben", "likes-1", "like", 0.15, 0.3, "ok", 2)
    reads = [R("cy", "likes-2", "read", 0.2, 0.25, "ok", v) for v in (0, 1, 2, 3)]
    marked = cap._mark_stale([like, pending, *reads])
    assert [r.stale for r in marked[2:]] == [True, False, False, True]


def test_the_widget_builds_headless():
    """The widget builds from the precomputed runs and switches panels when the toggles change."""
    box = cap.widget(seed=1)
    toggle, merge, columns = box.children
    html = columns.children[0].children[0]
    before = html.value
    toggle.value = False
    assert html.value != before and "CP" in html.value
    merge.value = "AP-LWW"
    assert "AP-LWW" in columns.children[1].children[0].value


def test_table_lists_every_run():
    """The static table has a row per run with its final counts."""
    runs = [_run(d, p) for d in cap.DESIGNS for p in (False, True)]
    text = cap.table(runs)
    assert len(text.splitlines()) == 3 + len(runs)
    assert "AP-LWW" in text


def test_latency_is_the_everyday_price_of_cp():
    """On a healthy network CP answers slower than AP (a round trip to a majority); during the partition slower still."""
    cp, ap = _run("CP", False), _run("AP-PN", False)
    assert cp.latency_ms("majority") > ap.latency_ms("majority")
    cut = _run("CP", True)
    assert cut.latency_ms("majority", during_partition=True) > cp.latency_ms("majority")
    assert cut.latency_ms("minority", during_partition=True) is None


def test_no_replica_fails_even_under_a_running_event_loop():
    """Every design runs without a service error, also when an asyncio loop is running (as in a Jupyter kernel)."""
    import asyncio

    async def inside_a_loop():
        worlds = []
        for design in cap.DESIGNS:
            world = cap.build_world(design, partition=True, seed=3)
            world.run(settle=0.1)
            worlds.append(world)
        return worlds

    for world in asyncio.run(inside_a_loop()):
        assert not world.errors, world.errors[0]


def test_the_widget_tables_space_their_columns():
    """JupyterLab gives a widget's table no cell padding: every header and cell of the panel brings its own."""
    import re

    panel = cap._panel_html(cap.simulate(cap.DESIGNS[0], partition=True, seed=1))
    cells = re.findall(r"<t[hd] style='([^']*)'>", panel)
    assert len(cells) == 12 and all("padding:3px 12px" in style for style in cells)
