"""The one place errors become HTTP: RFC 9457 ``application/problem+json`` bodies."""

from __future__ import annotations

import logging
from typing import Any

from apiflask import APIFlask
from apiflask.exceptions import HTTPError
from flask import Response, json, request
from werkzeug.exceptions import HTTPException

from email_service import errors

PROBLEM_TYPE = "urn:email-service:problem:{code}"
PROBLEM_MIMETYPE = "application/problem+json"

# Error class -> HTTP status. Order matters: subclasses before their bases.
STATUS_BY_ERROR: tuple[tuple[type[errors.EmailServiceError], int], ...] = (
    (errors.ForbiddenError, 403),
    (errors.AuthError, 401),
    (errors.HeaderInjectionError, 400),
    (errors.BadRequestError, 400),
    (errors.ValidationError, 422),
    (errors.BlockedHostError, 422),
    (errors.NotFoundError, 404),
    (errors.ConflictError, 409),
    (errors.FeatureDisabledError, 503),
    (errors.SearchTimeoutError, 503),
    (errors.RemoteTemporaryError, 503),
    (errors.RemoteAuthError, 502),
    (errors.RemoteError, 502),
)
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
}
log = logging.getLogger(__name__)


def problem(
    status: int,
    detail: str,
    code: str | None = None,
    errors_: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """A problem+json response; ``extra`` adds extension members (RFC 9457 §3.2)."""
    code = code or CODES.get(status, "error")
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE.format(code=code),
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
        "instance": request.path,
    }
    if errors_:
        body["errors"] = errors_
    body.update(extra or {})
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MIMETYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _from_service_error(exc: errors.EmailServiceError) -> Response:
    status = next((s for cls, s in STATUS_BY_ERROR if isinstance(exc, cls)), 500)
    field = getattr(exc, "field", None)
    location = str(exc.details.get("location", "json"))
    found = [{"field": field, "location": location, "message": exc.message}] if field else None
    headers = {"WWW-Authenticate": 'Bearer realm="email-service"'} if status == 401 else None
    extra = {"position": exc.details["position"]} if "position" in exc.details else None
    return problem(status, exc.message, exc.code, found, headers, extra)


def _validation_errors(detail: dict[str, Any]) -> list[dict[str, str]]:
    found = []
    for location, by_field in detail.items():
        if not isinstance(by_field, dict):
            continue
        for field, messages in by_field.items():
            for message in messages if isinstance(messages, list) else [messages]:
                name = "(body)" if field == "_schema" else str(field)
                found.append({"field": name, "location": location, "message": str(message)})
    return found


def _from_http_error(exc: HTTPError) -> Response:
    if exc.status_code == 422 and isinstance(exc.detail, dict):
        found = _validation_errors(exc.detail)
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in found[:5])
        return problem(422, summary or "invalid input", "validation_error", found)
    if exc.status_code == 400 and not exc.detail:
        return problem(400, "request body must be a JSON object (Content-Type: application/json)")
    detail = exc.message if isinstance(exc.message, str) else TITLES.get(exc.status_code, "Error")
    headers = {str(k): str(v) for k, v in dict(exc.headers or {}).items()}
    return problem(exc.status_code, detail, headers=headers)


def _from_werkzeug(exc: HTTPException) -> Response:
    status = exc.code or 500
    headers = {}
    if status == 405 and exc.get_response().headers.get("Allow"):
        headers["Allow"] = exc.get_response().headers["Allow"]
    detail = exc.description or TITLES.get(status, "Error")
    return problem(status, detail, headers=headers)


def _from_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return problem(500, "internal error; the request id in the logs has the details")


def register(app: APIFlask) -> None:
    """Install the handlers and make APIFlask's own errors problem+json too."""
    app.register_error_handler(errors.EmailServiceError, _from_service_error)
    app.register_error_handler(HTTPException, _from_werkzeug)
    app.register_error_handler(Exception, _from_unexpected)
    app.error_processor(_from_http_error)
