"""The JavaScript client (``clients/js``) passes its own tests, run by Node's test runner.

Those tests run the exposure hook on OpenFeature's server SDK and OFREP
provider (from npm, ``make js-client``) against a small server in the test,
the sender's batching, retries and bounds against scripted intake answers, and
the hook's evaluation events on spans of OpenTelemetry's own trace SDK.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def test_the_javascript_client_passes_its_node_tests(node: str, js_client: Path) -> None:
    files = sorted(str(p.relative_to(js_client)) for p in (js_client / "test").glob("*.test.js"))
    assert files
    done = subprocess.run(
        [node, "--test", *files],
        cwd=js_client,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout
