/**
 * The row types of the data model, for the layers above storage: they may name a row's type, but only
 * storage/ imports the generated client itself.
 */
export type {
  AbmConnection,
  AccessToken,
  DeviceCertificate,
  EnrollmentProfile,
  KeyMaterial,
  MdmChannel,
  MdmCommand,
  MdmEnrollment,
  OAuth2Grant,
  OAuth2RefreshToken,
  SamlAuthnRequest,
  ScepChallenge,
  Team,
  TeamDeclaration,
  User,
} from '../generated/prisma/client.js'

import type { DeviceCertificate, MdmChannel, MdmEnrollment } from '../generated/prisma/client.js'

/**
 * The rows check-in decides on (storage/device-context.ts), without the columns no decision reads and
 * that cost the most to transfer and decode on every request: the certificate's DER (the request carries
 * the certificate), Authenticate's other device fields and the declarative-management status report.
 * A full row is one of these too.
 */
export type ContextCertificate = Omit<DeviceCertificate, 'certificateDer'>
export type ContextEnrollment = Omit<MdmEnrollment, 'deviceInfo'>
export type ContextChannel = Omit<MdmChannel, 'ddmStatus'>
