/**
 * Device identity certificates the SCEP CA issued (table device_certificates). Check-in identifies the
 * enrollment behind a request by the certificate the device signs with: compute `certificateFingerprint`
 * over its DER and look it up here.
 */
import type { DeviceCertificate } from '../generated/prisma/client.js'
import { certificateFingerprint } from '../pki/certificate.js'
import { bytes } from '../storage/bytes.js'
import type { Db } from '../storage/database.js'

export { certificateFingerprint }

/** The certificate with this DER fingerprint, revoked or expired ones included; null when unknown. */
export async function findDeviceCertificate(db: Db, fingerprint: string): Promise<DeviceCertificate | null> {
  if (!/^[0-9a-f]{64}$/.test(fingerprint)) return null
  return db.deviceCertificate.findUnique({ where: { fingerprintSha256: fingerprint } })
}

export type CertificateRefusal = 'revoked' | 'expired' | 'not_yet_valid'

/** Why a stored certificate may not be used now, or null when it may. */
export function storedCertificateRefusal(cert: DeviceCertificate, now = new Date()): CertificateRefusal | null {
  if (cert.revokedAt) return 'revoked'
  if (cert.notAfter.getTime() <= now.getTime()) return 'expired'
  if (cert.notBefore.getTime() > now.getTime()) return 'not_yet_valid'
  return null
}

/** A certificate ready to be stored: everything but who it belongs to. */
export interface NewDeviceCertificate {
  id: string
  serial: string
  fingerprintSha256: string
  subject: string
  notBefore: Date
  notAfter: Date
  der: Uint8Array
}

/**
 * Consumes the one-time challenge with this hash and stores `cert` for the enrollment it was issued to,
 * in one statement: either both happen or neither (a refused or failed statement leaves the challenge
 * for the device's retry), and of concurrent statements for one challenge only the first can take it
 * (`used_at IS NULL` is re-checked under the row lock). A challenge whose access token is revoked or
 * whose user is deactivated is consumed without a certificate. True when the certificate was stored.
 *
 * One round trip instead of a Prisma interactive transaction (BEGIN, updateMany, the challenge with
 * its token and user, create, COMMIT): under load that was the largest share of the endpoint's CPU.
 */
export async function storeWithChallenge(db: Db, challengeHash: Uint8Array<ArrayBuffer>, now: Date, cert: NewDeviceCertificate): Promise<boolean> {
  const rows = await db.$queryRaw<{ id: string }[]>`
    WITH taken AS (
      UPDATE scep_challenges SET used_at = ${now}
      WHERE challenge_hash = ${challengeHash} AND used_at IS NULL AND expires_at > ${now}
      RETURNING id, user_id, team_id, access_token_id, enrollment_profile_id
    )
    INSERT INTO device_certificates
      (id, serial, fingerprint_sha256, subject, not_before, not_after, user_id, team_id, access_token_id,
       enrollment_profile_id, scep_challenge_id, certificate_der)
    SELECT ${cert.id}::uuid, ${cert.serial}, ${cert.fingerprintSha256}, ${cert.subject}, ${cert.notBefore}, ${cert.notAfter},
           taken.user_id, taken.team_id, taken.access_token_id, taken.enrollment_profile_id, taken.id, ${bytes(cert.der)}
    FROM taken
    JOIN access_tokens t ON t.id = taken.access_token_id
    JOIN users u ON u.id = t.user_id
    WHERE t.revoked_at IS NULL AND u.active
    RETURNING id`
  return rows.length === 1
}
