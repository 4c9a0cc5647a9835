"""The review pages' sign-in and forms, through the API's real HTTP stack: a bad token or a
missing CSRF token gets nowhere, the session cookie is HttpOnly and SameSite=Strict, and a stale
decision is refused by the deal and shown as such (the browser flow is in tests/e2e)."""

from __future__ import annotations

import re

import httpx

from starters.api.review import SESSION_COOKIE, SIGN_IN_COOKIE


def hidden_csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


async def sign_in(api: httpx.AsyncClient, token: str) -> httpx.Response:
    form = await api.get("/review")
    return await api.post("/review/sign-in", data={"token": token, "csrf": hidden_csrf(form.text)})


async def test_the_sign_in_page_sets_a_strict_http_only_form_cookie(api: httpx.AsyncClient) -> None:
    page = await api.get("/review")

    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "<script" not in page.text
    cookie = page.headers["set-cookie"]
    assert cookie.startswith(f"{SIGN_IN_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/review" in cookie
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_a_wrong_token_or_a_forged_form_signs_nobody_in(api: httpx.AsyncClient) -> None:
    wrong = await sign_in(api, "not-a-token")
    api.cookies.clear()
    forged = await api.post("/review/sign-in", data={"token": "sandbox-finance", "csrf": "x"})

    assert wrong.status_code == 401 and "not valid" in wrong.text
    assert forged.status_code == 403
    assert SESSION_COOKIE not in wrong.headers.get("set-cookie", "")
    assert SESSION_COOKIE not in forged.headers.get("set-cookie", "")


async def test_a_valid_token_opens_a_strict_http_only_session(api: httpx.AsyncClient) -> None:
    signed_in = await sign_in(api, "sandbox-finance")

    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/review"
    cookie = next(
        c for c in signed_in.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)
    )
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "sandbox-finance" not in cookie


async def test_a_decision_without_the_sessions_csrf_token_is_refused(
    api: httpx.AsyncClient,
) -> None:
    await sign_in(api, "sandbox-finance")

    forged = await api.post(
        "/review/deals/deal-006000000000001AAA/decision",
        data={"decision": "approve", "csrf": "forged", "note": ""},
    )
    api.cookies.clear()
    signed_out = await api.post(
        "/review/deals/deal-006000000000001AAA/decision",
        data={"decision": "approve", "csrf": "forged"},
    )

    assert forged.status_code == 403
    assert signed_out.status_code == 401 and "sign in again" in signed_out.text
