/**
 * What an Apple device does for `apple-oauth2` (PROTOCOL.md section 4), as a test peer: read the enroll
 * 401's challenge, send the user to `authorization-url` with Apple's parameters, sign in on the IdP's
 * own login page (HTTP with cookies, as the device's web authentication session would), catch the
 * redirect to the custom-scheme `redirect-url`, check `state`, and post the code to `token-url`.
 */
import { randomBytes } from 'node:crypto'
import type { App } from '../../src/app.js'

export type Challenge = Record<string, string>

/** Parses `Bearer k="v", k2="v2"` (RFC 9110 auth-params, quoted-string with backslash escapes). */
export function parseBearerChallenge(header: string | undefined): Challenge {
  if (!header?.startsWith('Bearer ')) throw new Error(`not a Bearer challenge: ${header}`)
  const out: Challenge = {}
  const re = /([A-Za-z0-9-]+)="((?:[^"\\]|\\.)*)"(?:, |$)/gy
  for (let pos = 'Bearer '.length; pos < header.length; pos = re.lastIndex) {
    re.lastIndex = pos
    const m = re.exec(header)
    if (!m) throw new Error(`unparsable challenge from: ${header.slice(pos)}`)
    out[m[1]!] = m[2]!.replace(/\\(.)/g, '$1')
  }
  return out
}

export interface DeviceSignIn {
  code: string
  state: string
  /** The full redirect the IdP sent the browser to. */
  redirect: string
  /** The value the IdP's login form was pre-filled with (from login_hint). */
  prefilledLogin: string
}

/** Signs in at the IdP as the device's browser would and returns the authorization code. */
export async function signInAtIdp(challenge: Challenge, user: { login: string; password: string; userIdentifier?: string }): Promise<DeviceSignIn> {
  const state = randomBytes(16).toString('base64url')
  const start = new URL(challenge['authorization-url']!)
  start.searchParams.set('response_type', 'code')
  start.searchParams.set('client_id', challenge['client-id']!)
  start.searchParams.set('redirect_uri', challenge['redirect-url']!)
  start.searchParams.set('scope', challenge.scope!)
  start.searchParams.set('state', state)
  start.searchParams.set('login_hint', user.userIdentifier ?? user.login)
  const { redirect, prefilledLogin } = await browseToRedirect(start, challenge['redirect-url']!, user)
  const params = new URL(redirect).searchParams
  if (params.get('state') !== state) throw new Error('state does not match: the device would stop here')
  const code = params.get('code')
  if (!code) throw new Error(`the IdP redirected without a code: ${params.get('error')} ${params.get('error_description')}`)
  return { code, state, redirect, prefilledLogin }
}

/**
 * The device's web authentication session at the IdP: from the authorization URL through the IdP's login
 * form (HTTP with cookies) to the redirect to `redirectUrl`, which it returns without following (the
 * simulator's sign-in plugs this in as its session).
 */
export async function browseToRedirect(start: URL, redirectUrl: string, user: { login: string; password: string }): Promise<{ redirect: string; prefilledLogin: string }> {
  const jar = new Map<string, string>()
  const request = async (url: URL, init: RequestInit = {}) => {
    const headers = new Headers(init.headers)
    if (jar.size) headers.set('cookie', [...jar].map(([k, v]) => `${k}=${v}`).join('; '))
    const res = await fetch(url, { ...init, headers, redirect: 'manual' })
    for (const cookie of res.headers.getSetCookie()) {
      const [pair] = cookie.split(';')
      const eq = pair!.indexOf('=')
      jar.set(pair!.slice(0, eq).trim(), pair!.slice(eq + 1).trim())
    }
    return res
  }

  let url = start
  let res = await request(url)
  let prefilledLogin = ''
  for (let hops = 0; hops < 10; hops++) {
    if (res.status >= 300 && res.status < 400) {
      const location = res.headers.get('location')!
      await res.arrayBuffer()
      if (location.startsWith(`${redirectUrl}?`)) return { redirect: location, prefilledLogin }
      url = new URL(location, url)
      res = await request(url)
      continue
    }
    const html = await res.text()
    const form = /<form method="post" action="([^"]+)">/.exec(html)
    if (res.status !== 200 || !form) throw new Error(`unexpected IdP page ${res.status}: ${html.slice(0, 300)}`)
    prefilledLogin = /<input name="login" value="([^"]*)">/.exec(html)?.[1] ?? ''
    url = new URL(form[1]!.replace(/&#(\d+);/g, (_m, c: string) => String.fromCharCode(Number(c))), url)
    res = await request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ login: user.login, password: user.password }).toString(),
    })
    if (res.status === 401) throw new Error('the IdP refused the password')
  }
  throw new Error('too many redirects at the IdP')
}

/** POSTs a form to our token endpoint, as the device does (it is `token-url` from the challenge). */
export function postToken(app: App, tokenUrl: string, params: Record<string, string>, headers: Record<string, string> = {}) {
  return app.inject({
    method: 'POST',
    url: new URL(tokenUrl).pathname,
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    payload: new URLSearchParams(params).toString(),
  })
}
