"""schemathesis hooks for ContractTests (SCHEMATHESIS_HOOKS names this file).

A lease with nothing to hand waits its whole wait_seconds: the coverage phase sends the 30 s
bound twice, and the run waited a minute for answers that say nothing new. Long-polls are tested
elsewhere; here a valid wait is cut to one second, and invalid ones still go out as generated.
"""

import schemathesis


@schemathesis.hook
def before_call(context, case, kwargs):
    body = case.body
    if case.operation.path != "/v1/worker/lease" or not isinstance(body, dict):
        return
    wait = body.get("wait_seconds")
    if isinstance(wait, (int, float)) and not isinstance(wait, bool) and 1 < wait <= 30:
        body["wait_seconds"] = 1
