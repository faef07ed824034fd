"""What the SDK scripts share: waiting for a condition instead of sleeping."""

import time


def wait_for(what, predicate, timeout=30):
    """The predicate's first truthy value, polled every 50 ms; fails after `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)
