"""Turn pydantic validation errors into ``file:line:col: field: message`` lines.

Pydantic reports *where in the data* a problem is (its ``loc``), but a person edits a file. This
module maps ``loc`` back onto the YAML document, dropping the parts of ``loc`` that pydantic adds
for its own bookkeeping (union member names, validator names) and never exist in the file.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.yaml_source import ConfigError, Path_, YamlDocument

ModelT = TypeVar("ModelT", bound=BaseModel)


def validate_document(document: YamlDocument, model: type[ModelT]) -> ModelT:
    """Validate parsed YAML against ``model``; raise ConfigError with one line per problem."""
    try:
        return model.model_validate(document.data, context={"source": document.path})
    except ValidationError as exc:
        raise ConfigError([_describe(document, error) for error in exc.errors()]) from None


def _describe(document: YamlDocument, error: Any) -> str:
    loc = tuple(error["loc"])
    if error["type"] == "union_tag_invalid":
        # Pydantic reports an unknown tag of a tagged union at the union itself; the person
        # needs the key holding the tag, e.g. ``protocol``.
        loc = (*loc, str(error["ctx"]["discriminator"]).strip("'"))
    path = data_path(document.data, loc)
    message = _message(error)
    return document.error(path, message)


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field (check the spelling; see the configuration reference in docs/commissioning/)"
    text = str(error["msg"])
    text = text.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if "input" in error and kind not in ("model_type", "dict_type", "list_type") and _is_scalar(error["input"]):
        text += f" (got {error['input']!r})"
    return text


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def data_path(data: Any, loc: tuple[Any, ...]) -> Path_:
    """Keep only the parts of a pydantic ``loc`` that walk the actual data.

    Parts that do not index the data (a tagged-union member such as ``modbus_tcp``, or
    ``function-after[...]``) are skipped; the last part is kept even when absent from the data,
    because that is the missing or unknown field the message is about.
    """
    path: list[str | int] = []
    current = data
    for position, part in enumerate(loc):
        is_last = position == len(loc) - 1
        if isinstance(current, dict) and part in current:
            path.append(part)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            path.append(part)
            current = current[part]
        elif is_last and isinstance(part, str | int) and not _is_bookkeeping(part):
            path.append(part)
    return tuple(path)


def _is_bookkeeping(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))
