"""Forged Dash callback requests, as an attacker sends them: read the app's callbacks from
/_dash-dependencies and build a `/_dash-update-component` body for one of them with any input and
state values (the browser's renderer would only send what its components hold)."""

from __future__ import annotations

import json
from typing import Any

CALLBACK_PATH = "/_dash-update-component"


def _outputs(output: str) -> list[dict[str, str]] | dict[str, str]:
    def one(text: str) -> dict[str, str]:
        id_, prop = text.rsplit(".", 1)
        return {"id": id_, "property": prop.split("@", 1)[0]}

    if output.startswith(".."):
        return [one(part) for part in output[2:-2].split("...")]
    return one(output)


def find_callback(dependencies: list[dict], output_id: str) -> dict:
    """The callback whose first output is component `output_id` (e.g. 'study-data')."""
    for dep in dependencies:
        outputs = _outputs(dep["output"])
        first = outputs[0] if isinstance(outputs, list) else outputs
        if first["id"] == output_id:
            return dep
    raise LookupError(f"no callback writes {output_id!r}")


def callback_body(dep: dict, values: dict[str, Any] | None = None) -> dict:
    """A body for callback `dep`; `values` maps 'component-id.property' to the value to send
    (anything not named is sent as None). Every input counts as changed."""
    values = values or {}

    def items(entries: list[dict]) -> list[dict]:
        return [
            {
                "id": entry["id"],
                "property": entry["property"],
                "value": values.get(f"{entry['id']}.{entry['property']}"),
            }
            for entry in entries
        ]

    inputs = items(dep["inputs"])
    return {
        "output": dep["output"],
        "outputs": _outputs(dep["output"]),
        "inputs": inputs,
        "state": items(dep["state"]),
        "changedPropIds": [f"{entry['id']}.{entry['property']}" for entry in inputs],
    }


def plain_callbacks(dependencies: list[dict]) -> list[dict]:
    """The callbacks without pattern-matching ids (those take lists of matched components)."""
    return [
        dep
        for dep in dependencies
        if not any(entry["id"].startswith("{") for entry in dep["inputs"] + dep["state"])
        and "{" not in dep["output"]
    ]


def response_text(body: Any) -> str:
    return body if isinstance(body, str) else json.dumps(body)


def pattern_entry(entry: dict, name: Any, value: Any) -> dict | list[dict]:
    """A pattern-matching input/state as the renderer sends it: the wildcard (MATCH / ALL) of
    `entry`'s id filled with `name` (one component for MATCH, a list of one for ALL)."""
    pattern = json.loads(entry["id"])
    wildcard = next((v[0] for v in pattern.values() if isinstance(v, list)), "MATCH")
    concrete = {key: (name if isinstance(v, list) else v) for key, v in pattern.items()}
    item = {"id": concrete, "property": entry["property"], "value": value}
    return [item] if wildcard in ("ALL", "ALLSMALLER") else item


def forged_body(dep: dict, values: list[Any], name: Any = "x") -> dict:
    """A body for `dep` with `values` for its inputs then states, in order (recycled when short);
    pattern-matching entries get a component named `name`."""
    entries = dep["inputs"] + dep["state"]
    values = values or [None]
    filled = []
    for index, entry in enumerate(entries):
        value = values[index % len(values)]
        if entry["id"].startswith("{"):
            filled.append(pattern_entry(entry, name, value))
        else:
            filled.append({"id": entry["id"], "property": entry["property"], "value": value})
    inputs, state = filled[: len(dep["inputs"])], filled[len(dep["inputs"]) :]
    return {
        "output": dep["output"],
        "outputs": _outputs(dep["output"]),
        "inputs": inputs,
        "state": state,
        "changedPropIds": [f"{entry['id']}.{entry['property']}" for entry in dep["inputs"]],
    }
