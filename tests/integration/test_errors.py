"""Errors no handler meant to raise: logged with their traceback and answered 500; HTTP errors as usual."""

from __future__ import annotations

import logging

import httpx
import pytest
from litestar import Litestar, get
from litestar.exceptions import NotFoundException

from hub.http.errors import EXCEPTION_HANDLERS


@get("/bug")
async def bug() -> None:
    raise KeyError("a bug")


@get("/missing")
async def missing() -> None:
    raise NotFoundException("No such thing.")


async def test_a_bug_is_logged_and_answered_500_while_http_errors_keep_their_status(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Litestar([bug, missing], exception_handlers=EXCEPTION_HANDLERS, logging_config=None)  # type: ignore[arg-type]
    caplog.set_level(logging.ERROR, logger="hub.http.errors")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client:
        broken = await client.get("/bug")
        not_found = await client.get("/missing")
    assert broken.status_code == 500
    assert broken.json()["status_code"] == 500
    assert any("KeyError" in (record.exc_text or "") for record in caplog.records)
    assert not_found.status_code == 404
    assert not_found.json()["detail"] == "No such thing."
