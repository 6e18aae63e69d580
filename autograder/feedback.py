"""What a learner reads about a graded submission: a picture per broken part, and ``dojo grade``'s HTML page.

``pictures(parts)`` draws, for each part that broke an invariant in a run with evidence, the
run's counterexample (``sandbox.viz.counterexample_figure``: messages, faults, the trace)
highlighting the broken verdict, titled without the run's seed (it is a world of the hidden
bank). ``page(result, pictures)`` is the standalone HTML page ``dojo grade`` writes beside
each JSON result: the points, each part's message, and its picture. nbgrader's feedback
shows the same pictures, as the grade cells' outputs (``autograder.nbgrader``).
"""

from __future__ import annotations

import base64
import html
import threading
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["page", "pictures"]

#: matplotlib draws one figure at a time here: submissions are graded on threads.
_DRAWING = threading.Lock()
#: The title of a picture of a hidden run.
TITLE = "Counterexample - a world of the hidden bank (its seed stays hidden)"


def pictures(parts: Sequence[Any]) -> dict[str, bytes]:
    """PNG bytes per part id, for each part of ``parts`` (``PartResult``) that failed on a run with evidence. A
    picture that cannot be drawn is left out: a picture never changes a grade."""
    from sandbox import viz

    drawn: dict[str, bytes] = {}
    for part in parts:
        if part.failed is None or part.failed[0].evidence is None:
            continue
        run, verdict = part.failed
        try:
            with _DRAWING:
                figure = viz.counterexample_figure(run.evidence, highlight=verdict, title=TITLE)
                drawn[part.part] = viz.to_png(figure, dpi=80)
        except Exception:  # noqa: BLE001 - evidence is data from the learner's process; a picture is a courtesy
            continue
    return drawn


def page(result: Mapping[str, Any], drawn: Mapping[str, bytes]) -> str:
    """The HTML feedback page of one submission's ``result`` (``autograder.submissions.grade_handed_in``)."""
    rows = []
    for part in result["parts"]:
        verdict = "passed" if part["passed"] else "not passed"
        picture = drawn.get(part["id"])
        image = (f'<img alt="the counterexample of {html.escape(part["id"])}" '
                 f'src="data:image/png;base64,{base64.b64encode(picture).decode()}">' if picture else "")
        rows.append(
            f'<section class="{"pass" if part["passed"] else "fail"}">'
            f'<h2>{html.escape(part["id"])}: {part["points"]:g} / {part["max"]:g} ({verdict})</h2>'
            f'<pre>{html.escape(part["message"])}</pre>{image}</section>'
        )
    title = f"{result['lab']}: {result['points']:g} / {result['max_points']:g}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
h1 {{ font-size: 1.5rem; }} h2 {{ font-size: 1.1rem; margin-bottom: .4rem; }}
section {{ border-left: .35rem solid #2e7d32; padding: .2rem 1rem; margin: 1.2rem 0; }}
section.fail {{ border-color: #c62828; }}
pre {{ white-space: pre-wrap; word-break: break-word; background: #f6f6f6; padding: .6rem; font-size: .85rem; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
.who {{ color: #555; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="who">{html.escape(str(result['submission']))}</p>
{''.join(rows)}
</body></html>
"""
