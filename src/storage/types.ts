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

/** The rows check-in decides on, narrowed to what the decisions read: storage/device-context.ts. */
export type { ContextCertificate, ContextChannel, ContextEnrollment, ContextToken } from './device-context.js'
