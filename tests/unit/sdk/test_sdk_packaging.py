"""The app SDK installs and runs without the daemon: its own distribution, no daemon libraries.

Apps install ``rollout-controller-sdk`` (``packaging/sdk/pyproject.toml``),
built from this tree. These tests build that wheel, run the SDK from it in a
child process where the daemon's libraries and rooms cannot be imported, and
check that the wheel declares every library the SDK loads and none of the
daemon's. ``docs/clients.md`` ("The Python SDK") says why it is a separate
distribution rather than an extra.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
SDK_PROJECT = ROOT / "packaging" / "sdk"
PROBE = Path(__file__).with_name("sdk_probe.py")
VECTORS = ROOT / "tests" / "vectors" / "bucketing.json"

DAEMON_LIBRARIES: tuple[str, ...] = ("redis", "hiredis", "aiohttp", "structlog", "rich")
DAEMON_LIBRARIES += ("prometheus_client", "cryptography", "click", "pygments", "cramjam")
"""Import names of what only the daemon and rolloutctl need. httpx imports click and
pygments (which come with rich) only for its command line, and aiokafka imports
cramjam only to decompress snappy, lz4 and zstd batches, which the flag-state topic
never holds: both carry on without them."""
DAEMON_DISTRIBUTIONS = {"redis", "hiredis", "aiohttp", "structlog", "prometheus-client"}
DAEMON_DISTRIBUTIONS |= {"rich", "cryptography", "cramjam"}
VERIFY_EXTRA = "verify"
"""The SDK's extra for apps that verify the controller's signatures on flag states:
it installs cryptography, which the SDK imports only when given public keys."""
DAEMON_ROOMS = (
    "controller.daemon",
    "controller.adapters",
    "controller.ctl",
    "controller.dev",
    "controller.demo",
    "controller.cli",
    "controller.integrations",
    "controller.ports",
    "controller.process.logs",
    "controller.contracts",
    "controller.process.retrying",
    "controller.process.stopping",
)


def _probe(pythonpath: Path) -> dict[str, Any]:
    """Run the probe with ``pythonpath`` first on the path; its JSON answer."""
    args = [",".join(DAEMON_LIBRARIES), ",".join(DAEMON_ROOMS), str(VECTORS)]
    done = subprocess.run(
        [sys.executable, str(PROBE), *args],
        env={"PYTHONPATH": str(pythonpath), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _check_probe(result: dict[str, Any], home: Path) -> None:
    assert Path(result["controller_file"]).is_relative_to(home)
    assert "controller.sdk.events" in result["sdk_modules"]
    loaded = set(result["third_party"])
    assert not loaded & set(DAEMON_LIBRARIES), loaded
    assert "opentelemetry" not in loaded  # only apps that trace load it, never the SDK
    rooms = tuple(f"{room}." for room in DAEMON_ROOMS)
    modules = result["controller_modules"]
    assert not [m for m in modules if m in DAEMON_ROOMS or m.startswith(rooms)], modules
    assert result["vectors"] >= 1000
    assert result["mismatches"] == []
    assert result["event_id"] is not None
    [event] = result["queued"]
    assert (event["type"], event["unit"], event["arm"]) == ("exposure", "user-42", "treatment")


def test_the_sdk_runs_from_the_source_tree_with_the_daemon_blocked() -> None:
    _check_probe(_probe(ROOT), ROOT)


@cache
def _wheel(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)],
        cwd=SDK_PROJECT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    [wheel] = out.glob("rollout_controller_sdk-*.whl")
    return wheel


@pytest.fixture(scope="module")
def sdk_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _wheel(tmp_path_factory.mktemp("sdk-wheel"))


def _requires(wheel: Path) -> tuple[list[Requirement], list[str]]:
    """The wheel's requirements (its extras' too, with their markers) and its extras."""
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(archive.read(name).decode())
    requirements = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
    return requirements, meta.get_all("Provides-Extra") or []


def _closure(requirements: list[Requirement], extras: list[str]) -> set[str]:
    """The distributions these requirements install with every extra, transitively.

    An optional module of the SDK (the OpenFeature provider) may need a library
    that only one of the wheel's extras installs.
    """
    wanted = ["", *extras]
    seen: set[str] = set()
    todo = [
        r
        for r in requirements
        if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in wanted)
    ]
    while todo:
        name = canonicalize_name(todo.pop().name)
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req)
    return seen


def test_the_sdk_runs_from_its_wheel_with_the_daemon_blocked(
    sdk_wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(sdk_wheel) as archive:
        archive.extractall(site)
    # Only what the wheel ships can be imported as controller.*: a module it
    # lacks is missing here, not found in the source tree.
    _check_probe(_probe(site), site)


def test_the_wheel_declares_every_library_the_sdk_loads_and_none_of_the_daemons(
    sdk_wheel: Path,
) -> None:
    requirements, extras = _requires(sdk_wheel)
    installs = _closure(requirements, [e for e in extras if e != VERIFY_EXTRA])
    assert not installs & DAEMON_DISTRIBUTIONS, installs & DAEMON_DISTRIBUTIONS
    # Only the extra of apps that verify flag states brings one: Ed25519.
    verifying = _closure(requirements, [VERIFY_EXTRA])
    assert verifying & DAEMON_DISTRIBUTIONS == {"cryptography"}
    providers = metadata.packages_distributions()
    loaded = _probe(ROOT)["third_party"]
    undeclared = {
        module: providers.get(module)
        for module in loaded
        if not {canonicalize_name(d) for d in providers.get(module, [])} & installs
    }
    assert not undeclared, f"the SDK loads these without declaring them: {undeclared}"


def test_the_wheel_ships_the_sdk_and_no_daemon_room(sdk_wheel: Path) -> None:
    with zipfile.ZipFile(sdk_wheel) as archive:
        files = [n for n in archive.namelist() if not n.startswith("rollout_controller_sdk-")]
    sources = {f"controller/sdk/{p.name}" for p in (ROOT / "controller" / "sdk").glob("*.py")}
    assert sources <= set(files)
    rooms = {r.replace(".", "/") for r in DAEMON_ROOMS}
    assert not [f for f in files if f.rpartition("/")[0] in rooms or f[:-3] in rooms]
    assert all(f.endswith(".py") for f in files), files


def test_both_distributions_have_one_version_and_the_same_bounds(sdk_wheel: Path) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert sdk_wheel.name.startswith(f"rollout_controller_sdk-{project['version']}-")
    texts = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        texts += extra
    main = {canonicalize_name(r.name): r for r in map(Requirement, texts)}
    requirements, _ = _requires(sdk_wheel)
    for req in requirements:
        same = main.get(canonicalize_name(req.name))
        if same is None:  # only an optional module's library may be the SDK's alone
            assert req.marker is not None, f"{req.name} is not a dependency of rollout-controller"
            continue
        assert str(req.specifier) == str(same.specifier), req


VERIFYING_APP = """
import json, sys
from controller.core.wire.messages import FlagState
from controller.sdk.trust import verifier
import controller.core.trust.signing as signing
vectors = json.load(open(sys.argv[1], encoding="utf-8"))
check = verifier(vectors["keys"])
envelope = {"type": "flag_state", "v": 1, "id": "x", "ts": 0}
judged = [
    check.problem(FlagState.model_validate(envelope | v["state"])) is None
    for v in vectors["vectors"]
]
print(json.dumps({"signing": signing.__file__, "judged": judged}))
"""


def test_a_verifying_app_runs_from_the_wheel_with_its_verify_extra(
    sdk_wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(sdk_wheel) as archive:
        archive.extractall(site)
    vectors = ROOT / "tests" / "vectors" / "flag-signing.json"
    done = subprocess.run(
        [sys.executable, "-c", VERIFYING_APP, str(vectors)],
        cwd=tmp_path,  # `-c` puts the working directory first on the path: not the checkout
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert Path(result["signing"]).is_relative_to(site)
    expected = [v["valid"] for v in json.loads(vectors.read_text(encoding="utf-8"))["vectors"]]
    assert result["judged"] == expected
