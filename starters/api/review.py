"""``/review``: the review pages, server-rendered HTML without JavaScript.

A reviewer signs in with their API token. The token is checked once and never stored in the
browser: the session is a random id in an HttpOnly, SameSite=Strict cookie (``Secure`` when the
API's public URL is https), mapped to the token's person and role in this process, for
``SESSION_TTL``. Every form carries a CSRF token: the session's own after sign-in, and before it
a double-submit value (cookie and hidden field) so nobody can sign a browser into their account.

The page lists the deals waiting for the reader's role (deal desk: quotes waiting for approval;
finance: first invoices waiting for review; operator: deals parked in needs_attention), each with
the invoice it would send: lines, subtotal, tax, total, dates, payment terms and the quote's
approvals. Approve / reject (operators: resume / mark lost) go through the same decision use case
as the API, so the deal itself refuses a stale decision and the page says why.

Sessions live in the API process: behind several API replicas, route ``/review`` with sticky
sessions (or run one replica for it); a restart signs everybody out, which is safe.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from html import escape
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel

from qtc import deal as contract
from qtc.deal import DealStatus, InvoiceReview, MarkLost, QuoteDecision, Resume
from qtc.models import ScheduledInvoice
from qtc.money import format_minor
from runtime.settings import ApiPrincipal
from service import deals
from starters.api.auth import principal_for
from starters.api.state import State, TemporalClient

router = APIRouter(include_in_schema=False)

SESSION_COOKIE = "qtc_review_session"
SIGN_IN_COOKIE = "qtc_review_signin"
SESSION_TTL = timedelta(hours=8)
MAX_SESSIONS = 10_000
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# What each role decides here: the stage it waits in and the two decisions of its form.
_DECISIONS: dict[str, tuple[str, str, str, str]] = {
    # role: (approve decision, reject decision, approve label, reject label)
    "deal_desk": (
        contract.UPDATE_APPROVE_QUOTE,
        contract.UPDATE_REJECT_QUOTE,
        "Approve quote",
        "Reject quote",
    ),
    "finance": (
        contract.UPDATE_APPROVE_INVOICE,
        contract.UPDATE_REJECT_INVOICE,
        "Approve invoice",
        "Reject invoice",
    ),
    "operator": (contract.UPDATE_RESUME, contract.UPDATE_MARK_LOST, "Resume", "Mark lost"),
}


@dataclass
class Session:
    principal: ApiPrincipal
    csrf: str
    expires_at: float


@dataclass
class ReviewSessions:
    """Sign-in sessions of this API process (see the module docstring)."""

    sessions: dict[str, Session] = field(default_factory=dict)

    def create(self, principal: ApiPrincipal) -> tuple[str, Session]:
        self._expire()
        while len(self.sessions) >= MAX_SESSIONS:
            self.sessions.pop(next(iter(self.sessions)))
        session_id = secrets.token_urlsafe(32)
        session = Session(
            principal, secrets.token_urlsafe(32), time.monotonic() + SESSION_TTL.total_seconds()
        )
        self.sessions[session_id] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self.sessions.get(session_id)
        if session is None or session.expires_at < time.monotonic():
            self.sessions.pop(session_id, None)
            return None
        return session

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self.sessions.pop(session_id, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, s in self.sessions.items() if s.expires_at < now]:
            del self.sessions[key]


def _sessions(request: Request) -> ReviewSessions:
    app_state = request.app.state
    if not hasattr(app_state, "review_sessions"):
        app_state.review_sessions = ReviewSessions()
    sessions: ReviewSessions = app_state.review_sessions
    return sessions


def _secure(state: State) -> bool:
    return state.settings.api_public_url.startswith("https://")


def _same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


# --- pages ------------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1d2330;max-width:70rem}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin:0 0 .4rem}
.deal{border:1px solid #c9ced8;border-radius:6px;padding:1rem;margin:1rem 0}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.25rem .6rem;text-align:left}
th{border-bottom:1px solid #c9ced8}td.n,th.n{text-align:right}
.totals td{font-weight:600}.muted{color:#5b6475}.banner{padding:.6rem 1rem;border-radius:4px}
.ok{background:#e3f4e6}.refused{background:#fbe4e4}textarea{width:30rem;height:3rem}
button{margin-right:.5rem;padding:.3rem .8rem}
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _sign_in_page(csrf: str, error: str | None = None, status: int = 200) -> HTMLResponse:
    problem = f'<p class="banner refused" id="error">{escape(error)}</p>' if error else ""
    body = (
        "<h1>Quote-to-Cash reviews</h1>"
        f"{problem}"
        '<form id="sign-in" method="post" action="/review/sign-in">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        '<label>API token <input type="password" name="token" id="token" '
        'autocomplete="off" required></label> '
        '<button type="submit" id="sign-in-button">Sign in</button></form>'
        '<p class="muted">Your token decides your role: deal desk, finance or operator.</p>'
    )
    return _page("Sign in - QTC reviews", body, status)


def _money(amount_minor: int, currency: str) -> str:
    return escape(format_minor(amount_minor, currency))


def _invoice(invoice: ScheduledInvoice, status: DealStatus, label: str) -> str:
    currency = status.currency
    rows = "".join(
        "<tr>"
        f"<td>{escape(line.sku)}</td><td>{escape(line.kind)}</td>"
        f'<td class="n">{line.quantity}</td>'
        f'<td class="n">{_money(line.unit_amount_minor, currency)}</td>'
        f'<td class="n">{_money(line.amount_minor, currency)}</td>'
        f"<td>{line.period_start or ''} {'to ' + str(line.period_end) if line.period_end else ''}"
        "</td></tr>"
        for line in invoice.lines
    )
    subtotal = sum(line.amount_minor for line in invoice.lines)
    # With tax on, the billing system's own figures for this invoice (asked before the review).
    taxed = invoice is status.invoice_preview and status.invoice_preview_tax_minor is not None
    tax_minor = status.invoice_preview_tax_minor if taxed else None
    total_minor = status.invoice_preview_total_minor if taxed else None
    tax_label = "Tax (from the billing system)" if taxed else "Tax (none on this deal)"
    tax_shown = tax_minor if tax_minor is not None else 0
    total_shown = total_minor if total_minor is not None else subtotal + tax_shown
    due = (
        f"; due {invoice.date + timedelta(days=status.payment_terms_days)} "
        f"(net {status.payment_terms_days})"
        if status.payment_terms_days is not None
        else ""
    )
    return (
        f"<p><strong>{escape(label)}</strong>: dated {invoice.date}{due}; service "
        f"{invoice.period_start} to {invoice.period_end}</p>"
        '<table class="invoice"><tr><th>SKU</th><th>kind</th><th class="n">qty</th>'
        '<th class="n">unit</th><th class="n">amount</th><th>period</th></tr>'
        f"{rows}"
        f'<tr class="totals"><td colspan=4>Subtotal</td>'
        f'<td class="n">{_money(subtotal, currency)}</td><td></td></tr>'
        f"<tr><td colspan=4>{tax_label}</td>"
        f'<td class="n">{_money(tax_shown, currency)}</td><td></td></tr>'
        f'<tr class="totals"><td colspan=4>Total</td>'
        f'<td class="n" data-total-minor="{total_shown}">'
        f"{_money(total_shown, currency)}</td><td></td></tr></table>"
    )


def _approvals(status: DealStatus) -> str:
    items: list[str] = []
    for needed in status.approvals_needed or []:
        items.append(
            f"<li>{escape(needed.sku)}: discount {needed.discount_percent}% above the "
            f"{needed.max_discount_percent}% limit ({escape(needed.pointer)})</li>"
        )
    decision = status.quote_decision
    if decision is not None:
        note = f": {escape(decision.note)}" if decision.note else ""
        items.append(f"<li>Quote approved by {escape(decision.by)}{note}</li>")
    if not items:
        items.append("<li>Within the discount policy; no deal-desk approval was needed.</li>")
    return f'<p><strong>Approvals</strong></p><ul class="approvals">{"".join(items)}</ul>'


def _deal(status: DealStatus, role: str, csrf: str) -> str:
    approve, reject, approve_label, reject_label = _DECISIONS[role]
    invoice = status.invoice_preview or status.quote_first_invoice
    label = "First invoice" if status.invoice_preview else "First invoice as quoted"
    preview = _invoice(invoice, status, label) if invoice else "<p>No invoice scheduled.</p>"
    error = (
        f'<p class="banner refused">Parked on {escape(status.last_error.step)}: '
        f"{escape(status.last_error.message)}</p>"
        if status.last_error is not None and status.stage == "needs_attention"
        else ""
    )
    deal_id = escape(status.deal_id)
    return (
        f'<section class="deal" id="{deal_id}">'
        f"<h2>{escape(status.customer)} <span class=muted>{deal_id} · quote "
        f"{escape(status.quote_id)} · phase {status.phase} · ARR "
        f"{_money(status.arr_minor, status.currency)}</span></h2>"
        f"{error}{preview}{_approvals(status)}"
        f'<form method="post" action="/review/deals/{deal_id}/decision">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        '<label>Note<br><textarea name="note" maxlength="2000"></textarea></label><br>'
        f'<button type="submit" name="decision" value="approve" class="approve">'
        f"{escape(approve_label)}</button>"
        f'<button type="submit" name="decision" value="reject" class="reject">'
        f"{escape(reject_label)}</button>"
        f'<span class="muted"> ({escape(approve)} / {escape(reject)})</span></form></section>'
    )


async def _waiting(client: TemporalClient, state: State, role: str) -> list[DealStatus]:
    stage = contract.WAITING_STAGES[role]
    rows = await deals.list_deals(client, stage, 100, rpc_timeout=state.rpc_timeout)
    statuses = await asyncio.gather(
        *(deals.get_status(client, row.deal_id, rpc_timeout=state.rpc_timeout) for row in rows),
        return_exceptions=True,
    )
    # Visibility lags the deal a little: only deals still waiting right now are shown.
    return [s for s in statuses if isinstance(s, DealStatus) and s.stage == stage]


async def _queue_page(
    state: State,
    client: TemporalClient,
    session: Session,
    banner: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    role = session.principal.role
    header = (
        f"<h1>Reviews for {escape(session.principal.person)} "
        f"<span class=muted>({escape(role)})</span></h1>"
        '<form method="post" action="/review/sign-out">'
        f'<input type="hidden" name="csrf" value="{escape(session.csrf)}">'
        '<button type="submit">Sign out</button></form>'
    )
    if role not in _DECISIONS:
        body = "<p>Your role has no reviews to make here.</p>"
    else:
        waiting = await _waiting(client, state, role)
        stage = contract.WAITING_STAGES[role]
        body = (
            "".join(_deal(s, role, session.csrf) for s in waiting)
            or f'<p id="empty">No deal is waiting in {escape(stage)}.</p>'
        )
    return _page("QTC reviews", header + banner + body, status_code)


# --- routes -----------------------------------------------------------------------------------


def _fresh_sign_in(state: State, error: str | None = None, status: int = 200) -> Response:
    csrf = secrets.token_urlsafe(32)
    page = _sign_in_page(csrf, error, status)
    page.set_cookie(
        SIGN_IN_COOKIE,
        csrf,
        httponly=True,
        samesite="strict",
        secure=_secure(state),
        path="/review",
        max_age=3600,
    )
    return page


@router.get("/review")
async def review(request: Request, state: State, client: TemporalClient) -> Response:
    session = _sessions(request).get(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return _fresh_sign_in(state)
    return await _queue_page(state, client, session)


@router.post("/review/sign-in")
async def sign_in(
    request: Request,
    state: State,
    token: Annotated[str, Form(max_length=512)],
    csrf: Annotated[str, Form(max_length=128)],
) -> Response:
    if not _same(csrf, request.cookies.get(SIGN_IN_COOKIE, "")):
        return _fresh_sign_in(state, "The sign-in form expired; please try again.", 403)
    principal = principal_for(token, state.settings.api_tokens)
    if principal is None:
        return _fresh_sign_in(state, "That token is not valid.", 401)
    session_id, _ = _sessions(request).create(principal)
    redirect = RedirectResponse("/review", status_code=303, headers=_HEADERS)
    redirect.set_cookie(
        SESSION_COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        secure=_secure(state),
        path="/review",
        max_age=int(SESSION_TTL.total_seconds()),
    )
    redirect.delete_cookie(SIGN_IN_COOKIE, path="/review")
    return redirect


@router.post("/review/sign-out")
async def sign_out(
    request: Request, state: State, csrf: Annotated[str, Form(max_length=128)]
) -> Response:
    sessions = _sessions(request)
    session_id = request.cookies.get(SESSION_COOKIE)
    session = sessions.get(session_id)
    if session is not None and _same(csrf, session.csrf):
        sessions.drop(session_id)
    redirect = RedirectResponse("/review", status_code=303, headers=_HEADERS)
    redirect.delete_cookie(SESSION_COOKIE, path="/review")
    return redirect


@router.post("/review/deals/{deal_id}/decision")
async def decide(
    deal_id: str,
    request: Request,
    state: State,
    client: TemporalClient,
    decision: Annotated[Literal["approve", "reject"], Form()],
    csrf: Annotated[str, Form(max_length=128)],
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    session = _sessions(request).get(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return _fresh_sign_in(state, "Your session has ended; sign in again.", 401)
    if not _same(csrf, session.csrf):
        return _page("Forbidden", "<p>The form is stale; reload the page.</p>", 403)
    role = session.principal.role
    if role not in _DECISIONS or not deal_id.startswith("deal-") or len(deal_id) > 69:
        return _page("Forbidden", "<p>You cannot decide this deal.</p>", 403)
    approve, reject, _, _ = _DECISIONS[role]
    name = approve if decision == "approve" else reject
    person, text = session.principal.person, note.strip() or None
    model: BaseModel
    if role == "deal_desk":
        model = QuoteDecision(by=person, note=text)
    elif role == "finance":
        model = InvoiceReview(reviewer=person, note=text)
    elif decision == "approve":
        model = Resume(by=person, note=text)
    else:
        model = MarkLost(by=person, reason=text)
    try:
        taken = await deals.decide(client, deal_id, name, model, rpc_timeout=state.rpc_timeout)
    except deals.DecisionRefused as refused:
        where = f" It is now in {refused.current_stage}." if refused.current_stage else ""
        banner = (
            f'<p class="banner refused" id="result">{escape(deal_id)}: not recorded: '
            f"{escape(refused.reason)}.{escape(where)}</p>"
        )
        return await _queue_page(state, client, session, banner, 409)
    except deals.DealNotFound:
        banner = f'<p class="banner refused" id="result">No deal {escape(deal_id)}.</p>'
        return await _queue_page(state, client, session, banner, 404)
    banner = (
        f'<p class="banner ok" id="result">{escape(deal_id)}: {escape(name)} recorded for '
        f"{escape(person)}; the deal is now in {escape(taken.stage)}.</p>"
    )
    return await _queue_page(state, client, session, banner)
