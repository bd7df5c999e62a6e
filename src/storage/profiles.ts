/**
 * Enrollment profile records: the values a profile was issued with, from which every profile (the first
 * and any re-issue) is built, each with its one-time SCEP challenge. A token fetches one profile: the
 * claim on the token, the record and the challenge are written in one transaction.
 */
import type { Prisma } from '../generated/prisma/client.js'
import type { Client, Db } from './database.js'
import type { NewScepChallenge } from './scep.js'
import type { EnrollmentProfile } from './types.js'

export type NewProfileRecord = Prisma.EnrollmentProfileUncheckedCreateInput & { id: string }
/** The challenge of a profile; the profile it belongs to is filled in here. */
export type ProfileChallenge = Omit<NewScepChallenge, 'enrollmentProfileId'>

/**
 * Claims `tokenId` for its one profile and stores the record and its challenge. The claim re-checks the
 * window and revocation, which closes the race with a revocation after the caller's checks. Undefined
 * when the token cannot be claimed (already used, revoked, or its window closed).
 */
export async function claimTokenForProfile(db: Client, tokenId: string, now: Date, record: NewProfileRecord, challenge: ProfileChallenge): Promise<EnrollmentProfile | undefined> {
  return db.$transaction(async (tx) => {
    const claimed = await tx.accessToken.updateMany({
      where: { id: tokenId, profileIssuedAt: null, revokedAt: null, enrollUntil: { gt: now } },
      data: { profileIssuedAt: now },
    })
    if (claimed.count !== 1) return undefined
    const stored = await tx.enrollmentProfile.create({ data: record })
    await tx.scepChallenge.create({ data: { ...challenge, enrollmentProfileId: stored.id } })
    return stored
  })
}

/**
 * A copy of record `profileId` with `fresh` values (new ids) and a new challenge: a re-issue keeps every
 * value a profile update must not change (PROTOCOL.md section 6).
 */
export async function copyProfileRecord(
  db: Client,
  profileId: string,
  fresh: Pick<EnrollmentProfile, 'id' | 'payloadUuid' | 'mdmPayloadUuid' | 'scepPayloadUuid'>,
  challenge: (record: EnrollmentProfile) => ProfileChallenge,
): Promise<EnrollmentProfile> {
  return db.$transaction(async (tx) => {
    const { id: _id, createdAt: _createdAt, payloadUuid: _p, mdmPayloadUuid: _m, scepPayloadUuid: _s, scepSubject, scepCaFingerprint, ...kept } =
      await tx.enrollmentProfile.findUniqueOrThrow({ where: { id: profileId } })
    const stored = await tx.enrollmentProfile.create({
      data: { ...kept, ...fresh, scepSubject: scepSubject as Prisma.InputJsonValue, scepCaFingerprint: new Uint8Array(scepCaFingerprint) },
    })
    await tx.scepChallenge.create({ data: { ...challenge(stored), enrollmentProfileId: stored.id } })
    return stored
  })
}

export function findProfile(db: Db, id: string): Promise<EnrollmentProfile | null> {
  return db.enrollmentProfile.findUnique({ where: { id } })
}
