/**
 * A team's own Enrollment SSO settings as the admin API takes them and the teams table keeps them: JSON
 * with snake_case keys, the payloads as JSON with plist data written {"$data": "<Base64>"}.
 * `{"enabled": false}` turns Enrollment SSO off for the team whatever the server's ESSO_* settings say.
 */
import { BadRequestError } from '../errors.js'
import { commandToJson, plistFromJson } from '../protocol/commands.js'
import { EXTENSIBLE_SSO, type EssoSettings } from '../protocol/esso.js'
import { isDict, type PlistDict } from '../protocol/plist.js'

export interface EssoSettingsJson {
  enabled?: boolean
  itunes_store_id?: number
  associated_domains?: string[]
  associated_domains_direct_downloads?: boolean
  /** Each the content of one com.apple.extensiblesso payload (PayloadType may be left out). */
  extensible_sso?: unknown[]
  certificate_payloads?: unknown[]
  delivery?: EssoSettings['delivery']
  developer_app_ids?: string[]
  app_license_assignment?: EssoSettings['appLicenseAssignment']
}

function payloads(list: unknown[] | undefined, what: string, type?: string): PlistDict[] {
  return (list ?? []).map((p, i) => {
    const value = plistFromJson(p, `${what}[${i}]`)
    if (!isDict(value)) throw new BadRequestError(`${what}[${i}] must be an object`, { code: 'invalid_esso_settings' })
    return type && value.PayloadType === undefined ? { PayloadType: type, ...value } : value
  })
}

/** The settings a stored or posted JSON form stands for; null when it turns Enrollment SSO off. */
export function essoSettingsFromJson(json: unknown): EssoSettings | null {
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new BadRequestError('Enrollment SSO settings must be an object', { code: 'invalid_esso_settings' })
  const j = json as EssoSettingsJson
  if (j.enabled === false) return null
  return {
    itunesStoreId: j.itunes_store_id,
    associatedDomains: j.associated_domains,
    directDownloads: j.associated_domains_direct_downloads,
    ssoPayloads: payloads(j.extensible_sso, 'extensible_sso', EXTENSIBLE_SSO),
    certificatePayloads: payloads(j.certificate_payloads, 'certificate_payloads'),
    delivery: j.delivery ?? 'both',
    developerAppIds: j.developer_app_ids,
    appLicenseAssignment: j.app_license_assignment,
  }
}

/** The JSON form of settings (for showing the server's ESSO_* settings beside a team's own). */
export function essoSettingsToJson(settings: EssoSettings | null): EssoSettingsJson {
  if (!settings) return { enabled: false }
  return JSON.parse(
    JSON.stringify({
      enabled: true,
      itunes_store_id: settings.itunesStoreId,
      associated_domains: settings.associatedDomains,
      associated_domains_direct_downloads: settings.directDownloads,
      extensible_sso: settings.ssoPayloads.map(commandToJson),
      certificate_payloads: settings.certificatePayloads.map(commandToJson),
      delivery: settings.delivery,
      developer_app_ids: settings.developerAppIds,
      app_license_assignment: settings.appLicenseAssignment,
    }),
  ) as EssoSettingsJson
}
