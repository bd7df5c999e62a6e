/**
 * The enroll endpoint's use case (PROTOCOL.md section 2): check who signed the request, then either
 * challenge the device to sign the user in (401) or issue the user's enrollment profile.
 */
import { createHash, type X509Certificate } from 'node:crypto'
import type { Config } from '../config/index.js'
import { AppError, BadRequestError, ForbiddenError, NotFoundError, ServiceUnavailableError } from '../errors.js'
import type { OidcClient } from '../identity/oidc.js'
import { commonName, verifyDeviceSignature } from '../pki/apple-device.js'
import { CmsError } from '../pki/cms.js'
import { wwwAuthenticate, type SignInChallenge } from '../protocol/challenge.js'
import { modelFamilyOfProduct, USER_ENROLLMENT_FAMILIES, type ModelFamily } from '../protocol/discovery.js'
import { parseEnrollRequest, type DeviceAttributes } from '../protocol/enroll-request.js'
import type { ServerUrls } from '../protocol/urls.js'
import type { Client } from '../storage/database.js'
import { teamOfUrl } from '../storage/teams.js'
import type { Team } from '../storage/types.js'
import type { EssoService } from './esso.js'
import type { ServerKeys } from './keys.js'
import { assignedManagedAppleId, issueProfile, reissueProfile, type IssuedProfile } from './profiles.js'
import { bearerToken, checkTokenForEnrollment, findAccessToken, type TokenRefusal } from './tokens.js'

export interface EnrollmentDeps {
  db: Client
  config: Config
  keys: ServerKeys
  urls: ServerUrls
  /** The OIDC provider for teams that sign in with `oauth2`; null when none is configured. */
  oidc: OidcClient | null
  /** Enrollment SSO headers on the enroll 401. */
  esso?: EssoService
  /** Whether new profiles offer com.apple.mdm.token (ProfileDeps.maidTokens). */
  maidTokens?: () => Promise<boolean>
}

/**
 * The families whose enroll signature chain is established: the recorded iPhone capture, and iPads, which
 * public MDM servers verify against the same "Apple iPhone Device CA" (fleetdm/fleet's ADE captures).
 * For Macs and Apple Vision Pro the evidence is indirect (the same CA in Mac DEP requests, nothing for
 * visionOS): see the README, "Who signed the enroll request".
 */
export const APPLE_CHAIN_FAMILIES: readonly ModelFamily[] = ['iPhone', 'iPad']
const UNPINNED_FAMILIES: readonly string[] = USER_ENROLLMENT_FAMILIES.filter((f) => !APPLE_CHAIN_FAMILIES.includes(f))

/** What the device's signature and plist said; the route logs it. */
export interface DeviceCheck extends DeviceAttributes {
  /** The family PRODUCT names, when it names one. */
  family?: string
  /** The pinned Apple key the signer chains to; undefined when it does not. */
  anchor?: string
  untrustedReason?: string
  /** The chain as sent, when it is not trusted: subject, issuer and key fingerprint of each, for pinning. */
  chainSeen?: string[]
}

/** `CN (issuer CN, SPKI sha256:...)`: enough to recognise and pin a CA from a log line. */
function describeCertificate(cert: X509Certificate): string {
  const spki = createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('hex')
  return `${commonName(cert)} (issuer ${commonName(cert, 'issuer')}, SPKI sha256:${spki})`
}

export type EnrollOutcome =
  | { kind: 'challenge'; headers: Record<string, string>; reason: TokenRefusal | 'no_token' | 'profile_already_issued'; device: DeviceCheck }
  | { kind: 'profile'; profile: IssuedProfile; device: DeviceCheck }

export interface EnrollRequest {
  /** The path's team token; undefined for the Default team's URL. */
  teamToken?: string
  body: Buffer
  authorization?: string
  now?: Date
}

export interface EnrollmentService {
  enroll(request: EnrollRequest): Promise<EnrollOutcome>
  /** The 401's headers for `team`; the check-in endpoint answers re-authentication with the same. */
  challenge(team: Team): Promise<Record<string, string>>
  /** A new profile built from an issued profile's record (see profiles.ts). */
  reissue(profileId: string, now?: Date): Promise<IssuedProfile>
}

/**
 * The headers that make the device sign the user in: the one place that decides them. The team's own
 * method wins over AUTH_METHOD. `apple-oauth2` needs the IdP's authorization endpoint from discovery;
 * while the IdP cannot be reached the answer is 503 (the device retries), never a challenge the device
 * could not follow.
 */
export async function enrollChallenge(deps: Pick<EnrollmentDeps, 'urls' | 'config' | 'oidc' | 'esso'>, team: Team, device?: DeviceAttributes): Promise<Record<string, string>> {
  const { urls, config, oidc } = deps
  const method = team.authMethod ?? config.authMethod
  let challenge: SignInChallenge
  if (method === 'oauth2') {
    if (!oidc) {
      throw new AppError(500, 'sign_in_not_configured', `team ${team.id} signs in with oauth2 but no OIDC provider is configured (OIDC_ISSUER)`, { expose: false })
    }
    let authorizationUrl: string
    try {
      authorizationUrl = await oidc.authorizationEndpoint()
    } catch (err) {
      throw new ServiceUnavailableError('The identity provider cannot be reached, try again shortly', { cause: err })
    }
    const { clientId, redirectUrl, scope } = oidc.settings
    challenge = { method: 'apple-oauth2', authorizationUrl, tokenUrl: urls.oauth2Token(team.enrollmentToken), redirectUrl, clientId, scope }
  } else {
    challenge = { method: 'apple-as-web', url: urls.ssoPage(team.enrollmentToken) }
  }
  // Enrollment SSO (PROTOCOL.md section 5): `x-apple-mdm-esso` (or `x-apple-mdm-esso-developer`) on the
  // enroll 401 of a team that has it, for a device that has it. A re-authentication on check-in (no device
  // attributes) never carries it: the device is enrolled already.
  const esso = device && deps.esso ? deps.esso.challengeHeaders(team, device) : {}
  return { 'www-authenticate': wwwAuthenticate(challenge), ...esso }
}

export function createEnrollmentService(deps: EnrollmentDeps): EnrollmentService {
  const { db, config } = deps

  async function teamFor(teamToken: string | undefined): Promise<Team> {
    const team = await teamOfUrl(db, teamToken)
    if (!team) throw new NotFoundError('Unknown enrollment URL')
    return team
  }

  /**
   * Who signed the enroll request, and whether that is enough for this server (ENROLL_DEVICE_SIGNATURE).
   * The signature over the content is verified in every mode. Apple's chain is required in strict mode
   * for the families where it is known (APPLE_CHAIN_FAMILIES); for a Mac or an Apple Vision Pro, whose
   * chain no capture has shown yet, an unknown chain is accepted with a warning naming it, so that the
   * first real device tells an administrator what to pin rather than being locked out on a guess.
   */
  function checkDevice(body: Buffer): DeviceCheck {
    let signature
    try {
      signature = verifyDeviceSignature(body)
    } catch (err) {
      if (err instanceof CmsError) {
        throw new BadRequestError(`The enroll request is not a signed device request: ${err.message}`, {
          code: 'invalid_enroll_request',
          cause: err,
          publicMessage: 'The enroll request is not a signed device request',
        })
      }
      throw err
    }
    const attributes = parseEnrollRequest(signature.content)
    const family = attributes.product ? modelFamilyOfProduct(attributes.product) : undefined
    const chainSeen = signature.chain.map(describeCertificate)
    if (signature.untrustedReason && config.enrollment.deviceSignature === 'strict' && !(family && UNPINNED_FAMILIES.includes(family))) {
      throw new ForbiddenError(`The enroll request is not signed by an Apple device: ${signature.untrustedReason}`, {
        code: 'untrusted_device',
        publicMessage: 'The enroll request is not signed by an Apple device',
      })
    }
    // Discovery refuses disabled families, but a device can be pointed at the enroll URL directly.
    if (family && !(config.enrollment.modelFamilies as string[]).includes(family)) {
      throw new ForbiddenError(`Enrolling ${family} devices is not allowed on this server`, { code: 'model_family_not_allowed' })
    }
    return { ...attributes, family, anchor: signature.anchor, untrustedReason: signature.untrustedReason, chainSeen: signature.untrustedReason ? chainSeen : undefined }
  }

  return {
    challenge: (team) => enrollChallenge(deps, team),

    async enroll(request) {
      const now = request.now ?? new Date()
      const team = await teamFor(request.teamToken)
      const device = checkDevice(request.body)
      const challenge = async (reason: Extract<EnrollOutcome, { kind: 'challenge' }>['reason']): Promise<EnrollOutcome> => ({
        kind: 'challenge',
        headers: await enrollChallenge(deps, team, device),
        reason,
        device,
      })

      const presented = bearerToken(request.authorization)
      if (!presented) return challenge('no_token')
      const token = await findAccessToken(db, presented)
      const refusal = checkTokenForEnrollment(token, team.id, now)
      if (refusal || !token) return challenge(refusal ?? 'unknown')
      if (token.profileIssuedAt) return challenge('profile_already_issued')

      const managedAppleId = assignedManagedAppleId(config.enrollment.managedAppleIdSource, token.userIdentifier, token.user.email)
      if (!managedAppleId) {
        throw new ForbiddenError(
          `No Managed Apple Account for this user: MANAGED_APPLE_ID_SOURCE=${config.enrollment.managedAppleIdSource} needs ${config.enrollment.managedAppleIdSource === 'user-identifier' ? 'the account typed on the device' : 'an email address from the identity provider'}`,
          { code: 'no_managed_apple_id' },
        )
      }

      // One profile per token, decided atomically with the record (storage/profiles.ts).
      const profile = await issueProfile(deps, db, { token, assignedManagedAppleId: managedAppleId, device, enrollmentType: team.enrollmentType === 'device' ? 'device' : 'user', now })
      return profile ? { kind: 'profile', profile, device } : challenge('profile_already_issued')
    },

    reissue: (profileId, now) => reissueProfile(deps, db, profileId, now),
  }
}
