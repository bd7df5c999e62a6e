/**
 * Access tokens: what a sign-in (SAML, OAuth 2, development) hands the device, which the device then
 * presents as `Authorization: Bearer` to the enroll endpoint and on every MDM request.
 *
 * A token is opaque to the device (PROTOCOL.md section 3), 256 random bits, stored only as a SHA-256
 * hash, and tied to one user and one team. Within its enrollment window (ENROLLMENT_WINDOW, default 1 h)
 * it may fetch an enrollment profile; after that it can no longer start anything new.
 */
import { BadRequestError } from '../errors.js'
import type { IdentityClaims, SignInMethod } from '../identity/index.js'
import { hashSecret, MAX_SECRET_LENGTH, newSecret } from '../pki/secrets.js'
import { XML_ILLEGAL_CHARACTERS } from '../protocol/xml-limits.js'
import type { Db } from '../storage/database.js'
import { createAccessToken, findAccessTokenByHash, upsertUser as upsertUserRow, type NewAccessToken, type TokenWithUser, type UserData } from '../storage/users.js'
import type { AccessToken, User } from '../storage/types.js'

export type { TokenWithUser }

export interface MintedAccessToken {
  /** The token itself: give it to the device once, never store or log it. */
  token: string
  record: AccessToken
}

/** The user row for what the IdP vouched for; refuses values Postgres text cannot hold. */
export function userData(claims: IdentityClaims): UserData {
  // An IdP value with a control character (a decoded &#0; in a SAML NameID, say) is refused here, where
  // every sign-in method meets the database: Postgres text cannot hold U+0000.
  const values = [claims.issuer, claims.subject, claims.email, claims.displayName, ...(claims.groups ?? [])]
  if (values.some((v) => typeof v === 'string' && XML_ILLEGAL_CHARACTERS.test(v))) {
    throw new BadRequestError('the identity provider sent a user attribute with a control character', { code: 'invalid_identity' })
  }
  return { issuer: claims.issuer, subject: claims.subject, email: claims.email ?? null, displayName: claims.displayName ?? null, groups: claims.groups ?? [] }
}

/** Creates or refreshes the user the IdP vouched for. */
export async function upsertUser(db: Db, claims: IdentityClaims): Promise<User> {
  return upsertUserRow(db, userData(claims))
}

export interface MintParams {
  userId: string
  teamId: string
  method: SignInMethod
  userIdentifier?: string | null
  /** The enrollment window; 0 for a token that must never start an enrollment (a refreshed one). */
  windowSeconds: number
  /** Lifetime of the token itself (OAuth 2 `expires_in`); unset: valid until revoked. */
  lifetimeSeconds?: number
  /** OAuth 2: the grant the token belongs to, and the token a refresh replaced. */
  oauth2GrantId?: string
  refreshedFromId?: string
  now?: Date
}

/** A new token value and the row that stands for it (not yet stored). */
export function newAccessToken(params: MintParams): { token: string; row: NewAccessToken } {
  const token = newSecret()
  const now = params.now ?? new Date()
  return {
    token,
    row: {
      tokenHash: hashSecret(token),
      userId: params.userId,
      teamId: params.teamId,
      method: params.method,
      userIdentifier: params.userIdentifier ?? null,
      createdAt: now,
      enrollUntil: new Date(now.getTime() + params.windowSeconds * 1000),
      expiresAt: params.lifetimeSeconds === undefined ? null : new Date(now.getTime() + params.lifetimeSeconds * 1000),
      oauth2GrantId: params.oauth2GrantId ?? null,
      refreshedFromId: params.refreshedFromId ?? null,
    },
  }
}

export async function mintAccessToken(db: Db, params: MintParams): Promise<MintedAccessToken> {
  const { token, row } = newAccessToken(params)
  return { token, record: await createAccessToken(db, row) }
}

/** The token record for a presented bearer value, with its user and team; null when unknown. */
export async function findAccessToken(db: Db, token: string): Promise<TokenWithUser | null> {
  if (!token || token.length > MAX_SECRET_LENGTH) return null
  return findAccessTokenByHash(db, hashSecret(token))
}

export type TokenRefusal = 'unknown' | 'revoked' | 'user_inactive' | 'enrollment_window_over' | 'other_team' | 'expired' | 'refreshed'

/**
 * Whether a token may start an enrollment for `teamId` now. Returns the reason when not, so the caller
 * can log it (the device only ever sees a fresh 401 challenge).
 */
export function checkTokenForEnrollment(token: TokenWithUser | null, teamId: string, now = new Date()): TokenRefusal | null {
  if (!token) return 'unknown'
  if (token.revokedAt) return 'revoked'
  if (!token.user.active) return 'user_inactive'
  if (token.teamId !== teamId) return 'other_team'
  if (token.expiresAt && token.expiresAt.getTime() <= now.getTime()) return 'expired'
  // One sign-in, one profile: a token a refresh minted continues an enrollment, it never starts one (its
  // window is also closed at birth; this says why).
  if (token.refreshedFromId) return 'refreshed'
  if (token.enrollUntil.getTime() <= now.getTime()) return 'enrollment_window_over'
  return null
}

/** Parses `Authorization: Bearer <token>`; undefined when absent or not a bearer credential. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined
  const m = /^Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(header)
  return m?.[1]
}
