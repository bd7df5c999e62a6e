/**
 * The enrollment lists of the environment: ENROLL_DOMAINS, ENROLL_DEVICE_TEAMS, ENROLL_MODEL_FAMILIES.
 * Each refuses a bad entry with a ConfigError naming its variable.
 */
import { isDomainName, USER_ENROLLMENT_FAMILIES, type ModelFamily } from '../protocol/discovery.js'
import { ConfigError } from './values.js'

/** `example.com, example.org=Contractors`: domains, each optionally `=team name`. */
export function parseEnrollDomains(value: string): { domain: string; team?: string }[] {
  const out: { domain: string; team?: string }[] = []
  for (const entry of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = entry.indexOf('=')
    const domain = (eq < 0 ? entry : entry.slice(0, eq)).trim().toLowerCase()
    const team = eq < 0 ? undefined : entry.slice(eq + 1).trim()
    if (!isDomainName(domain)) throw new ConfigError('ENROLL_DOMAINS', `"${domain}" is not a domain name`)
    if (team !== undefined && (team.length === 0 || team.length > 200)) throw new ConfigError('ENROLL_DOMAINS', `the team name for ${domain} must be 1 to 200 characters`)
    if (out.some((d) => d.domain === domain)) throw new ConfigError('ENROLL_DOMAINS', `${domain} is listed twice`)
    out.push({ domain, team })
  }
  if (out.length === 0) throw new ConfigError('ENROLL_DOMAINS', 'lists no domain (leave it unset to serve every domain)')
  return out
}

/** `Corporate, Kiosks`: team names, each 1 to 200 characters. */
export function parseTeamNames(value: string | undefined): string[] {
  if (value === undefined) return []
  const names = [...new Set(value.split(',').map((s) => s.trim()).filter(Boolean))]
  for (const n of names) if (n.length > 200 || /[\u0000-\u001f]/.test(n)) throw new ConfigError('ENROLL_DEVICE_TEAMS', `"${n.slice(0, 40)}" is not a team name (1 to 200 characters)`)
  if (names.length === 0) throw new ConfigError('ENROLL_DEVICE_TEAMS', 'lists no team (leave it unset for user enrollment everywhere)')
  return names
}

export function parseModelFamilies(value: string): ModelFamily[] {
  const families = value.split(',').map((s) => s.trim()).filter(Boolean)
  for (const f of families) {
    if (!(USER_ENROLLMENT_FAMILIES as readonly string[]).includes(f)) {
      throw new ConfigError('ENROLL_MODEL_FAMILIES', `"${f}" is not one of ${USER_ENROLLMENT_FAMILIES.join(', ')} (the families with user enrollment)`)
    }
  }
  if (families.length === 0) throw new ConfigError('ENROLL_MODEL_FAMILIES', 'lists no model family')
  return [...new Set(families)] as ModelFamily[]
}
