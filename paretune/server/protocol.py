"""Reading SigOpt requests and answering SigOpt's errors.

A refused request is `ApiError(status, message)`, answered as SigOpt's error body
`{"message": ..., "status": ...}`, which its client raises as `ApiException` with the message.
paretune's own refusals are translated here, once: a store's refusal is 400, a tuning run
holding the experiment 409 (naming it), a busy file 503; anything unexpected is a 500 whose body
says only that (the traceback goes to the server's log, never to a client).
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request

from paretune.lifecycle import MetricsRefused
from paretune.optimizer import SpecError
from paretune.storage import DatabaseLocked, StorageError
from paretune.storage.files import ExperimentBusy

MAX_BODY_BYTES = 8 * 1024 * 1024
KINDS = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "object": (dict,),
         "array": (list,)}


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"object": "error", "status": status, "message": message}


def translate(error: BaseException) -> ApiError | None:
    """paretune's refusals as SigOpt's errors; None for an unexpected error (a 500)."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, ExperimentBusy):
        return ApiError(409, str(error))
    if isinstance(error, DatabaseLocked):
        return ApiError(503, f"{error}; retry shortly")
    if isinstance(error, MetricsRefused):
        return ApiError(400, f"observation refused: {error.failure.detail}")
    if isinstance(error, (StorageError, SpecError)):
        return ApiError(400, str(error))
    return None


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object ({} when empty); refused when too big, malformed or not an object."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise ApiError(413, f"request body over {MAX_BODY_BYTES} bytes; send fewer observations per request")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"request body over {MAX_BODY_BYTES} bytes; send fewer observations per request")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        raise ApiError(400, f"the request body is not valid JSON: {str(error)[:200]}") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def field(body: dict[str, Any], name: str, kind: str, *, required: bool = False, default: Any = None) -> Any:
    """`body[name]` checked against a JSON type; None stands for absent."""
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, f"missing required field `{name}`")
        return default
    allowed = KINDS[kind]
    if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
        raise ApiError(400, f"field `{name}` must be a JSON {kind}, got {type(value).__name__}")
    if kind == "number" and not math.isfinite(value):
        raise ApiError(400, f"field `{name}` must be a finite number")
    return value


def query_field(request: Request, name: str, kind: str) -> Any:
    """A query parameter: SigOpt's client sends numbers as text and lists and objects as JSON."""
    text = request.query_params.get(name)
    if text is None:
        return None
    if kind == "string":
        return text
    if kind == "integer":
        if not text.lstrip("-").isdigit():
            raise ApiError(400, f"query parameter `{name}` must be an integer, got {text[:40]!r}")
        return int(text)
    try:
        return json.loads(text)
    except ValueError:
        raise ApiError(400, f"query parameter `{name}` must be JSON, got {text[:40]!r}") from None


def path_id(request: Request, name: str, what: str) -> int:
    """An id from the path: SigOpt's ids are strings of digits."""
    text = request.path_params[name]
    if not text.isdigit() or len(text) > 18:
        raise ApiError(404, f"no {what} {text[:40]!r}: ids are whole numbers")
    return int(text)


def id_value(value: Any, what: str) -> int:
    """An id given in a body (a string of digits, or a number)."""
    if isinstance(value, str) and value.isdigit() and len(value) <= 18:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ApiError(400, f"`{what}` must be an id (a string of digits), got {value!r:.60}")
