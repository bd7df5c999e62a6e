/**
 * The SCEP CA's records: one-time challenges (created with each enrollment profile, only their SHA-256
 * stored) and the device identity certificates issued for them or renewed from them.
 */
import type { Db } from './database.js'
import type { AccessToken, DeviceCertificate, ScepChallenge, User } from './types.js'

export interface NewScepChallenge {
  challengeHash: Uint8Array<ArrayBuffer>
  accessTokenId: string
  userId: string
  teamId: string
  enrollmentProfileId: string | null
  expiresAt: Date
}

export function createScepChallenge(db: Db, data: NewScepChallenge): Promise<ScepChallenge> {
  return db.scepChallenge.create({ data })
}

/** The challenge with this hash, with its token and user (to explain a refusal); null when unknown. */
export function findScepChallenge(db: Db, challengeHash: Uint8Array<ArrayBuffer>): Promise<(ScepChallenge & { accessToken: AccessToken & { user: User } }) | null> {
  return db.scepChallenge.findUnique({ where: { challengeHash }, include: { accessToken: { include: { user: true } } } })
}

/** The certificate with this DER fingerprint (lowercase hex SHA-256), revoked or expired ones included. */
export function findDeviceCertificate(db: Db, fingerprint: string): Promise<DeviceCertificate | null> {
  if (!/^[0-9a-f]{64}$/.test(fingerprint)) return Promise.resolve(null)
  return db.deviceCertificate.findUnique({ where: { fingerprintSha256: fingerprint } })
}

export function findDeviceCertificateById(db: Db, id: string): Promise<DeviceCertificate | null> {
  return db.deviceCertificate.findUnique({ where: { id } })
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
           taken.user_id, taken.team_id, taken.access_token_id, taken.enrollment_profile_id, taken.id, ${new Uint8Array(cert.der)}
    FROM taken
    JOIN access_tokens t ON t.id = taken.access_token_id
    JOIN users u ON u.id = t.user_id
    WHERE t.revoked_at IS NULL AND u.active
    RETURNING id`
  return rows.length === 1
}

/** Stores a certificate issued for a RenewalReq: it belongs to whoever the renewed certificate belongs to. */
export async function storeRenewal(db: Db, previous: DeviceCertificate, cert: NewDeviceCertificate): Promise<void> {
  await db.deviceCertificate.create({
    data: {
      id: cert.id,
      serial: cert.serial,
      fingerprintSha256: cert.fingerprintSha256,
      subject: cert.subject,
      notBefore: cert.notBefore,
      notAfter: cert.notAfter,
      certificateDer: new Uint8Array(cert.der),
      userId: previous.userId,
      teamId: previous.teamId,
      accessTokenId: previous.accessTokenId,
      enrollmentProfileId: previous.enrollmentProfileId,
      renewedFromId: previous.id,
    },
  })
}
