/**
 * SAML state: pending AuthnRequests and accepted assertion IDs. Nothing lives in process memory, so a
 * sign-in started on one server process can finish on another (SECURITY.md row 15). The RelayState is
 * stored as a hash the caller computes.
 */
import type { Db } from './database.js'
import type { SamlAuthnRequest } from './types.js'

export interface NewAuthnRequest {
  requestId: string
  teamId: string
  userIdentifier: string | null
  relayStateHash: Uint8Array<ArrayBuffer>
  createdAt: Date
  expiresAt: Date
}

export async function saveAuthnRequest(db: Db, r: NewAuthnRequest): Promise<void> {
  await db.samlAuthnRequest.create({ data: r })
}

/** When the request was created, if it is still waiting for its response; null otherwise. */
export async function pendingAuthnRequestSince(db: Db, requestId: string, now: Date): Promise<Date | null> {
  const row = await db.samlAuthnRequest.findFirst({ where: { requestId, consumedAt: null, expiresAt: { gt: now } }, select: { createdAt: true } })
  return row?.createdAt ?? null
}

/** Marks the request used. True for exactly one caller, however many race for it. */
export async function consumeAuthnRequest(db: Db, requestId: string, now: Date): Promise<boolean> {
  const { count } = await db.samlAuthnRequest.updateMany({ where: { requestId, consumedAt: null, expiresAt: { gt: now } }, data: { consumedAt: now } })
  return count === 1
}

export function findAuthnRequest(db: Db, requestId: string): Promise<SamlAuthnRequest | null> {
  return db.samlAuthnRequest.findUnique({ where: { requestId } })
}

/** Records an accepted assertion; false when it was accepted before (a replay). */
export async function rememberAssertion(db: Db, issuer: string, assertionId: string, expiresAt: Date): Promise<boolean> {
  // ON CONFLICT DO NOTHING on the primary key: the second insert of the same assertion counts 0.
  const { count } = await db.samlAssertion.createMany({ data: [{ issuer, assertionId, expiresAt }], skipDuplicates: true })
  return count === 1
}

/** Removes requests that expired before `requestsBefore` and assertions past their expiry. */
export async function purgeSamlState(db: Db, requestsBefore: Date, now: Date): Promise<void> {
  await db.samlAuthnRequest.deleteMany({ where: { expiresAt: { lt: requestsBefore } } })
  await db.samlAssertion.deleteMany({ where: { expiresAt: { lt: now } } })
}
