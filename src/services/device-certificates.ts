/**
 * Device identity certificates the SCEP CA issued (table device_certificates). Check-in identifies the
 * enrollment behind a request by the certificate the device signs with: compute `certificateFingerprint`
 * over its DER and look it up here.
 */
import { createHash } from 'node:crypto'
import type { DeviceCertificate } from '../generated/prisma/client.js'
import type { Db } from './challenges.js'

/** The stored fingerprint format: lowercase hex SHA-256 of the certificate DER, 64 characters, no colons. */
export function certificateFingerprint(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('hex')
}

/** The certificate with this DER fingerprint, revoked or expired ones included; null when unknown. */
export async function findDeviceCertificate(db: Db, fingerprint: string): Promise<DeviceCertificate | null> {
  if (!/^[0-9a-f]{64}$/.test(fingerprint)) return null
  return db.deviceCertificate.findUnique({ where: { fingerprintSha256: fingerprint } })
}

export type CertificateRefusal = 'revoked' | 'expired' | 'not_yet_valid'

/** Why a stored certificate may not be used now, or null when it may. */
export function checkDeviceCertificate(cert: DeviceCertificate, now = new Date()): CertificateRefusal | null {
  if (cert.revokedAt) return 'revoked'
  if (cert.notAfter.getTime() <= now.getTime()) return 'expired'
  if (cert.notBefore.getTime() > now.getTime()) return 'not_yet_valid'
  return null
}
