"""ServiceApp.ensure_sync: the answer Flask gives, remembered for plain functions."""

from __future__ import annotations

import pytest
from apiflask import APIFlask

from email_service.api.http.flask_app import ServiceApp


def plain() -> str:
    return "plain"


async def coroutine() -> str:
    return "coroutine"


def test_a_plain_function_is_returned_as_it_is_and_remembered() -> None:
    app = ServiceApp("t")
    assert app.ensure_sync(plain) is plain
    assert app.ensure_sync(plain) is plain
    assert app._plain == {plain: True}


def test_a_coroutine_function_still_goes_through_flask() -> None:
    """Without asgiref Flask refuses async views; so does ServiceApp, every time."""
    app, flask_app = ServiceApp("t"), APIFlask("t")
    with pytest.raises(RuntimeError) as flask_error:
        flask_app.ensure_sync(coroutine)
    for _ in range(2):
        with pytest.raises(RuntimeError) as ours:
            app.ensure_sync(coroutine)
        assert str(ours.value) == str(flask_error.value)
    assert coroutine not in app._plain


def test_an_unhashable_callable_is_asked_about_every_time() -> None:
    class Hook:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self) -> str:
            return "hook"

    hook = Hook()
    app = ServiceApp("t")
    assert app.ensure_sync(hook) is hook
    assert app._plain == {}
