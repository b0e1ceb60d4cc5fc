"""Write ``tests/vectors/flag-signing.json``: signed flag states every verifier must judge alike.

Run ``python tests/vectors/flag_signing.py`` to rewrite the file and
``python tests/vectors/flag_signing.py --check`` to exit 1 when it differs
from what this script makes; ``tests/unit/core/trust/test_flag_signing.py`` runs the
check, holds the controller's signer and verifier to the file, and runs the
JavaScript verifier of ``flag-signing.mjs`` against it.

The signed bytes are built here from the rule in ``docs/clients.md``
("Verifying flag states") with the standard ``json`` module, not with the
controller's code, and signed with a fixed key (its 32-byte seed is in the
file), so the vectors are deterministic: Ed25519 signatures are.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PATH = Path(__file__).with_name("flag-signing.json")
SEED = bytes(range(32))
KEY_ID = "controller-2026"
FORM = "rollout-controller/flag-state/1"
FORM_RINGS = "rollout-controller/flag-state/2"
FORM_VALUES = "rollout-controller/flag-state/3"


def signed_bytes(state: dict[str, Any], key_id: str) -> bytes:
    """The rule of docs/clients.md, written out independently of the controller."""
    rings, values = state.get("rings"), state.get("values")
    fields = [
        (FORM if rings is None else FORM_RINGS) if values is None else FORM_VALUES,
        key_id,
        state["flag"],
        state["version"],
        state["status"],
        round(state["percent"] * 1000),  # Python rounds ties to even, as the rule says
        state["salt"],
        state.get("rollout_id"),
        state.get("stage"),
    ]
    if rings is not None or values is not None:
        ringed = None if rings is None else [[r.get("audience"), r["threshold"]] for r in rings]
        fields += [state.get("audience"), ringed]
    if values is not None:
        fields.append([values["type"], _numbers(values["control"]), _numbers(values["treatment"])])
    text = json.dumps(fields, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return text.encode()


def _numbers(value: Any) -> Any:
    """Numbers as RFC 8785 (and JavaScript) writes them: a whole one with no fraction (1.0 is 1)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def _state(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "flag": "checkout.new-flow",
        "version": 7,
        "status": "rolling_out",
        "percent": 12.5,
        "salt": "9f2c41d07a3e5b16",
        "rollout_id": "3b9d6f1e2a7c4e58b0d1a2c3e4f50617",
        "stage": 2,
    }
    return {**base, **fields}


_APP_2 = {"attribute": "app_version", "op": ">=", "value": {"semver": "2.0.0"}}
_RINGS: list[dict[str, Any]] = [
    {
        "audience": {"attribute": "user_id", "op": "in", "value": {"segment": "staff"}},
        "threshold": 100000,
    },
    {
        "audience": {
            "and": [
                {"attribute": "country", "op": "==", "value": "TH"},
                {"not": {"attribute": "plan", "op": "in", "value": ["free", "trial"]}},
            ]
        },
        "threshold": 25000,
    },
    {"audience": None, "threshold": 5000},
]
_EVERYONE_50 = {"audience": None, "threshold": 50000}
_RANKERS = {"type": "string", "control": "v1-ranker", "treatment": "v2-ranker"}
_LIMITS = {
    "type": "object",
    "control": {"limit": 10, "boost": 0.5},
    "treatment": {"weights": [1, 2.5, -3], "limit": 20, "label": "é ✓", "on": True, "x": None},
}


_FLOATS = {"type": "number", "control": 1.0, "treatment": 2.5}


def build() -> dict[str, Any]:
    key = Ed25519PrivateKey.from_private_bytes(SEED)

    def signed(state: dict[str, Any], key_id: str = KEY_ID) -> dict[str, Any]:
        data = signed_bytes(state, key_id)
        sig = base64.b64encode(key.sign(data)).decode()
        return {**state, "key_id": key_id, "sig": sig}

    good = signed(_state())
    vectors: list[dict[str, Any]] = []

    def add(name: str, state: dict[str, Any], valid: bool) -> None:
        key_id = state.get("key_id")
        data = signed_bytes(state, key_id).decode() if key_id else None
        vectors.append({"name": name, "state": state, "signed": data, "valid": valid})

    add("a rollout at a stage", good, True)
    add("killed", signed(_state(version=8, status="killed", percent=0.0, stage=2)), True)
    add("a tie rounds to even", signed(_state(percent=0.0125, version=9)), True)
    add(
        "no rollout, no stage", signed(_state(rollout_id=None, stage=None, status="inactive")), True
    )
    add("strings that JSON escapes", signed(_state(salt='s"\\é\n\t\u0001 ✓')), True)
    ringed = signed(_state(percent=0.0, audience=_APP_2, rings=_RINGS))
    add("a targeted rollout with rings", ringed, True)
    add("a ring's threshold raised", {**ringed, "rings": [*_RINGS[:-1], _EVERYONE_50]}, False)
    add("the rings left out", {k: v for k, v in ringed.items() if k != "rings"}, False)
    valued = signed(_state(values=_RANKERS))
    add("string values", valued, True)
    add("object values", signed(_state(values=_LIMITS)), True)
    add("float values, one of them whole", signed(_state(values=_FLOATS)), True)
    add(
        "values in a targeted rollout",
        signed(_state(percent=0.0, audience=_APP_2, rings=_RINGS, values=_RANKERS)),
        True,
    )
    add(
        "the arms' values swapped",
        {**valued, "values": {**_RANKERS, "control": "v2-ranker"}},
        False,
    )
    add("the values left out", {k: v for k, v in valued.items() if k != "values"}, False)
    add("a raised version", {**good, "version": 2**31 - 1}, False)
    add("a raised percent", {**good, "percent": 100.0}, False)
    add("moved to another rollout", {**good, "rollout_id": "forged"}, False)
    add("another key id", {**good, "key_id": "controller-2025"}, False)
    add("unsigned", {k: v for k, v in good.items() if k not in ("key_id", "sig")}, False)
    add("a signature of other bytes", {**good, "sig": base64.b64encode(bytes(64)).decode()}, False)
    public = key.public_key().public_bytes_raw()
    return {
        "about": "Flag states signed by the controller; docs/clients.md, 'Verifying flag states'.",
        "private_key_seed": base64.b64encode(SEED).decode(),
        "keys": {KEY_ID: base64.b64encode(public).decode()},
        "vectors": vectors,
    }


def text() -> str:
    return json.dumps(build(), ensure_ascii=False, indent=1) + "\n"


def main(argv: list[str]) -> int:
    if "--check" in argv:
        return 0 if PATH.read_text(encoding="utf-8") == text() else 1
    PATH.write_text(text(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
