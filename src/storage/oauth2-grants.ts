/**
 * OAuth 2 grants (one per sign-in), the rotating refresh tokens of each, and the access tokens they
 * produced. Every write that must happen together is one transaction here: a sign-in's user, grant and
 * first tokens; a refresh's next tokens under the grant's row lock; a revocation of the whole family.
 */
import type { Client, Db } from './database.js'
import type { OAuth2Grant, OAuth2RefreshToken, User } from './types.js'
import { upsertUser, type NewAccessToken, type UserData } from './users.js'

/** The IdP's refresh token, sealed (SecretBox); all null when there is none. */
export interface SealedIdpToken {
  idpRefreshTokenCiphertext: Uint8Array<ArrayBuffer> | null
  idpRefreshTokenNonce: Uint8Array<ArrayBuffer> | null
  idpRefreshTokenTag: Uint8Array<ArrayBuffer> | null
}

export interface NewRefreshToken {
  tokenHash: Uint8Array<ArrayBuffer>
  createdAt: Date
  expiresAt: Date
}

/** The access token of a grant: its user and grant are filled in here. */
export type GrantAccessToken = Omit<NewAccessToken, 'userId' | 'oauth2GrantId'>

/**
 * A fresh sign-in: the user (created or refreshed from the IdP's claims), the grant, its first access and
 * refresh token, in one transaction. Nothing but the user is written when the user is deactivated.
 */
export async function createSignInGrant(
  db: Client,
  p: { user: UserData; grantId: string; createdAt: Date; idpToken: SealedIdpToken; accessToken: GrantAccessToken; refreshToken: NewRefreshToken },
): Promise<{ user: User; accessTokenId?: string }> {
  return db.$transaction(async (tx) => {
    const user = await upsertUser(tx, p.user)
    if (!user.active) return { user }
    await tx.oAuth2Grant.create({ data: { id: p.grantId, userId: user.id, teamId: p.accessToken.teamId, createdAt: p.createdAt, ...p.idpToken } })
    const access = await tx.accessToken.create({ data: { ...p.accessToken, userId: user.id, oauth2GrantId: p.grantId } })
    await tx.oAuth2RefreshToken.create({ data: { ...p.refreshToken, grantId: p.grantId, accessTokenId: access.id } })
    return { user, accessTokenId: access.id }
  })
}

/**
 * The next access and refresh token of a grant, with the IdP's new refresh token and claims when it sent
 * them. The grant row is locked and must still be live: a concurrent revocation (reuse detected on
 * another request) either sees these tokens and revokes them too, or has already revoked the grant and
 * nothing is written. Undefined when the grant is revoked.
 */
export async function continueGrant(
  db: Client,
  p: { grantId: string; userId: string; idpToken?: SealedIdpToken; user?: UserData; accessToken: GrantAccessToken; refreshToken: NewRefreshToken },
): Promise<{ accessTokenId: string } | undefined> {
  return db.$transaction(async (tx) => {
    const live = await tx.$queryRaw<{ id: string }[]>`SELECT id FROM oauth2_grants WHERE id = ${p.grantId}::uuid AND revoked_at IS NULL FOR UPDATE`
    if (live.length !== 1) return undefined
    if (p.idpToken) await tx.oAuth2Grant.update({ where: { id: p.grantId }, data: p.idpToken })
    if (p.user) await upsertUser(tx, p.user)
    const access = await tx.accessToken.create({ data: { ...p.accessToken, userId: p.userId, oauth2GrantId: p.grantId } })
    await tx.oAuth2RefreshToken.create({ data: { ...p.refreshToken, grantId: p.grantId, accessTokenId: access.id } })
    return { accessTokenId: access.id }
  })
}

export function findRefreshTokenByHash(db: Db, tokenHash: Uint8Array<ArrayBuffer>): Promise<(OAuth2RefreshToken & { grant: OAuth2Grant }) | null> {
  return db.oAuth2RefreshToken.findUnique({ where: { tokenHash }, include: { grant: true } })
}

/** Marks a refresh token used; false when another request already did (then it was presented twice). */
export async function consumeRefreshToken(db: Db, id: string, now: Date): Promise<boolean> {
  const { count } = await db.oAuth2RefreshToken.updateMany({ where: { id, usedAt: null }, data: { usedAt: now } })
  return count === 1
}

/** Undoes `consumeRefreshToken` when the refresh could not complete for a reason that is not the token's fault. */
export async function releaseRefreshToken(db: Db, id: string, consumedAt: Date): Promise<void> {
  await db.oAuth2RefreshToken.updateMany({ where: { id, usedAt: consumedAt }, data: { usedAt: null } })
}

/** Revokes a grant and every access token it produced; its refresh tokens die with it. */
export async function revokeGrant(db: Client, grantId: string, reason: string, now: Date): Promise<void> {
  await db.$transaction(async (tx) => {
    // Updating the grant row first waits for a continueGrant holding it, so its tokens are revoked below.
    await tx.oAuth2Grant.updateMany({ where: { id: grantId, revokedAt: null }, data: { revokedAt: now, revokedReason: reason } })
    await tx.accessToken.updateMany({ where: { oauth2GrantId: grantId, revokedAt: null }, data: { revokedAt: now } })
  })
}

/** When the sign-in behind a grant happened; null when the grant is gone. */
export async function grantCreatedAt(db: Db, grantId: string): Promise<Date | null> {
  const grant = await db.oAuth2Grant.findUnique({ where: { id: grantId }, select: { createdAt: true } })
  return grant?.createdAt ?? null
}
