"""The gateway's OpenAPI document as the schemathesis suites use it."""

from __future__ import annotations

from typing import Any

from albatross.services.gateway.openapi import build_openapi
from albatross.services.gateway.routes import OPERATIONS


def document_for_fuzzing() -> dict[str, Any]:
    """The document without the ``Albatross-Min-Sequence`` header.

    A sequence beyond the store answers 503 by contract (tested elsewhere): a designed 5xx,
    which "no server error" cannot tell from a bug, so it is not generated.
    """
    spec = build_openapi(OPERATIONS)
    for methods in spec["paths"].values():
        for operation in methods.values():
            params = [p for p in operation.get("parameters", [])
                      if p["name"] != "Albatross-Min-Sequence"]
            if params:
                operation["parameters"] = params
            else:
                operation.pop("parameters", None)
    return spec
