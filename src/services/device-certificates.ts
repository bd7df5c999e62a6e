/**
 * Device identity certificates the SCEP CA issued (storage/scep.ts). Check-in identifies the enrollment
 * behind a request by the certificate the device signs with: its `certificateFingerprint`.
 */
import { certificateFingerprint } from '../pki/certificate.js'
import type { ContextCertificate } from '../storage/types.js'

export { certificateFingerprint }
export { findDeviceCertificate, type NewDeviceCertificate } from '../storage/scep.js'

export type CertificateRefusal = 'revoked' | 'expired' | 'not_yet_valid'

/** Why a stored certificate may not be used now, or null when it may. */
export function storedCertificateRefusal(cert: ContextCertificate, now = new Date()): CertificateRefusal | null {
  if (cert.revokedAt) return 'revoked'
  if (cert.notAfter.getTime() <= now.getTime()) return 'expired'
  if (cert.notBefore.getTime() > now.getTime()) return 'not_yet_valid'
  return null
}
