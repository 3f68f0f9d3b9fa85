"""Whose rows a database transaction may touch: the scope PostgreSQL's row-level security
enforces (``store/rls.py``), carried in a context variable.

- ``tenant_scope(t)``: the API after authentication, a job acting for tenant ``t``, a CLI
  command on one tenant. Transactions run as the application role with ``app.tenant_id``
  set to ``t``; the policies show and accept that tenant's rows only.
- ``operator_scope(reason)``: the few paths that must cross tenants (beat's due query, the
  sweeper, the push supervisor, webhook dispatch, metrics, key rotation). Transactions run
  as the operator role; every entry is logged with its reason (the audit trail).
- ``owner_scope()``: migrations, which run as the login role that owns the tables.
- no scope: the application role with no tenant; a query on a tenant table raises, so a
  missing scope is a loud error, never a silently empty result.

SQLite (the embedded default) has no row-level security; the scope changes nothing there.
"""

from __future__ import annotations

import contextvars
import enum
import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


class ScopeKind(enum.StrEnum):
    """Which PostgreSQL role a transaction runs as (see ``store/rls.py``)."""

    NONE = "none"
    TENANT = "tenant"
    OPERATOR = "operator"
    OWNER = "owner"


@dataclass(frozen=True)
class Scope:
    """The current scope: its kind, and the tenant for a tenant scope."""

    kind: ScopeKind
    tenant_id: str = ""


NO_SCOPE = Scope(ScopeKind.NONE)
_CURRENT: contextvars.ContextVar[Scope] = contextvars.ContextVar(
    "email_service_db_scope", default=NO_SCOPE
)


def current() -> Scope:
    """The scope of this thread or task."""
    return _CURRENT.get()


@contextmanager
def _entered(scope: Scope) -> Iterator[None]:
    token = _CURRENT.set(scope)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def tenant_scope(tenant_id: str) -> AbstractContextManager[None]:
    """Transactions inside see and write ``tenant_id``'s rows only."""
    return _entered(for_tenant(tenant_id))


def operator_scope(reason: str) -> AbstractContextManager[None]:
    """Transactions inside may cross tenants; the use is logged (audited) with ``reason``."""
    log.info("operator database scope", extra={"reason": reason})
    return _entered(Scope(ScopeKind.OPERATOR))


def owner_scope() -> AbstractContextManager[None]:
    """Transactions inside run as the tables' owner (migrations only)."""
    return _entered(Scope(ScopeKind.OWNER))


def no_scope() -> AbstractContextManager[None]:
    """Transactions inside have no scope (a request before authentication)."""
    return _entered(NO_SCOPE)


def enter(scope: Scope) -> contextvars.Token[Scope]:
    """Switch to ``scope`` until :func:`leave` with the token (for hooks that cannot nest)."""
    return _CURRENT.set(scope)


def leave(token: contextvars.Token[Scope]) -> None:
    """Back to the scope before :func:`enter` gave ``token``."""
    _CURRENT.reset(token)


def for_tenant(tenant_id: str) -> Scope:
    """The scope of ``tenant_id``."""
    if not tenant_id:
        raise ValueError("a tenant scope needs a tenant id")
    return Scope(ScopeKind.TENANT, tenant_id)


def in_tenant_scope(fn: Callable[P, T]) -> Callable[P, T]:
    """``fn`` runs in the scope of the tenant its ``tenant_id`` argument names (a job)."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        tenant_id = signature.bind(*args, **kwargs).arguments["tenant_id"]
        with tenant_scope(tenant_id):
            return fn(*args, **kwargs)

    return run


def carried(fn: Callable[P, T]) -> Callable[P, T]:
    """``fn`` bound to a copy of the caller's context: a thread it starts keeps the scope."""
    context = contextvars.copy_context()

    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        return context.run(fn, *args, **kwargs)

    return run
