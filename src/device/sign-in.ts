/**
 * The sign-in between the enroll 401 and the second POST, as the device does it (PROTOCOL.md sections
 * 3 and 4). The device opens a URL in a web authentication session and waits for the session to end on
 * its callback scheme; who signs in behind that URL is pluggable:
 *
 *   - `dev`: the server's development sign-in form, filled in over HTTP as a person would in the web view;
 *   - `browser`: any `WebAuthenticationSession`: the command prints the URL and reads the callback URL a
 *     person pastes; tests drive the in-process SAML IdP or oidc-provider;
 *   - `token`: an access token from a real IdP session, so there is nothing to sign in.
 *
 * For `apple-oauth2` the device then posts the code to `token-url` itself: no shortcut a device does not
 * take (no password grant).
 */
import { randomBytes } from 'node:crypto'
import type { SignInChallenge } from '../protocol/challenge.js'
import { authorizationRequestUrl, readAuthorizationRedirect, tokenRequestForm, TokenResponse } from '../protocol/oauth2.js'
import { readAuthenticationResults, WEB_SIGNIN_CALLBACK_SCHEME } from '../protocol/web-signin.js'
import { networkFacts, responseFacts, StepFailure } from './steps.js'
import { TransportError, type Transport } from './transport.js'

export interface WebAuthenticationRequest {
  method: SignInChallenge['method']
  /** What the device opens: the SSO page with user-identifier, or the IdP's authorization URL. */
  url: string
  /** The session ends on the first URL with this scheme (`apple-remotemanagement-user-login`). */
  callbackScheme: string
  userIdentifier: string
}

/** Opens `url`, lets someone sign in, and returns the callback-scheme URL the session ended on. */
export type WebAuthenticationSession = (request: WebAuthenticationRequest) => Promise<string>

export type SignInMethod = { kind: 'token'; token: string } | { kind: 'dev'; email?: string } | { kind: 'browser'; session: WebAuthenticationSession }

export interface SignedIn {
  accessToken: string
  refreshToken?: string
  /** For the report. */
  summary: string
}

const SAFARI = 'Mozilla/5.0 (iPhone; CPU iPhone OS 18_2_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari/604.1 byod-mdm-simulator'

export async function signIn(transport: Transport, challenge: SignInChallenge, method: SignInMethod, userIdentifier: string, userAgent: string): Promise<SignedIn> {
  if (method.kind === 'token') return { accessToken: method.token, summary: 'access token given (--token)' }
  const session = method.kind === 'dev' ? devSignInSession(transport, method.email) : method.session
  if (challenge.method === 'apple-as-web') {
    const url = new URL(challenge.url)
    // The device appends user-identifier to whatever URL it was given (PROTOCOL.md section 3).
    url.searchParams.append('user-identifier', userIdentifier)
    const location = await session({ method: challenge.method, url: url.toString(), callbackScheme: WEB_SIGNIN_CALLBACK_SCHEME, userIdentifier })
    const read = readAuthenticationResults(location)
    if ('problem' in read) {
      throw new StepFailure('sign-in', { expected: `${WEB_SIGNIN_CALLBACK_SCHEME}://authentication-results?access-token=...`, got: `${location.slice(0, 120)} (${read.problem})` })
    }
    return { accessToken: read.accessToken, summary: `web sign-in (${method.kind === 'dev' ? 'development sign-in form' : 'browser'}) returned an access token` }
  }

  if (method.kind === 'dev') {
    throw new StepFailure('sign-in', {
      expected: 'method="apple-as-web" (the development sign-in is a web page)',
      got: `method="apple-oauth2" (authorization at ${new URL(challenge.authorizationUrl).origin})`,
      fix: 'this team signs in with OAuth 2 at an IdP: run without --sign-in dev and sign in in a browser, or pass --token with an access token from a real session',
    })
  }
  const state = randomBytes(16).toString('base64url')
  const location = await session({ method: challenge.method, url: authorizationRequestUrl(challenge, { state, loginHint: userIdentifier }), callbackScheme: WEB_SIGNIN_CALLBACK_SCHEME, userIdentifier })
  const redirect = readAuthorizationRedirect(location, challenge, state)
  if ('problem' in redirect) throw new StepFailure('sign-in', { expected: `${challenge.redirectUrl}?code=...&state=<ours>`, got: `${location.slice(0, 120)} (${redirect.problem})` })
  let res
  try {
    res = await transport.request('POST', challenge.tokenUrl, { headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', 'user-agent': userAgent }, body: tokenRequestForm(challenge, redirect.code) })
  } catch (err) {
    if (err instanceof TransportError) throw new StepFailure('sign-in', networkFacts(err, 'a token response from token-url'))
    throw err
  }
  if (res.status !== 200) {
    throw new StepFailure('sign-in', responseFacts(res, '200 JSON with token_type Bearer and access_token from token-url', challenge.tokenUrl, tokenEndpointFix(res.status)))
  }
  let parsed
  try {
    parsed = TokenResponse.safeParse(JSON.parse(res.body.toString('utf8')))
  } catch {
    parsed = undefined
  }
  if (!parsed?.success) throw new StepFailure('sign-in', { expected: 'JSON with token_type Bearer and access_token', got: res.body.toString('utf8').slice(0, 200), status: 200, url: challenge.tokenUrl })
  return { accessToken: parsed.data.access_token, refreshToken: parsed.data.refresh_token, summary: `OAuth 2 code redeemed at token-url${parsed.data.refresh_token ? ' (with a refresh token)' : ''}` }
}

function tokenEndpointFix(status: number): string | undefined {
  if (status === 502) return "our server could not redeem the code at the IdP: OIDC_CLIENT_SECRET, the client's redirect URI, or PKCE required at the IdP (the server log has the IdP's answer)"
  if (status === 503) return 'the server cannot reach the IdP (OIDC_ISSUER): the device retries later'
  return undefined
}

/**
 * The development sign-in form (no IdP configured, loopback SERVER_URL or ALLOW_DEV_SIGNIN=true): read
 * the page the device opens, post its form with the email, and take the 308 to the callback scheme.
 */
export function devSignInSession(transport: Transport, email?: string): WebAuthenticationSession {
  return async (request) => {
    const headers = { 'user-agent': SAFARI, accept: 'text/html' }
    let url = request.url
    let res
    for (let hops = 0; ; hops++) {
      res = await fetchPage(transport, 'GET', url, { headers })
      const location = res.headers.location
      if (res.status >= 300 && res.status < 400 && location) {
        if (location.startsWith(`${request.callbackScheme}:`)) return location
        if (hops >= 5) throw new StepFailure('sign-in', { expected: 'the sign-in page', got: 'more than 5 redirects', url })
        url = new URL(location, url).toString()
        continue
      }
      break
    }
    if (res.status !== 200) throw new StepFailure('sign-in', responseFacts(res, '200 with the sign-in page', url))
    const html = res.body.toString('utf8')
    const form = /<form method="post" action="([^"]+)">([\s\S]*?)<\/form>/i.exec(html)
    if (!form || !/name="email"/.test(form[2]!)) {
      throw new StepFailure('sign-in', {
        expected: 'the development sign-in form',
        got: /data-start-url=/.test(html) ? 'the page that sends the user to the SAML IdP' : 'a page without it',
        status: 200,
        url,
        fix: 'the development sign-in exists only when no IdP is configured and SERVER_URL is a loopback address (or ALLOW_DEV_SIGNIN=true): run without --sign-in dev and sign in at your IdP in a browser, or pass --token',
      })
    }
    const fields = new URLSearchParams()
    for (const m of form[2]!.matchAll(/<input\b[^>]*>/gi)) {
      const name = /\bname="([^"]*)"/.exec(m[0])?.[1]
      if (!name) continue
      fields.set(unescape(name), unescape(/\bvalue="([^"]*)"/.exec(m[0])?.[1] ?? ''))
    }
    fields.set('email', email ?? request.userIdentifier)
    const action = new URL(unescape(form[1]!), url).toString()
    const posted = await fetchPage(transport, 'POST', action, { headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' }, body: fields.toString() })
    const location = posted.headers.location
    if (posted.status >= 300 && posted.status < 400 && location?.startsWith(`${request.callbackScheme}:`)) return location
    throw new StepFailure('sign-in', responseFacts(posted, `a redirect (308) to ${request.callbackScheme}://authentication-results`, action))
  }
}

async function fetchPage(transport: Transport, method: string, url: string, init: { headers: Record<string, string>; body?: string }) {
  try {
    return await transport.request(method, url, init)
  } catch (err) {
    if (err instanceof TransportError) throw new StepFailure('sign-in', networkFacts(err, 'the sign-in page'))
    throw err
  }
}

function unescape(s: string): string {
  return s.replace(/&#(\d+);/g, (_m, c: string) => String.fromCharCode(Number(c))).replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&')
}
