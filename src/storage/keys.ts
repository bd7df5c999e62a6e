/**
 * The server's own key material (SCEP CA, profile signer, ...): certificates in PEM and private keys
 * sealed by the caller (SecretBox), so every process sharing the database shares the keys.
 */
import type { Db } from './database.js'
import type { KeyMaterial } from './types.js'

export interface SealedKey {
  name: string
  certificatePem: string
  keyCiphertext: Uint8Array<ArrayBuffer>
  keyNonce: Uint8Array<ArrayBuffer>
  keyTag: Uint8Array<ArrayBuffer>
}

export function findKeyMaterial(db: Db, name: string): Promise<KeyMaterial | null> {
  return db.keyMaterial.findUnique({ where: { name } })
}

/** Stores the key unless one of this name exists (two processes generating at once: the first wins). True when stored. */
export async function insertKeyMaterial(db: Db, key: SealedKey): Promise<boolean> {
  const { count } = await db.keyMaterial.createMany({ data: [key], skipDuplicates: true })
  return count === 1
}
