from collections import defaultdict

import lab


def slowest_dependency(world):
    """The dependency that makes the slow orders slow: in the five slowest orders' traces, the one whose
    calls (the CLIENT spans of the orders service, by ``server.address``) took the most time in all."""
    slow = set(lab.slow_traces(world, 5))
    spent = defaultdict(float)
    for span in world.spans():
        dependency = span.attributes.get("server.address")
        if span.context.trace_id in slow and span.kind.name == "CLIENT" and dependency in lab.DEPENDENCIES:
            spent[dependency] += (span.end_time - span.start_time) / 1e9
    return max(lab.DEPENDENCIES, key=lambda d: spent[d])
