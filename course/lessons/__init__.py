"""The course's blackboard: small worlds and widgets that the module notebooks import.

Each module notebook keeps its prose and short cells in the notebook and its longer code
here (``from lessons import cap``), as the house style asks: the notebook shows a value
after each small definition, the module holds what would not fit in a cell. Nothing here
is needed by the labs or the grader.
"""

#: One look for the widgets' HTML tables: JupyterLab gives a widget's table no cell padding, so headers run together.
_CELL = "padding:3px 12px;text-align:right;border-bottom:1px solid #dee2e6"


def html_table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table with padded, right-aligned cells (the first column left-aligned) for a widget.

    Cells are HTML already (escape text before passing it).
    """
    def row(cells: list[str], tag: str) -> str:
        return "<tr>" + "".join(
            f"<{tag} style='{_CELL}{';text-align:left' if i == 0 else ''}'>{c}</{tag}>" for i, c in enumerate(cells)
        ) + "</tr>"

    return ("<table style='border-collapse:collapse;margin:4px 0'>" + row(header, "th")
            + "".join(row(r, "td") for r in rows) + "</table>")
