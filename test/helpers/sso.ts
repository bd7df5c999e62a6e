/**
 * Shared steps of the SSO tests: what the device's web view and the IdP do, through the real app.
 */
import * as samlify from 'samlify'
import { expect } from 'vitest'
import type { App } from '../../src/app.js'
import { findAccessToken, type TokenWithUser } from '../../src/services/tokens.js'
import type { ResponseOptions, TestIdp } from './saml-idp.js'

export const CALLBACK_PATH = '/api/v1/mdm/sso/callback'
const LOCATION = /^apple-remotemanagement-user-login:\/\/authentication-results\?access-token=([A-Za-z0-9_-]+)$/

/** Our SP as the IdP administrator registers it: from the metadata endpoint. */
export async function spFromMetadata(app: App): Promise<{ entityId: string; acsUrl: string; metadata: string }> {
  const res = await app.inject('/api/v1/mdm/sso/metadata')
  expect(res.statusCode).toBe(200)
  const sp = samlify.ServiceProvider({ metadata: res.body })
  return { entityId: sp.entityMeta.getEntityID(), acsUrl: String(sp.entityMeta.getAssertionConsumerService('post')), metadata: res.body }
}

/** What the page's script does: POST the start endpoint, get the IdP URL. */
export async function startSignIn(app: App, body: { enrollmentToken?: string | null; userIdentifier?: string | null }): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/api/v1/mdm/sso', payload: body })
  expect(res.statusCode, res.body).toBe(200)
  const { url } = res.json() as { url: string }
  return url
}

export function postCallback(app: App, fields: Record<string, string>, remoteAddress?: string) {
  return app.inject({
    method: 'POST',
    url: CALLBACK_PATH,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams(fields).toString(),
    ...(remoteAddress ? { remoteAddress } : {}),
  })
}

/** Starts a sign-in, lets the IdP answer, and returns what the IdP built (not yet posted). */
export async function idpAnswer(app: App, idp: TestIdp, start: { enrollmentToken?: string | null; userIdentifier?: string | null }, options?: ResponseOptions) {
  const sp = await spFromMetadata(app)
  const url = await startSignIn(app, start)
  const request = await idp.readRequest(url, sp.metadata)
  const SAMLResponse = await idp.respond(request, sp, options)
  return { sp, request, form: { SAMLResponse, RelayState: request.relayState } }
}

/** The access token from a 308 answer, checked to be exactly what PROTOCOL.md section 3 says. */
export function tokenFrom(res: { statusCode: number; headers: Record<string, unknown>; body: string }): string {
  expect(res.statusCode, res.body).toBe(308)
  const m = LOCATION.exec(String(res.headers.location))
  expect(m, String(res.headers.location)).not.toBeNull()
  return m![1]!
}

export async function tokenRecord(app: App, token: string): Promise<TokenWithUser> {
  const found = await findAccessToken(app.db.prisma, token)
  expect(found).not.toBeNull()
  return found!
}

/** Rows that a refused sign-in must not have written. */
export async function counts(app: App): Promise<{ users: number; tokens: number }> {
  return { users: await app.db.prisma.user.count(), tokens: await app.db.prisma.accessToken.count() }
}

/** An HTML error page: 4xx, a sentence, the request id as reference, nothing technical. */
export function expectErrorPage(res: { statusCode: number; headers: Record<string, unknown>; body: string }, status: number): void {
  expect(res.statusCode, res.body).toBe(status)
  expect(String(res.headers['content-type'])).toMatch(/^text\/html/)
  expect(res.body).toContain('Sign-in failed')
  expect(res.body).toContain(String(res.headers['x-request-id']))
  expect(res.headers.location).toBeUndefined()
}
