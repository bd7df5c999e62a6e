/**
 * Loads the configuration exactly as the server does (loadConfig), reporting every ConfigError it can
 * find, not just the first. When the bad variable belongs to one feature (push, Enrollment SSO, sign-in,
 * the key files, the enrollment domains), the doctor loads the configuration again without that feature's
 * variables, so the other checks still run; the feature's own check is then skipped, pointing at the
 * error. Anything else (SERVER_URL, the database, ...) leaves nothing to check.
 */
import { ConfigError, loadConfig, type Config, type Environment } from '../../config/index.js'

/** Check ids a feature's variables feed, and how to load the configuration without them. */
interface Feature {
  checks: string[]
  variables: RegExp
  /** Set in their place so that the rest loads (no IdP at a public SERVER_URL would be an error itself). */
  instead?: Environment
}

const FEATURES: Feature[] = [
  { checks: ['apns'], variables: /^APNS_/ },
  { checks: ['esso'], variables: /^ESSO_/ },
  { checks: ['saml', 'oidc'], variables: /^(SAML_|OIDC_|SSO_|AUTH_METHOD$|ALLOW_DEV_SIGNIN$)/, instead: { ALLOW_DEV_SIGNIN: 'true' } },
  { checks: ['scep-ca'], variables: /^SCEP_CA_/ },
  { checks: ['profile-signer'], variables: /^PROFILE_SIGNING_/ },
  { checks: ['well-known'], variables: /^(ENROLL_|MANAGED_APPLE_ID_SOURCE$)/ },
]

export interface LoadedConfig {
  /** Undefined when no configuration could be loaded at all. */
  config?: Config
  /** Every problem found, in order. */
  errors: ConfigError[]
  /** Check id -> the variable whose error took that check's input away. */
  brokenChecks: Map<string, string>
}

export function loadForDoctor(env: Environment): LoadedConfig {
  const errors: ConfigError[] = []
  const brokenChecks = new Map<string, string>()
  const dropped = new Set<Feature>()
  let current: Environment = { ...env }
  for (;;) {
    try {
      // createDataDir: false: the doctor leaves DATA_DIR as it found it.
      return { config: loadConfig(current, { createDataDir: false }), errors, brokenChecks }
    } catch (err) {
      const error = err instanceof ConfigError ? err : new ConfigError('environment', (err as Error).message)
      const feature = FEATURES.find((f) => f.variables.test(error.variable))
      // An error from a feature already taken out is a consequence of taking it out, not news.
      if (feature && dropped.has(feature)) return { errors, brokenChecks }
      errors.push(error)
      if (!feature) return { errors, brokenChecks }
      dropped.add(feature)
      for (const check of feature.checks) brokenChecks.set(check, error.variable)
      current = Object.fromEntries(Object.entries(current).filter(([name]) => !feature.variables.test(name)))
      Object.assign(current, feature.instead)
    }
  }
}
