"""The suite's own set-up: pytest-xdist must keep a group's tests in one process (the browser tests share one
server and one Chromium; two would double the load of the slowest tests)."""

import pytest


@pytest.mark.xdist_group("grouping-check")
def test_loadgroup_keeps_marked_tests_together(request):
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("the suite runs in one process (-n 0): nothing to group")
    # xdist groups by a suffix on the node id; a pytest it does not support drops it silently (pytest 9.2 with
    # pytest-xdist 3.8), and the group's tests then spread over every process
    assert request.node.nodeid.endswith("@grouping-check"), (
        f"pytest-xdist did not group {request.node.nodeid}: this pytest / pytest-xdist pair breaks --dist "
        "loadgroup; install the versions requirements.txt allows")
