/**
 * The device's side of `apple-oauth2` (PROTOCOL.md section 4): the authorization request it sends the
 * user's browser to, the redirect it waits for, and the token response it needs from `token-url`.
 * The server's side is services/oauth2.ts; this is what the device simulator (src/device) uses.
 * https://developer.apple.com/documentation/devicemanagement/implementing-the-oauth2-authentication-user-enrollment-flow
 */
import { z } from 'zod'
import type { SignInChallenge } from './challenge.js'

type OAuth2Challenge = Extract<SignInChallenge, { method: 'apple-oauth2' }>

/**
 * What Apple's client sends to `authorization-url`: a public client without PKCE, with `login_hint` set
 * to what the user typed and a random `state` it checks on the way back.
 */
export function authorizationRequestUrl(challenge: OAuth2Challenge, options: { state: string; loginHint?: string }): string {
  const url = new URL(challenge.authorizationUrl)
  url.searchParams.set('response_type', 'code')
  url.searchParams.set('client_id', challenge.clientId)
  url.searchParams.set('redirect_uri', challenge.redirectUrl)
  if (challenge.scope) url.searchParams.set('scope', challenge.scope)
  url.searchParams.set('state', options.state)
  if (options.loginHint) url.searchParams.set('login_hint', options.loginHint)
  return url.toString()
}

/** The code from the redirect to `redirect-url`; why not when it is not one the device would accept. */
export function readAuthorizationRedirect(location: string, challenge: OAuth2Challenge, state: string): { code: string } | { problem: string } {
  const trimmed = location.trim()
  if (!trimmed.startsWith(challenge.redirectUrl)) return { problem: `the URL does not start with the redirect-url ${challenge.redirectUrl}` }
  let params: URLSearchParams
  try {
    params = new URL(trimmed).searchParams
  } catch {
    return { problem: 'not a URL' }
  }
  const error = params.get('error')
  if (error) return { problem: `the IdP answered ${error}${params.get('error_description') ? `: ${params.get('error_description')}` : ''}` }
  if (params.get('state') !== state) return { problem: 'state does not match the one sent (the device stops here)' }
  const code = params.get('code')
  return code ? { code } : { problem: 'no code in the redirect' }
}

/** The form the device POSTs to `token-url` to redeem the code. */
export function tokenRequestForm(challenge: OAuth2Challenge, code: string): string {
  return new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: challenge.redirectUrl, client_id: challenge.clientId }).toString()
}

/** RFC 6749 section 5.1 as the device needs it: `token_type` Bearer and an `access_token`. */
export const TokenResponse = z.looseObject({
  token_type: z.string().refine((t) => t.toLowerCase() === 'bearer', 'token_type must be Bearer'),
  access_token: z.string().min(1),
  refresh_token: z.string().min(1).optional(),
  expires_in: z.number().optional(),
  scope: z.string().optional(),
})
export type TokenResponse = z.infer<typeof TokenResponse>
