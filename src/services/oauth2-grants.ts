/**
 * Storage of OAuth 2 grants: one per sign-in, holding our rotating refresh tokens, the access tokens they
 * produced and the IdP's own refresh token (sealed). Refresh token rotation with reuse detection follows
 * RFC 6819 section 5.2.2.3 and OAuth 2.1 section 4.3.1: every refresh token is single use, and presenting
 * a used one means two parties hold it, so the whole grant is revoked.
 */
import { randomUUID } from 'node:crypto'
import type { OAuth2Grant, Prisma, PrismaClient } from '../generated/prisma/client.js'
import { SecretBox } from '../pki/secretbox.js'
import { bytes } from '../storage/bytes.js'
import { hashSecret, MAX_SECRET_LENGTH, newSecret } from './secrets.js'
import { mintAccessToken } from './tokens.js'

type Tx = Prisma.TransactionClient

/** RFC 6749 section 5.1, as Apple's client reads it (PROTOCOL.md section 4). */
export interface TokenResponse {
  token_type: 'Bearer'
  access_token: string
  expires_in: number
  refresh_token: string
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

export function sealIdpRefreshToken(box: SecretBox, grantId: string, token: string | undefined) {
  if (!token) return { idpRefreshTokenCiphertext: null, idpRefreshTokenNonce: null, idpRefreshTokenTag: null }
  const sealed = box.seal(sealName(grantId), Buffer.from(token, 'utf8'))
  return { idpRefreshTokenCiphertext: bytes(sealed.ciphertext), idpRefreshTokenNonce: bytes(sealed.nonce), idpRefreshTokenTag: bytes(sealed.tag) }
}

export function openIdpRefreshToken(box: SecretBox, grant: OAuth2Grant): string | undefined {
  const { idpRefreshTokenCiphertext: ciphertext, idpRefreshTokenNonce: nonce, idpRefreshTokenTag: tag } = grant
  if (!ciphertext || !nonce || !tag) return undefined
  return box.open(sealName(grant.id), { ciphertext: Buffer.from(ciphertext), nonce: Buffer.from(nonce), tag: Buffer.from(tag) }).toString('utf8')
}

/** A new grant for a fresh sign-in; its first access token may fetch the enrollment profile. */
export async function createGrant(
  tx: Tx,
  box: SecretBox,
  params: { userId: string; teamId: string; idpRefreshToken?: string; enrollmentWindowSeconds: number; lifetimes: GrantLifetimes; now: Date },
): Promise<IssuedTokens> {
  const id = randomUUID()
  await tx.oAuth2Grant.create({
    data: { id, userId: params.userId, teamId: params.teamId, createdAt: params.now, ...sealIdpRefreshToken(box, id, params.idpRefreshToken) },
  })
  return issueTokens(tx, { grantId: id, userId: params.userId, teamId: params.teamId, windowSeconds: params.enrollmentWindowSeconds, lifetimes: params.lifetimes, now: params.now })
}

/**
 * The next access and refresh token of a grant. The grant row is locked and must still be live: a
 * concurrent revocation (reuse detected on another request) either sees these tokens and revokes them
 * too, or has already revoked the grant and nothing is minted.
 */
export async function continueGrant(
  tx: Tx,
  params: { grantId: string; userId: string; teamId: string; refreshedFromId: string; lifetimes: GrantLifetimes; now: Date },
): Promise<IssuedTokens | undefined> {
  const live = await tx.$queryRaw<{ id: string }[]>`SELECT id FROM oauth2_grants WHERE id = ${params.grantId}::uuid AND revoked_at IS NULL FOR UPDATE`
  if (live.length !== 1) return undefined
  return issueTokens(tx, { ...params, windowSeconds: 0 })
}

async function issueTokens(
  tx: Tx,
  params: { grantId: string; userId: string; teamId: string; windowSeconds: number; refreshedFromId?: string; lifetimes: GrantLifetimes; now: Date },
): Promise<IssuedTokens> {
  const { lifetimes, now } = params
  const access = await mintAccessToken(tx, {
    userId: params.userId,
    teamId: params.teamId,
    method: 'oauth2',
    windowSeconds: params.windowSeconds,
    lifetimeSeconds: lifetimes.accessTokenTtlSeconds,
    oauth2GrantId: params.grantId,
    refreshedFromId: params.refreshedFromId,
    now,
  })
  const refreshToken = newSecret()
  await tx.oAuth2RefreshToken.create({
    data: {
      tokenHash: hashSecret(refreshToken),
      grantId: params.grantId,
      accessTokenId: access.record.id,
      createdAt: now,
      expiresAt: new Date(now.getTime() + lifetimes.refreshTokenTtlSeconds * 1000),
    },
  })
  return {
    response: { token_type: 'Bearer', access_token: access.token, expires_in: lifetimes.accessTokenTtlSeconds, refresh_token: refreshToken },
    grantId: params.grantId,
    accessTokenId: access.record.id,
  }
}

export async function findRefreshToken(prisma: PrismaClient, token: string) {
  if (!token || token.length > MAX_SECRET_LENGTH) return null
  return prisma.oAuth2RefreshToken.findUnique({ where: { tokenHash: hashSecret(token) }, include: { grant: true } })
}

/** Marks a refresh token used; false when another request already did (then it was presented twice). */
export async function consumeRefreshToken(prisma: PrismaClient, id: string, now: Date): Promise<boolean> {
  const { count } = await prisma.oAuth2RefreshToken.updateMany({ where: { id, usedAt: null }, data: { usedAt: now } })
  return count === 1
}

/** Undoes `consumeRefreshToken` when the refresh could not complete for a reason that is not the token's fault. */
export async function releaseRefreshToken(prisma: PrismaClient, id: string, consumedAt: Date): Promise<void> {
  await prisma.oAuth2RefreshToken.updateMany({ where: { id, usedAt: consumedAt }, data: { usedAt: null } })
}

/** Revokes a grant and every access token it produced; its refresh tokens die with it. */
export async function revokeGrant(prisma: PrismaClient, grantId: string, reason: string, now: Date): Promise<void> {
  await prisma.$transaction(async (tx) => {
    // Updating the grant row first waits for a continueGrant holding it, so its tokens are revoked below.
    await tx.oAuth2Grant.updateMany({ where: { id: grantId, revokedAt: null }, data: { revokedAt: now, revokedReason: reason } })
    await tx.accessToken.updateMany({ where: { oauth2GrantId: grantId, revokedAt: null }, data: { revokedAt: now } })
  })
}
