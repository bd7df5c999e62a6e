/**
 * The tokens of OAuth 2 grants: one grant per sign-in, holding our rotating refresh tokens, the access
 * tokens they produced and the IdP's own refresh token (sealed). Refresh token rotation with reuse
 * detection follows RFC 6819 section 5.2.2.3 and OAuth 2.1 section 4.3.1: every refresh token is single
 * use, and presenting a used one means two parties hold it, so the whole grant is revoked
 * (storage/oauth2-grants.ts writes each step atomically).
 */
import { randomUUID } from 'node:crypto'
import { hashSecret, MAX_SECRET_LENGTH, newSecret } from '../pki/secrets.js'
import type { SecretBox } from '../pki/secretbox.js'
import type { Client, Db } from '../storage/database.js'
import { continueGrant as continueGrantRows, createSignInGrant, findRefreshTokenByHash, type NewRefreshToken, type SealedIdpToken } from '../storage/oauth2-grants.js'
import type { OAuth2Grant } from '../storage/types.js'
import type { UserData } from '../storage/users.js'
import { newAccessToken } from './tokens.js'

/** RFC 6749 section 5.1, as Apple's client reads it (PROTOCOL.md section 4). */
export interface TokenResponse {
  token_type: 'Bearer'
  access_token: string
  expires_in: number
  refresh_token: string
  /** RFC 6749 section 5.1: the scope granted; Apple's example token response carries it. */
  scope?: string
}

export interface IssuedTokens {
  response: TokenResponse
  grantId: string
  accessTokenId: string
}

export interface GrantLifetimes {
  accessTokenTtlSeconds: number
  refreshTokenTtlSeconds: number
}

/** The associated data binding a sealed IdP refresh token to its grant: a ciphertext cannot be moved. */
const sealName = (grantId: string) => `oauth2-grant:${grantId}:idp-refresh-token`

export function sealIdpRefreshToken(box: SecretBox, grantId: string, token: string | undefined): SealedIdpToken {
  if (!token) return { idpRefreshTokenCiphertext: null, idpRefreshTokenNonce: null, idpRefreshTokenTag: null }
  const sealed = box.seal(sealName(grantId), Buffer.from(token, 'utf8'))
  return { idpRefreshTokenCiphertext: new Uint8Array(sealed.ciphertext), idpRefreshTokenNonce: new Uint8Array(sealed.nonce), idpRefreshTokenTag: new Uint8Array(sealed.tag) }
}

export function openIdpRefreshToken(box: SecretBox, grant: OAuth2Grant): string | undefined {
  const { idpRefreshTokenCiphertext: ciphertext, idpRefreshTokenNonce: nonce, idpRefreshTokenTag: tag } = grant
  if (!ciphertext || !nonce || !tag) return undefined
  return box.open(sealName(grant.id), { ciphertext: Buffer.from(ciphertext), nonce: Buffer.from(nonce), tag: Buffer.from(tag) }).toString('utf8')
}

function newRefreshToken(lifetimes: GrantLifetimes, now: Date): { token: string; row: NewRefreshToken } {
  const token = newSecret()
  return { token, row: { tokenHash: hashSecret(token), createdAt: now, expiresAt: new Date(now.getTime() + lifetimes.refreshTokenTtlSeconds * 1000) } }
}

function response(access: string, refresh: string, lifetimes: GrantLifetimes, scope: string | undefined): TokenResponse {
  return { token_type: 'Bearer', access_token: access, expires_in: lifetimes.accessTokenTtlSeconds, refresh_token: refresh, ...(scope ? { scope } : {}) }
}

/**
 * A new grant for a fresh sign-in; its first access token may fetch the enrollment profile. Undefined
 * `tokens` when the user is deactivated (nothing but the user row is written then).
 */
export async function createGrant(
  db: Client,
  box: SecretBox,
  params: { user: UserData; teamId: string; idpRefreshToken?: string; enrollmentWindowSeconds: number; lifetimes: GrantLifetimes; scope?: string; now: Date },
): Promise<{ userId: string; userActive: boolean; tokens?: IssuedTokens }> {
  const { lifetimes, now } = params
  const grantId = randomUUID()
  const access = newAccessToken({ userId: '', teamId: params.teamId, method: 'oauth2', windowSeconds: params.enrollmentWindowSeconds, lifetimeSeconds: lifetimes.accessTokenTtlSeconds, now })
  const refresh = newRefreshToken(lifetimes, now)
  const { userId: _u, oauth2GrantId: _g, ...accessRow } = access.row
  const created = await createSignInGrant(db, {
    user: params.user,
    grantId,
    createdAt: now,
    idpToken: sealIdpRefreshToken(box, grantId, params.idpRefreshToken),
    accessToken: accessRow,
    refreshToken: refresh.row,
  })
  if (!created.accessTokenId) return { userId: created.user.id, userActive: false }
  return {
    userId: created.user.id,
    userActive: true,
    tokens: { response: response(access.token, refresh.token, lifetimes, params.scope), grantId, accessTokenId: created.accessTokenId },
  }
}

/** The next tokens of a live grant (see storage's continueGrant); undefined when it was revoked meanwhile. */
export async function continueGrant(
  db: Client,
  box: SecretBox,
  params: { grantId: string; userId: string; teamId: string; refreshedFromId: string; idpRefreshToken?: string; user?: UserData; lifetimes: GrantLifetimes; scope?: string; now: Date },
): Promise<IssuedTokens | undefined> {
  const { lifetimes, now } = params
  const access = newAccessToken({
    userId: params.userId,
    teamId: params.teamId,
    method: 'oauth2',
    windowSeconds: 0,
    lifetimeSeconds: lifetimes.accessTokenTtlSeconds,
    refreshedFromId: params.refreshedFromId,
    now,
  })
  const refresh = newRefreshToken(lifetimes, now)
  const { userId: _u, oauth2GrantId: _g, ...accessRow } = access.row
  const continued = await continueGrantRows(db, {
    grantId: params.grantId,
    userId: params.userId,
    idpToken: params.idpRefreshToken ? sealIdpRefreshToken(box, params.grantId, params.idpRefreshToken) : undefined,
    user: params.user,
    accessToken: accessRow,
    refreshToken: refresh.row,
  })
  if (!continued) return undefined
  return { response: response(access.token, refresh.token, lifetimes, params.scope), grantId: params.grantId, accessTokenId: continued.accessTokenId }
}

export function findRefreshToken(db: Db, token: string) {
  if (!token || token.length > MAX_SECRET_LENGTH) return Promise.resolve(null)
  return findRefreshTokenByHash(db, hashSecret(token))
}

export { consumeRefreshToken, releaseRefreshToken, revokeGrant } from '../storage/oauth2-grants.js'
