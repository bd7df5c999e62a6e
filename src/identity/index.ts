/**
 * The identity layer of web sign-in: the SAML service provider (saml/) and the development sign-in
 * (dev.ts) prove who the user is and hand back a `VerifiedSignIn`; services/sso.ts then applies the
 * policy and mints the token. OAuth 2 sits beside them in oidc.ts: the device signs in at the IdP itself
 * and services/oauth2.ts redeems the code, so it has its own flow up to the same IdentityClaims.
 */
import { AppError } from '../errors.js'

/** How the user signed in. */
export type SignInMethod = 'saml' | 'oauth2' | 'dev'

/** Who the identity provider (or the development sign-in) says the user is. */
export interface IdentityClaims {
  /** SAML IdP entity id, OIDC issuer, or `dev`. */
  issuer: string
  subject: string
  email?: string | null
  displayName?: string | null
  groups?: string[]
}

/** What a sign-in was started for: the team (from the enrollment URL) and what the user typed on the device. */
export interface SignInContext {
  teamId: string
  userIdentifier: string | null
}

export interface VerifiedSignIn {
  method: SignInMethod
  claims: IdentityClaims
  context: SignInContext
}

/** Why a sign-in was refused. Each has a sentence for the user; the log gets the detailed reason. */
export type SignInFailure =
  | 'invalid_response'
  | 'unsolicited_response'
  | 'request_unknown'
  | 'replayed_assertion'
  | 'idp_refused'
  | 'missing_identity'
  | 'identifier_mismatch'
  | 'group_not_allowed'
  | 'user_inactive'
  | 'unknown_team'
  | 'not_configured'

const USER_MESSAGES: Record<SignInFailure, { status: number; message: string }> = {
  invalid_response: { status: 400, message: 'The answer from your identity provider could not be accepted.' },
  unsolicited_response: { status: 400, message: 'This sign-in was not started from your device.' },
  request_unknown: { status: 400, message: 'This sign-in has expired or was already used.' },
  replayed_assertion: { status: 400, message: 'This sign-in was already used.' },
  idp_refused: { status: 400, message: 'Your identity provider did not complete the sign-in.' },
  missing_identity: { status: 400, message: 'Your identity provider did not say who you are (no user name or email address was sent).' },
  identifier_mismatch: { status: 403, message: 'You signed in with a different account from the one entered on the device. Sign in with the same account.' },
  group_not_allowed: { status: 403, message: 'Your account is not allowed to enroll devices here. Ask your IT department for access.' },
  user_inactive: { status: 403, message: 'Your account has been disabled for device enrollment. Ask your IT department.' },
  unknown_team: { status: 404, message: 'This enrollment link is not valid.' },
  not_configured: { status: 404, message: 'This sign-in method is not available on this server.' },
}

/**
 * A refused sign-in. `message` is the real reason, for the log only (it may name values from the
 * response); `userMessage` is what the page shows.
 */
export class SignInError extends AppError {
  readonly userMessage: string
  constructor(
    readonly failure: SignInFailure,
    reason: string,
    options: { cause?: unknown } = {},
  ) {
    const { status, message } = USER_MESSAGES[failure]
    super(status, failure, reason, { ...options, expose: false })
    this.userMessage = message
  }
}
