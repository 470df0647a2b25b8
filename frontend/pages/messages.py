"""The API's refusals as sentences for people: one per field, named as the page names it, in plain
words ("grid size: must be odd so the prior is the centre point"), never pydantic's wording
("Value error, ...") or its locations ("variants.2.int8.source").

Pure functions of the API's 422 body (a list of {loc, msg}) or any other `detail`.
"""

from __future__ import annotations

import re
from typing import Any

# pydantic's phrasings, as the form would say them (first match wins; groups are kept).
PHRASES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^(Value|Assertion) error, ", re.I), ""),
    (re.compile(r"^Field required$"), "is required"),
    (re.compile(r"^Input should be greater than or equal to (.+)$"), r"must be at least \1"),
    (re.compile(r"^Input should be less than or equal to (.+)$"), r"must be at most \1"),
    (re.compile(r"^Input should be greater than (.+)$"), r"must be greater than \1"),
    (re.compile(r"^Input should be less than (.+)$"), r"must be less than \1"),
    (re.compile(r"^Input should be a finite number$"), "must be a finite number"),
    (re.compile(r"^Input should be a valid integer(,.*)?$"), "must be a whole number"),
    (re.compile(r"^Input should be a valid number(,.*)?$"), "must be a number"),
    (re.compile(r"^Input should be a valid (.+?)(,.*)?$"), r"must be a valid \1"),
    (re.compile(r"^Input should be (.+)$"), r"must be \1"),
    (re.compile(r"^String should have at least 1 character$"), "must not be empty"),
    (re.compile(r"^String should have at (least|most) (\d+) characters?$"), r"must have at \1 \2 characters"),
    (re.compile(r"^List should have at least 1 item.*$"), "needs at least one entry"),
    (re.compile(r"^List should have at most (\d+) items?.*$"), r"takes at most \1 entries"),
    (re.compile(r"^Extra inputs are not permitted$"), "is not a field the API knows"),
    (re.compile(r"^Unable to extract tag using discriminator.*$"), "needs a kind"),
]
# The names the forms give the spec's fields.
FIELD_NAMES = {
    "name": "name",
    "dataset": "dataset",
    "dataset.name": "dataset",
    "dataset.path": "dataset path",
    "model": "model",
    "model.name": "model",
    "recipe": "recipe",
    "recipe.epochs": "epochs",
    "recipe.batch_size": "batch size",
    "recipe.momentum": "momentum",
    "grid": "grid",
    "grid.lr_centre": "lr centre",
    "grid.wd_centre": "wd centre",
    "grid.step": "grid step",
    "grid.size": "grid size",
    "grid.auto_extend": "auto-extension",
    "grid.auto_extend.max_points": "auto-extension: new grid points",
    "grid.auto_extend.level": "auto-extension: ROI level",
    "repeats": "repeats",
    "variants": "variants",
    "scans": "scans",
    "metric": "metric",
    "q": "filter",
    "file": "file",
}
VARIANT_FIELD_NAMES = {
    "name": "name",
    "kind": "kind",
    "flops_ratio": "FLOPs ratio",
    "amount": "amount",
    "method": "method",
    "scope": "scope",
    "source": "source",
    "retrain": "retrain",
    "finetune_epochs": "finetune epochs",
    "rewind_epoch": "rewind epoch",
    "iterations": "iterations",
    "calibration_batches": "calibration batches",
}
# Location parts that are pydantic's, not the spec's: the request part, a union's tag.
NOT_FIELDS = {"body", "query", "path", "base", "structured", "unstructured", "int8", "mixed", "fp16"}


def spec_location(loc: list[Any] | tuple[Any, ...]) -> str:
    """The dotted field path of a 422 location: `["body", "variants", 2, "int8", "source"]` ->
    `variants.2.source` (no request part, no union tag, no validator wrapper)."""
    parts = [
        str(part)
        for part in loc
        if str(part) not in NOT_FIELDS and not str(part).startswith(("function-", "tagged-union"))
    ]
    return ".".join(parts)


def plain_message(message: Any) -> str:
    """One message in plain words, without pydantic's prefixes and phrasings."""
    text = " ".join(str(message).split())
    for pattern, replacement in PHRASES:
        if pattern.search(text):
            text = pattern.sub(replacement, text, count=1)
            if replacement != "":
                break
    return text


def field_label(location: str) -> str:
    """How the page names a field path: `variants.1.source` -> `variant 2: source`."""
    parts = location.split(".") if location else []
    if len(parts) >= 2 and parts[0] in ("variants", "scans") and parts[1].isdigit():
        what = "variant" if parts[0] == "variants" else "scan"
        rest = ".".join(parts[2:])
        named = VARIANT_FIELD_NAMES.get(rest, rest.replace("_", " ")) if rest else ""
        return f"{what} {int(parts[1]) + 1}" + (f": {named}" if named else "")
    return FIELD_NAMES.get(location, location.replace("_", " ").replace(".", " "))


def field_messages(detail: Any) -> dict[str, str]:
    """A 422 `detail` as {field path: plain message} (`_` for the request as a whole); any other
    detail as {"_": its text}. Messages for the same field are joined."""
    messages: dict[str, str] = {}
    if isinstance(detail, list):
        for item in detail:
            if not isinstance(item, dict):
                messages.setdefault("_", plain_message(item))
                continue
            location = spec_location(item.get("loc") or [])
            text = plain_message(item.get("msg", ""))
            # a message that starts with its own field ("variants: 'u50' is ...") says it once
            text = re.sub(rf"^{re.escape(location)}: ", "", text) if location else text
            key = location or "_"
            messages[key] = f"{messages[key]}; {text}" if key in messages else text
    elif isinstance(detail, dict) and "field" in detail:
        messages[str(detail["field"])] = plain_message(detail.get("message", ""))
    else:
        messages["_"] = plain_message(detail)
    return messages


def sentences(detail: Any) -> list[str]:
    """Every message of `detail` as a sentence naming its field: "grid size: must be odd ..."."""
    out = []
    for location, text in field_messages(detail).items():
        sentence = text if location == "_" else f"{field_label(location)}: {text}"
        out.append(sentence if sentence.endswith((".", "?", "!")) else sentence + ".")
    return out


def error_text(detail: Any) -> str:
    """`detail` as one paragraph of sentences."""
    return " ".join(sentences(detail))
