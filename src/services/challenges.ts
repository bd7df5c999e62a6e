/**
 * One-time SCEP challenges. The enroll endpoint creates one per issued profile (it travels in the
 * profile's com.apple.security.scep payload); the SCEP endpoint consumes it exactly once when issuing the
 * device's identity certificate. Only the SHA-256 hash is stored.
 */
import { hashSecret, newSecret } from '../pki/secrets.js'
import type { Db } from '../storage/database.js'
import { createScepChallenge as createChallengeRow } from '../storage/scep.js'

export interface NewScepChallenge {
  accessTokenId: string
  userId: string
  teamId: string
  enrollmentProfileId?: string | null
  expiresAt: Date
}

/** Creates a challenge and returns its value (to put in the profile; never stored or logged). */
export async function createScepChallenge(db: Db, params: NewScepChallenge): Promise<{ id: string; challenge: string }> {
  const challenge = newSecret()
  const row = await createChallengeRow(db, {
    challengeHash: hashSecret(challenge),
    accessTokenId: params.accessTokenId,
    userId: params.userId,
    teamId: params.teamId,
    enrollmentProfileId: params.enrollmentProfileId ?? null,
    expiresAt: params.expiresAt,
  })
  return { id: row.id, challenge }
}
