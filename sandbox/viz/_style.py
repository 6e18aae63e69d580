"""Colours and sizes shared by every picture, chosen to read well on white and in print."""

from __future__ import annotations

#: Messages of highlighted operations (a counterexample's evidence) are drawn in this colour.
HIGHLIGHT_COLOR = "#1864ab"
#: Dropped messages: the red X and the reason.
DROP_COLOR = "#c92a2a"
#: Everything that is not highlighted, when something is.
MUTED_COLOR = "#ced4da"

#: Message colours by family, when nothing is highlighted.
MESSAGE_COLORS = {
    "http": "#343a40",
    "db": "#8f5b34",
    "broker": "#6741d9",
}

#: Fault families (Chaos Mesh's names) and their colours; others get ``OTHER_FAULT_COLOR``.
FAULT_COLORS = {
    "NetworkChaos": "#e8590c",
    "PodChaos": "#495057",
    "TimeChaos": "#7048e8",
    "KafkaChaos": "#0c8599",
    "IOChaos": "#2b8a3e",
    "StressChaos": "#c2255c",
    "network": "#e8590c",  # partitions made directly with world.network.partition(...)
}
OTHER_FAULT_COLOR = "#868e96"

#: Node states.
UP_COLOR = "#868e96"
DOWN_COLOR = "#212529"
PAUSED_COLOR = "#f08c00"

#: Outcome of client operations (Jepsen's ok / fail / info, and still open).
OP_COLORS = {"ok": "#2b8a3e", "fail": "#c92a2a", "info": "#e67700", "open": "#868e96"}

#: Services in a trace waterfall, in order of first appearance.
SERVICE_COLORS = (
    "#4c6ef5", "#12b886", "#fab005", "#be4bdb", "#15aabf", "#fd7e14", "#82c91e", "#e64980", "#7950f2", "#20c997",
)
ERROR_COLOR = "#e03131"

FONT_SMALL = 7.5
FONT = 9
FONT_TITLE = 11


def fault_color(family: str) -> str:
    """The colour of a fault family (grey for families this palette does not know)."""
    return FAULT_COLORS.get(family, OTHER_FAULT_COLOR)


def message_color(kind: str) -> str:
    """The colour of a message kind ("http.reply" -> the http colour)."""
    return MESSAGE_COLORS.get(kind.split(".")[0], MESSAGE_COLORS["http"])
