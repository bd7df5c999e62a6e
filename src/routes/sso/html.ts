/**
 * The HTML the device's web view shows during web sign-in: the SSO page and the error page. Both are
 * self-contained (no external assets) and run under a strict Content-Security-Policy: inline CSS and
 * script are allowed only with the per-response nonce. Every interpolated value is escaped.
 */
import { randomBytes } from 'node:crypto'
import { WEB_SIGNIN_CALLBACK_SCHEME } from '../../protocol/web-signin.js'

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

export function newNonce(): string {
  return randomBytes(16).toString('base64')
}

/**
 * `connect` is the origin the page's script may call (the start endpoint); `forms` where its forms may
 * post. The device's callback scheme is allowed as a form target because the development sign-in form
 * is answered with a 308 to it, and Chromium applies form-action to redirects.
 */
export function pageHeaders(nonce: string, allow: { connect?: string; forms?: string } = {}): Record<string, string> {
  const csp = [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    `style-src 'nonce-${nonce}'`,
    `connect-src ${allow.connect ?? "'none'"}`,
    `form-action ${allow.forms ? `${allow.forms} ${WEB_SIGNIN_CALLBACK_SCHEME}:` : "'none'"}`,
    "base-uri 'none'",
    "frame-ancestors 'none'",
  ].join('; ')
  return {
    'content-type': 'text/html; charset=utf-8',
    'content-security-policy': csp,
    'cache-control': 'no-store',
    // The page URL holds the team's enrollment token and the user's identifier: never send it to the IdP.
    'referrer-policy': 'no-referrer',
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
  }
}

const STYLE = `
:root { color-scheme: light dark; --fg: #1d1d1f; --muted: #6e6e73; --bg: #f5f5f7; --card: #fff; --accent: #0071e3; --warn: #b25000; }
@media (prefers-color-scheme: dark) { :root { --fg: #f5f5f7; --muted: #a1a1a6; --bg: #000; --card: #1c1c1e; --accent: #2997ff; --warn: #ff9f0a; } }
* { box-sizing: border-box; }
body { margin: 0; font: 17px/1.45 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 30rem; margin: 0 auto; padding: 2rem 1.25rem; }
.card { background: var(--card); border-radius: 14px; padding: 1.5rem 1.25rem; }
h1 { font-size: 1.5rem; margin: 0 0 .75rem; overflow-wrap: anywhere; }
p { margin: .5rem 0; }
.muted { color: var(--muted); font-size: .94rem; }
.identifier { font-weight: 600; overflow-wrap: anywhere; }
.badge { display: inline-block; color: var(--warn); border: 1px solid var(--warn); border-radius: 6px; padding: .1rem .5rem; font-size: .8rem; font-weight: 600; text-transform: uppercase; letter-spacing: .04em; }
label { display: block; margin: 1rem 0 .35rem; font-weight: 600; }
input[type=email] { width: 100%; font: inherit; padding: .65rem .75rem; border: 1px solid var(--muted); border-radius: 10px; background: transparent; color: inherit; }
button { margin-top: 1rem; width: 100%; font: inherit; font-weight: 600; padding: .75rem; border: 0; border-radius: 10px; background: var(--accent); color: #fff; }
button:disabled { opacity: .5; }
code { font: .85rem ui-monospace, SFMono-Regular, Menlo, monospace; overflow-wrap: anywhere; }
[hidden] { display: none !important; }
`

function document(nonce: string, title: string, body: string, script?: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${escapeHtml(title)}</title>
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
<main>
${body}
</main>
${script ? `<script nonce="${nonce}">${script}</script>\n` : ''}</body>
</html>
`
}

// Asks the server for the IdP URL and goes there; on failure shows why, with the request id and a retry.
const START_SCRIPT = `(() => {
  'use strict'
  const $ = (id) => document.getElementById(id)
  const data = $('sso').dataset
  const status = $('status'), failure = $('failure'), retry = $('retry')
  function fail(message, ref) {
    status.hidden = true
    $('failure-message').textContent = message
    $('failure-ref').textContent = ref || 'none'
    failure.hidden = false
    retry.disabled = false
  }
  async function start() {
    failure.hidden = true
    status.hidden = false
    retry.disabled = true
    let ref = ''
    try {
      const res = await fetch(data.startUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ enrollmentToken: data.enrollmentToken || null, userIdentifier: data.userIdentifier || null }),
        credentials: 'omit',
        cache: 'no-store',
      })
      ref = res.headers.get('x-request-id') || ''
      const body = await res.json().catch(() => null)
      if (res.ok && body && typeof body.url === 'string' && /^https?:\\/\\//.test(body.url)) {
        window.location.assign(body.url)
        return
      }
      fail(body && typeof body.message === 'string' ? body.message : 'The server could not start the sign-in.', ref)
    } catch {
      fail('The server could not be reached. Check your connection and try again.', ref)
    }
  }
  retry.addEventListener('click', start)
  start()
})()`

export interface SsoPageInput {
  nonce: string
  orgName: string
  userIdentifier: string | null
  /** The team's enrollment token; null for the Default team's /mdm/sso. */
  enrollmentToken: string | null
  mode: 'saml' | 'dev'
  startUrl: string
  devSignInUrl: string
}

export function ssoPage(p: SsoPageInput): string {
  const who = p.userIdentifier
    ? `<p>Enrolling <span class="identifier">${escapeHtml(p.userIdentifier)}</span> in ${escapeHtml(p.orgName)}'s device management.</p>`
    : `<p>Enrolling this device in ${escapeHtml(p.orgName)}'s device management.</p>`
  const twice = `<p class="muted">You will sign in twice: first with your ${escapeHtml(p.orgName)} account, then on the device with your Managed Apple Account.</p>`
  if (p.mode === 'dev') {
    const body = `<div class="card" id="sso">
<h1>${escapeHtml(p.orgName)}</h1>
${who}
<p><span class="badge">Development sign-in</span></p>
<p class="muted">No identity provider is configured on this server, so anyone can sign in as any email address. Configure SAML before real users enroll.</p>
<form method="post" action="${escapeHtml(p.devSignInUrl)}">
<input type="hidden" name="enrollmentToken" value="${escapeHtml(p.enrollmentToken ?? '')}">
<input type="hidden" name="userIdentifier" value="${escapeHtml(p.userIdentifier ?? '')}">
<label for="email">Email address</label>
<input id="email" name="email" type="email" required autocomplete="email" autocapitalize="none" value="${escapeHtml(p.userIdentifier ?? '')}">
<button type="submit" id="dev-sign-in">Sign in</button>
</form>
${twice}
</div>`
    return document(p.nonce, `Sign in - ${p.orgName}`, body)
  }
  const body = `<div class="card" id="sso" data-start-url="${escapeHtml(p.startUrl)}" data-enrollment-token="${escapeHtml(p.enrollmentToken ?? '')}" data-user-identifier="${escapeHtml(p.userIdentifier ?? '')}">
<h1>${escapeHtml(p.orgName)}</h1>
${who}
${twice}
<p id="status" role="status" aria-live="polite">Opening your ${escapeHtml(p.orgName)} sign-in page&hellip;</p>
<div id="failure" role="alert" hidden>
<p><strong>Sign-in could not start.</strong> <span id="failure-message"></span></p>
<p class="muted">Reference: <code id="failure-ref"></code></p>
<button type="button" id="retry">Try again</button>
</div>
<noscript><p>This page needs JavaScript to continue to the sign-in page.</p></noscript>
</div>`
  return document(p.nonce, `Sign in - ${p.orgName}`, body, START_SCRIPT)
}

export function errorPage(p: { nonce: string; orgName: string; message: string; requestId: string }): string {
  const body = `<div class="card" id="error">
<h1>Sign-in failed</h1>
<p id="error-message">${escapeHtml(p.message)}</p>
<p class="muted">Start the enrollment again from Settings on your device. If it keeps failing, contact ${escapeHtml(p.orgName)}'s IT department and give them this reference:</p>
<p><code id="error-ref">${escapeHtml(p.requestId)}</code></p>
</div>`
  return document(p.nonce, `Sign-in failed - ${p.orgName}`, body)
}
