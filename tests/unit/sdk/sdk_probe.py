"""Run in a child process: import the app SDK with the daemon's libraries blocked, then use it.

    python tests/unit/sdk/sdk_probe.py BLOCKED_LIBS BLOCKED_ROOMS VECTORS_FILE

A meta-path finder makes every import of a blocked library (``redis``,
``aiohttp``, ...) or of a daemon room (``controller.daemon``, ...) raise
ImportError, as if it were not installed. The probe then imports every SDK
module, assigns every vector's unit through ``FlagBook`` and queues an event,
and prints one JSON object: where ``controller`` came from, which modules
were loaded and what came out. ``tests/unit/sdk/test_sdk_packaging.py`` runs it
against the source tree and against the built ``rollout-controller-sdk`` wheel.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType


class Blocker(MetaPathFinder):
    """Refuses the named top-level libraries and ``controller`` rooms."""

    def __init__(self, libraries: set[str], rooms: set[str]) -> None:
        self.libraries = libraries
        self.rooms = rooms
        self.refused: set[str] = set()

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        room = any(name == r or name.startswith(r + ".") for r in self.rooms)
        if name.partition(".")[0] in self.libraries or room:
            self.refused.add(name)
            raise ImportError(f"{name} is blocked: the app SDK must not need it")
        return None


def probe(vectors_file: str) -> dict[str, object]:
    """Import and exercise the SDK; what a test needs to judge it."""
    before = set(sys.modules)
    sdk = importlib.import_module("controller.sdk")
    names = [m.name for m in pkgutil.walk_packages(sdk.__path__, "controller.sdk.")]
    for name in names:
        importlib.import_module(name)

    from controller.core.wire.messages import Arm, FlagState, event_adapter  # noqa: PLC0415
    from controller.sdk import EventEmitter  # noqa: PLC0415
    from controller.sdk.flags import FlagBook  # noqa: PLC0415

    with open(vectors_file, encoding="utf-8") as file:
        vectors = json.load(file)["vectors"]
    mismatches = []
    for v in vectors:
        state = FlagState.model_validate(
            {
                "type": "flag_state",
                "v": 1,
                "id": "probe",
                "ts": 0,
                "flag": v["flag"],
                "version": 3,
                "status": "rolling_out",
                "percent": v["percent"],
                "salt": v["salt"],
            }
        )
        arm, version = FlagBook([state]).arm(v["flag"], v["unit"])
        if (arm.value, version) != (v["arm"], 3):
            mismatches.append(v)

    emitter = EventEmitter()
    event_id = emitter.exposure("checkout.new-flow", "user-42", Arm.TREATMENT, 3)
    values = [value for _, value in emitter._queue]
    queued = [event_adapter.validate_json(value).model_dump(mode="json") for value in values]

    loaded = set(sys.modules) - before
    return {
        "controller_file": sys.modules["controller"].__file__,
        "sdk_modules": names,
        "controller_modules": sorted(m for m in sys.modules if m.startswith("controller")),
        "third_party": sorted(
            {
                m
                for m in {name.partition(".")[0] for name in loaded}
                if m not in sys.stdlib_module_names
                and not m.startswith("_")  # the interpreter's own, such as _sysconfigdata_*
                and m != "controller"
                and _on_disk(sys.modules.get(m))
            }
        ),
        "vectors": len(vectors),
        "mismatches": mismatches[:3],
        "event_id": event_id,
        "queued": queued,
    }


def _on_disk(module: ModuleType | None) -> bool:
    """A module or package from a file, or a namespace package (not ``cython_runtime``)."""
    return bool(getattr(module, "__file__", None) or getattr(module, "__path__", None))


def main(argv: list[str]) -> int:
    libraries, rooms, vectors_file = argv[1:]
    blocker = Blocker(set(libraries.split(",")), set(rooms.split(",")))
    sys.meta_path.insert(0, blocker)
    result = probe(vectors_file)
    result["refused"] = sorted(blocker.refused)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
