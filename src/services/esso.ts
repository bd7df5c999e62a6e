/**
 * Enrollment SSO (PROTOCOL.md section 5): which teams offer it and to which devices, the documents the
 * enroll 401's `X-Apple-MDM-ESSO` (or `X-Apple-MDM-ESSO-Developer`) header points to, and the profile the
 * legacy configuration names. A team uses its own settings (admin API) or the server's (ESSO_*).
 *
 * A team's devices get one of the two documents: the test-mode one when developer App IDs are set
 * (`X-Apple-MDM-ESSO-Developer`), else the standard one. Declarative management then serves that same
 * document's declarations (services/declarations.ts), identical in Identifier, ServerToken and content:
 * the builder derives everything from the settings, so every process builds the same.
 */
import type { Config } from '../config/index.js'
import { NotFoundError } from '../errors.js'
import { parseSignedData, signCms } from '../pki/cms.js'
import { canonicalJson, sha256Hex, type JsonValue } from '../protocol/canonical.js'
import { modelFamilyOfProduct } from '../protocol/discovery.js'
import type { DeviceAttributes } from '../protocol/enroll-request.js'
import { buildEssoArtifacts, validateEssoDocument, type Declaration, type EssoArtifacts, type EssoMode, type EssoSettings } from '../protocol/esso.js'
import type { ServerUrls } from '../protocol/urls.js'
import type { Client } from '../storage/database.js'
import { teamOfUrl } from '../storage/teams.js'
import type { Team } from '../storage/types.js'
import { essoSettingsFromJson } from './esso-settings.js'
import type { ServerKeys } from './keys.js'

export interface EssoService {
  /** The team's settings: its own, else the server's; null when it has no Enrollment SSO. */
  settingsFor(team: Team): EssoSettings | null
  /** The document the team's devices get. */
  modeFor(settings: EssoSettings): EssoMode
  /** The headers the enroll 401 adds for this team and device; none where ESSO does not apply. */
  challengeHeaders(team: Team, device: DeviceAttributes): Record<string, string>
  /** The document for `mode` of the team with this enrollment token. */
  document(teamToken: string, mode: EssoMode): Promise<object>
  /** The signed profile a legacy configuration names. */
  legacyProfile(teamToken: string, key: string): Promise<Buffer>
  /** The declarations the team's document carries (none with delivery `profile` or without ESSO). */
  declarations(team: Team): Declaration[]
  /** The rules of section 5 the settings' documents break (empty: both documents would be served as built). */
  problems(settings: EssoSettings): string[]
}

/** Artifacts kept per team, mode and settings: building signs a profile (~2 ms), documents are fetched once per enrollment. */
const CACHE_LIMIT = 256

export function createEssoService(deps: { db: Client; config: Config; keys: ServerKeys; urls: ServerUrls }): EssoService {
  const { db, config, keys, urls } = deps
  const identifierPrefix = essoIdentifierPrefix(config.serverUrl)
  const cache = new Map<string, EssoArtifacts>()

  const sign = (plist: Buffer) => signCms({ content: plist, certificate: keys.profileSigner.certificate, privateKey: keys.profileSigner.privateKey, extraCertificates: keys.profileSigner.chain })

  function build(teamToken: string, settings: EssoSettings, mode: EssoMode): EssoArtifacts {
    const key = `${teamToken}\n${mode}\n${sha256Hex(canonicalJson(settingsJson(settings)))}`
    let artifacts = cache.get(key)
    if (!artifacts) {
      artifacts = buildEssoArtifacts(settings, { identifierPrefix, orgName: config.orgName, legacyProfileUrl: (k) => urls.essoProfile(teamToken, k), sign }, mode)
      if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value!)
      cache.set(key, artifacts)
    }
    return artifacts
  }

  function settingsFor(team: Team): EssoSettings | null {
    if (team.essoSettings === null || team.essoSettings === undefined) return config.esso
    return essoSettingsFromJson(team.essoSettings)
  }

  const modeFor = essoModeOf

  async function teamWith(teamToken: string): Promise<{ team: Team; settings: EssoSettings }> {
    const team = await teamOfUrl(db, teamToken)
    const settings = team && settingsFor(team)
    if (!team || !settings) throw new NotFoundError('no Enrollment SSO for this URL', { publicMessage: 'No Enrollment SSO document here' })
    return { team, settings }
  }

  return {
    settingsFor,
    modeFor,

    challengeHeaders(team, device): Record<string, string> {
      const settings = settingsFor(team)
      if (!settings || !essoPlatform(device)) return {}
      return modeFor(settings) === 'developer'
        ? { 'x-apple-mdm-esso-developer': urls.essoDeveloper(team.enrollmentToken) }
        : { 'x-apple-mdm-esso': urls.esso(team.enrollmentToken) }
    },

    async document(teamToken, mode) {
      const { team, settings } = await teamWith(teamToken)
      // A team serves the document of its mode; asking the other URL gets nothing.
      if (modeFor(settings) !== mode) throw new NotFoundError(`team ${team.id} serves the ${modeFor(settings)} Enrollment SSO document, not the ${mode} one`, { publicMessage: 'No Enrollment SSO document here' })
      return build(team.enrollmentToken, settings, mode).document
    },

    async legacyProfile(teamToken, key) {
      const { team, settings } = await teamWith(teamToken)
      const profile = build(team.enrollmentToken, settings, modeFor(settings)).legacyProfiles.find((p) => p.key === key)
      if (!profile) throw new NotFoundError('no such Enrollment SSO profile', { publicMessage: 'No such profile' })
      return profile.signed
    },

    declarations(team) {
      const settings = settingsFor(team)
      if (!settings) return []
      return build(team.enrollmentToken, settings, modeFor(settings)).declarations
    },

    problems: (settings) => essoProblems(settings, { config, urls, signer: keys.profileSigner }),
  }
}

/** The document a team's devices get: the test-mode one when developer App IDs are set. */
export function essoModeOf(settings: EssoSettings): EssoMode {
  return settings.developerAppIds?.length ? 'developer' : 'standard'
}

/** The prefix of every identifier: the same reverse-DNS name the enrollment profile's identifier uses. */
function essoIdentifierPrefix(serverUrl: string): string {
  return new URL(serverUrl).hostname.split('.').reverse().join('.').replace(/[^A-Za-z0-9.-]/g, '-')
}

/**
 * The rules of section 5 the settings' documents break (empty: both documents would be served as built).
 * Builds the document as the service would, signed by `signer` (the rules do not depend on which key
 * signs), and validates it. `npm run doctor` calls it directly, before the server has started.
 */
export function essoProblems(settings: EssoSettings, deps: { config: Config; urls: ServerUrls; signer: Pick<ServerKeys['profileSigner'], 'certificate' | 'privateKey' | 'chain'> }): string[] {
  const { config, urls, signer } = deps
  const mode = essoModeOf(settings)
  const sign = (plist: Buffer) => signCms({ content: plist, certificate: signer.certificate, privateKey: signer.privateKey, extraCertificates: signer.chain })
  let artifacts: EssoArtifacts
  try {
    // A throwaway token: the documents' rules do not depend on it.
    artifacts = buildEssoArtifacts(settings, { identifierPrefix: essoIdentifierPrefix(config.serverUrl), orgName: config.orgName, legacyProfileUrl: (k) => urls.essoProfile('validation', k), sign }, mode)
  } catch (err) {
    return (err as { problems?: string[] }).problems ?? [(err as Error).message]
  }
  return validateEssoDocument(artifacts.document, mode, {
    unwrapProfile: (signed) => {
      const content = parseSignedData(signed).content
      if (!content) throw new Error('the profile is not signed with its content attached')
      return content
    },
    legacyProfile: (url) => artifacts.legacyProfiles.find((p) => url.endsWith(`/${p.key}`))?.signed,
  })
}

/**
 * Enrollment SSO exists on iOS and iPadOS, and on visionOS from 2.0 (Apple's article; the schema's esso.yaml
 * lists iOS 16 and later), not on macOS. The enroll request's PRODUCT says the family and VERSION the
 * build, whose leading number is the major release train (visionOS 2 builds are 22x, 1.x are 21x).
 */
export function essoPlatform(device: DeviceAttributes): boolean {
  const family = device.product ? modelFamilyOfProduct(device.product) : undefined
  if (family === 'iPhone' || family === 'iPad') return true
  if (family === 'RealityDevice') return Number.parseInt(device.version ?? '', 10) >= 22
  return false
}

/** The settings as plain JSON, for a cache key (plist data and dates as tagged JSON). */
function settingsJson(settings: EssoSettings): JsonValue {
  return JSON.parse(JSON.stringify(settings, (_k, v) => (v instanceof Uint8Array ? { $data: Buffer.from(v).toString('base64') } : v))) as JsonValue
}
