/**
 * The server's own identities, read as the server would use them (services/keys.ts readServerKey): the
 * SCEP CA that issues every device's identity certificate, and the identity that signs enrollment
 * profiles. Given in the configuration, or generated at the first start and stored encrypted under
 * SERVER_SECRET. Nothing is generated here.
 */
import type { Config } from '../../config/index.js'
import type { Identity } from '../../pki/x509.js'
import { fromPem, readServerKey, type KeyName } from '../../services/keys.js'
import type { Database } from '../../storage/database.js'
import { commonName, fail, ok, skipped, validity, warn, worse, type Outcome } from './result.js'

const VARIABLES: Record<KeyName, [string, string]> = {
  scepCa: ['SCEP_CA_CERT', 'SCEP_CA_KEY'],
  profileSigner: ['PROFILE_SIGNING_CERT', 'PROFILE_SIGNING_KEY'],
}

/** How the database stands for this check: open and migrated, not created yet, or not readable. */
export type KeySource = { db: Database } | { absent: true } | { unreadable: true }

/** `secretGiven`: SERVER_SECRET is set in the environment (else embedded mode keeps it in DATA_DIR). */
export async function checkServerKey(name: KeyName, config: Config, source: KeySource, secretGiven: boolean, now: Date): Promise<{ outcome: Outcome; identity?: Identity }> {
  const [certVar, keyVar] = VARIABLES[name]
  let identity: Identity
  let from: string
  if (config.keys[name]) {
    identity = fromPem(config.keys[name])
    from = `from ${certVar}`
  } else if ('db' in source) {
    let stored
    try {
      stored = await readServerKey(source.db.prisma, config, name)
    } catch (err) {
      return {
        outcome: fail(
          `${(err as Error).message}; the server cannot start with it`,
          secretGiven ? 'set SERVER_SECRET to the value used when the keys were created (every process needs the same)' : `restore ${config.dataDir}/server-secret from the backup that goes with this database`,
        ),
      }
    }
    if (!stored) return { outcome: warn('not generated yet: the first npm start generates it and stores it encrypted in the database', `nothing to do, or set ${certVar} and ${keyVar} to use your own`) }
    identity = stored.identity
    from = 'generated, stored encrypted in the database'
  } else if ('absent' in source) {
    return { outcome: warn('not generated yet (no database yet): the first npm start generates it', `nothing to do, or set ${certVar} and ${keyVar} to use your own`) }
  } else {
    return { outcome: skipped('the database could not be read (see database)') }
  }

  const cert = identity.certificate
  const what = `"${commonName(cert.subject)}" (${from})`
  if (!cert.checkPrivateKey(identity.privateKey)) return { outcome: fail(`${what}: the private key does not belong to the certificate`, `set ${certVar} and ${keyVar} to a matching pair`) }
  if (name === 'scepCa' && !cert.ca) return { outcome: fail(`${what} is not a CA certificate (basicConstraints CA:TRUE), so devices cannot chain their identity certificates to it`, `set ${certVar} to a CA certificate`) }

  const window = validity(cert, now)
  const renew =
    name === 'scepCa'
      ? `replace it before then (${certVar}/${keyVar}): device identity certificates are never valid past their CA, so devices must renew theirs under the new one`
      : `replace it before then (${certVar}/${keyVar}): devices refuse profiles signed by an expired certificate`
  if (window.status !== 'ok') return { outcome: { status: worse('warn', window.status), message: `${what} ${window.text}`, fix: renew }, identity }

  // A self-signed signer works; devices only show the profile as "Not Verified".
  // (X509Certificate.checkIssued would not do: OpenSSL also wants keyCertSign on the issuer.)
  const selfSigned = cert.subject === cert.issuer && cert.verify(cert.publicKey)
  const note = name === 'profileSigner' && selfSigned ? `; self-signed, so devices show profiles as "Not Verified" (a certificate from a public CA in ${certVar} shows "Verified")` : ''
  return { outcome: ok(`${what} ${window.text}${note}`), identity }
}
