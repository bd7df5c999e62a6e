/**
 * High-entropy secrets handed to devices (access tokens, SCEP challenges, refresh tokens): random,
 * URL-safe, and stored only as SHA-256 hashes. A fast hash is right here: the secrets carry 256 random
 * bits, so there is nothing to brute-force, and lookups go through a unique index on the hash.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'

/** 256 random bits, base64url (43 characters). */
export function newSecret(): string {
  return randomBytes(32).toString('base64url')
}

export function hashSecret(secret: string): Uint8Array<ArrayBuffer> {
  // A copy over its own ArrayBuffer (a Buffer may share Node's pool), as the database layer wants it.
  return new Uint8Array(createHash('sha256').update(secret, 'utf8').digest())
}

/** Constant-time comparison of a presented secret with a stored hash. */
export function secretMatches(secret: string, storedHash: Uint8Array): boolean {
  const presented = hashSecret(secret)
  return presented.length === storedHash.length && timingSafeEqual(presented, storedHash)
}

/** Presented secrets longer than this are refused before hashing. */
export const MAX_SECRET_LENGTH = 512
