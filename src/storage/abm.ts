/**
 * The Apple Business Manager connection: one row (`default`) holding the server token sealed by the
 * caller (SecretBox), its expiry, the account details ABM answered and the service discovery URL this
 * server registered there.
 */
import type { Prisma } from '../generated/prisma/client.js'
import type { Client, Db } from './database.js'
import type { AbmConnection } from './types.js'

const ID = 'default'

export interface StoredAbmToken {
  tokenCiphertext: Uint8Array<ArrayBuffer>
  tokenNonce: Uint8Array<ArrayBuffer>
  tokenTag: Uint8Array<ArrayBuffer>
  tokenExpiresAt: Date
  serverUuid: string
  account: Record<string, unknown>
  accountCheckedAt: Date
}

export function findAbmConnection(db: Db): Promise<AbmConnection | null> {
  return db.abmConnection.findUnique({ where: { id: ID } })
}

/**
 * Stores a newly uploaded server token and its account. A token of the same ABM MDM server (a renewal)
 * keeps the registered discovery URL; a token of another MDM server forgets it (it was registered with
 * the other server's credentials).
 */
export async function saveAbmToken(db: Client, token: StoredAbmToken, now: Date): Promise<AbmConnection> {
  const data = { ...token, account: token.account as Prisma.InputJsonValue, uploadedAt: now }
  return db.$transaction(async (tx) => {
    const before = await tx.abmConnection.findUnique({ where: { id: ID }, select: { serverUuid: true } })
    const sameServer = before?.serverUuid === token.serverUuid
    return tx.abmConnection.upsert({
      where: { id: ID },
      create: { id: ID, ...data },
      update: { ...data, ...(sameServer ? {} : { discoveryUrl: null, discoveryRegisteredAt: null }) },
    })
  })
}

/** Records the discovery URL registered at ABM (null: removed). */
export async function setAbmDiscovery(db: Db, url: string | null, now: Date): Promise<void> {
  await db.abmConnection.updateMany({ where: { id: ID }, data: { discoveryUrl: url, discoveryRegisteredAt: url ? now : null } })
}
