"""The error tree drawn in ``errors.py`` names every error class of the package."""

from __future__ import annotations

import importlib
import pkgutil

import email_service
from email_service import errors

# Modules that build the app from the environment when imported: not libraries.
PROCESS_ENTRIES = {"email_service.wsgi", "email_service.jobs.app"}


def _all_errors() -> set[type[errors.EmailServiceError]]:
    for info in pkgutil.walk_packages(email_service.__path__, "email_service."):
        if ".migrations" not in info.name and info.name not in PROCESS_ENTRIES:
            importlib.import_module(info.name)
    found: set[type[errors.EmailServiceError]] = set()
    todo = [errors.EmailServiceError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return {cls for cls in found if cls.__module__.startswith("email_service.")}


def test_every_error_class_is_in_the_tree() -> None:
    tree = errors.__doc__ or ""
    missing = sorted(cls.__name__ for cls in _all_errors() if f" {cls.__name__} " not in tree)
    assert not missing, f"errors.py's tree does not list {missing}"


def test_query_syntax_maps_through_the_tree() -> None:
    from email_service.mail.query_ast import QuerySyntaxError

    assert issubclass(QuerySyntaxError, errors.BadRequestError)
