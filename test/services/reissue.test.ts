/**
 * A device rejects a profile update whose ServerURL, Topic, AssignedManagedAppleID or EnrollmentMode
 * changed. A re-issue is built from the enrollment_profiles record, so it keeps them even after the
 * configuration changed (here: a second server process with different settings on the same database).
 */
import { createHash } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { PlistDict } from '../../src/protocol/plist.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { payloadOf, postEnroll, signIn, verifyProfile } from '../helpers/enroll.js'

const OLD_TOPIC = 'com.apple.mgmt.External.11111111-1111-4111-8111-111111111111'
const NEW_TOPIC = 'com.apple.mgmt.External.22222222-2222-4222-8222-222222222222'

let database: TestDatabase
let before: TestApp
let after: TestApp
beforeAll(async () => {
  database = await createTestDatabase()
  before = await buildTestApp({ database, env: { APNS_TOPIC: OLD_TOPIC } })
})
afterAll(async () => {
  await after?.close()
  if (!after) await before?.close()
  await database.drop()
})

describe('re-issuing a profile from its record', () => {
  it('keeps ServerURL, Topic, AssignedManagedAppleID, EnrollmentMode and identifiers after the configuration changed', async () => {
    const { token, tokenId } = await signIn(before.app, { email: 'alice@example.com', userIdentifier: 'ALICE@example.com' })
    const first = await postEnroll(before.app, { token })
    expect(first.statusCode).toBe(200)
    const original = verifyProfile(before.app, first.rawPayload)
    const record = await before.app.db.prisma.enrollmentProfile.findFirstOrThrow({ where: { accessTokenId: tokenId } })
    await before.close()

    after = await buildTestApp({
      database,
      env: { SERVER_URL: 'https://new-mdm.example.test', APNS_TOPIC: NEW_TOPIC, ORG_NAME: 'Renamed Corp', MANAGED_APPLE_ID_SOURCE: 'email' },
    })
    const reissued = await after.app.services.enrollment.reissue(record.id)
    const profile = verifyProfile(after.app, reissued.signed)

    const [oldMdm, newMdm] = [payloadOf(original, 'com.apple.mdm'), payloadOf(profile, 'com.apple.mdm')]
    for (const key of ['ServerURL', 'Topic', 'AssignedManagedAppleID', 'EnrollmentMode', 'ServerCapabilities', 'PayloadIdentifier', 'SignMessage', 'CheckOutWhenRemoved']) {
      expect(newMdm[key], key).toEqual(oldMdm[key])
    }
    expect(newMdm).toMatchObject({ ServerURL: 'https://mdm.example.test/mdm/apple/mdm', Topic: OLD_TOPIC, AssignedManagedAppleID: 'ALICE@example.com', EnrollmentMode: 'BYOD' })
    expect(profile.PayloadIdentifier).toBe(original.PayloadIdentifier)
    expect(profile.PayloadDisplayName).toBe('Example Corp')

    // A new profile all the same: fresh UUIDs, its own record and a fresh one-time challenge.
    expect(profile.PayloadUUID).not.toBe(original.PayloadUUID)
    expect(newMdm.IdentityCertificateUUID).toBe(payloadOf(profile, 'com.apple.security.scep').PayloadUUID)
    expect(newMdm.IdentityCertificateUUID).not.toBe(oldMdm.IdentityCertificateUUID)
    expect(reissued.record.id).not.toBe(record.id)
    expect(reissued.record.accessTokenId).toBe(tokenId)
    const challenge = (payloadOf(profile, 'com.apple.security.scep').PayloadContent as PlistDict).Challenge as string
    expect(challenge).not.toBe((payloadOf(original, 'com.apple.security.scep').PayloadContent as PlistDict).Challenge)
    const stored = await after.app.db.prisma.scepChallenge.findUniqueOrThrow({ where: { challengeHash: new Uint8Array(createHash('sha256').update(challenge).digest()) } })
    expect(stored.enrollmentProfileId).toBe(reissued.record.id)
    expect(stored.expiresAt.getTime()).toBeGreaterThan(Date.now() + 3500_000)
  })

  it('fails for an unknown profile and writes nothing', async () => {
    const count = await after.app.db.prisma.scepChallenge.count()
    await expect(after.app.services.enrollment.reissue('00000000-0000-4000-8000-000000000000')).rejects.toThrow()
    expect(await after.app.db.prisma.scepChallenge.count()).toBe(count)
  })
})
