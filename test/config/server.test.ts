import { X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../../src/config/index.js'
import { createSelfSigned, generateRsaKeyPair } from '../../src/pki/x509.js'

const tmp = () => mkdtempSync(path.join(tmpdir(), 'byod-mdm-config-'))

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env)
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return err as ConfigError
  }
  throw new Error('expected a ConfigError')
}

async function selfSigned() {
  const keys = await generateRsaKeyPair(2048)
  const cert = await createSelfSigned({ subject: [['CN', 'test']], keys, notBefore: new Date(), notAfter: new Date(Date.now() + 86400_000), keyUsage: ['digitalSignature'] })
  return { certPem: cert.toString(), keyPem: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string }
}

describe('loadConfig', () => {
  it('gives a working embedded configuration with no variables at all', () => {
    const dir = tmp()
    const config = loadConfig({ DATA_DIR: dir })
    expect(config.port).toBe(8080)
    expect(config.host).toBe('0.0.0.0')
    expect(config.serverUrl).toBe('http://localhost:8080')
    expect(config.database).toEqual({ kind: 'pglite', dir: path.join(dir, 'pgdata') })
    // The secret is generated once into DATA_DIR, private, and reused.
    const file = path.join(dir, 'server-secret')
    expect(readFileSync(file, 'utf8').trim()).toBe(config.serverSecret)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    expect(loadConfig({ DATA_DIR: dir }).serverSecret).toBe(config.serverSecret)
  })

  it('requires SERVER_SECRET with DATABASE_URL and says why in one line', () => {
    const err = configError({ DATABASE_URL: 'postgres://db/mdm', DATA_DIR: tmp() })
    expect(err.variable).toBe('SERVER_SECRET')
    expect(err.message).toMatch(/^SERVER_SECRET: required when DATABASE_URL is set/)
    expect(err.message).not.toContain('\n')
  })

  it('runs one process per CPU core with Postgres and one with the embedded database unless WORKERS says otherwise', () => {
    const postgres = { DATABASE_URL: 'postgres://db/mdm', SERVER_SECRET: 'x'.repeat(32), DATA_DIR: tmp() }
    expect(loadConfig(postgres).workers).toBe(availableParallelism())
    expect(loadConfig({ ...postgres, WORKERS: 'auto' }).workers).toBe(availableParallelism())
    expect(loadConfig({ ...postgres, WORKERS: '3' }).workers).toBe(3)
    expect(loadConfig({ DATA_DIR: tmp() }).workers).toBe(1)
    expect(loadConfig({ DATA_DIR: tmp(), WORKERS: '1' }).workers).toBe(1)
    for (const value of ['0', 'two', '-1', '1000']) expect(configError({ ...postgres, WORKERS: value }).variable, value).toBe('WORKERS')
    expect(configError({ DATA_DIR: tmp(), WORKERS: '2' }).message).toMatch(/^WORKERS: is 2 but the embedded database/)
    // What the supervisor gives its workers.
    expect(loadConfig({ ...postgres, MALLOC_ARENA_MAX: '4' }).workerMallocArenaMax).toBe(4)
    for (const value of ['0', 'many', '65']) expect(configError({ ...postgres, MALLOC_ARENA_MAX: value }).variable, value).toBe('MALLOC_ARENA_MAX')
  })

  it('names the variable that is wrong', () => {
    expect(configError({ PORT: 'eighty', DATA_DIR: tmp() }).variable).toBe('PORT')
    expect(configError({ PORT: '70000', DATA_DIR: tmp() }).message).toContain('at most 65535')
    expect(configError({ SERVER_URL: 'mdm.example.com', DATA_DIR: tmp() }).variable).toBe('SERVER_URL')
    expect(configError({ SERVER_URL: 'https://mdm.example.com/?x=1', DATA_DIR: tmp() }).variable).toBe('SERVER_URL')
    expect(configError({ DATABASE_URL: 'mysql://x', SERVER_SECRET: 'x'.repeat(32) }).variable).toBe('DATABASE_URL')
    expect(configError({ SERVER_SECRET: 'short', DATA_DIR: tmp() }).variable).toBe('SERVER_SECRET')
    expect(configError({ LOG_LEVEL: 'loud', DATA_DIR: tmp() }).variable).toBe('LOG_LEVEL')
  })

  it('requires https for SERVER_URL unless it is a loopback address', () => {
    const err = configError({ SERVER_URL: 'http://mdm.example.com', DATA_DIR: tmp(), ALLOW_DEV_SIGNIN: 'true' })
    expect(err.variable).toBe('SERVER_URL')
    expect(err.message).toMatch(/must be an https:\/\/ URL/)
    expect(configError({ SERVER_URL: 'http://10.0.0.5:8080', DATA_DIR: tmp(), ALLOW_DEV_SIGNIN: 'true' }).variable).toBe('SERVER_URL')
    for (const url of ['http://localhost:8080', 'http://127.0.0.1:9000', 'http://[::1]:9000', 'https://mdm.example.com']) {
      expect(loadConfig({ SERVER_URL: url, DATA_DIR: tmp(), ALLOW_DEV_SIGNIN: 'true' }).serverUrl).toBe(url)
    }
  })

  it('treats empty values as unset and strips a trailing slash from SERVER_URL', () => {
    const config = loadConfig({ DATA_DIR: tmp(), PORT: '', SERVER_URL: 'https://mdm.example.com/', ALLOW_DEV_SIGNIN: 'true' })
    expect(config.port).toBe(8080)
    expect(config.serverUrl).toBe('https://mdm.example.com')
  })

  it('reads key material from inline PEM or a file and checks that key and certificate match', async () => {
    const a = await selfSigned()
    const b = await selfSigned()
    const dir = tmp()
    writeFileSync(path.join(dir, 'ca.pem'), a.certPem)
    writeFileSync(path.join(dir, 'ca.key'), a.keyPem)
    const config = loadConfig({ DATA_DIR: dir, SCEP_CA_CERT: path.join(dir, 'ca.pem'), SCEP_CA_KEY: a.keyPem.replace(/\n/g, '\\n') })
    expect(new X509Certificate(config.keys.scepCa!.certificatePem).fingerprint256).toBe(new X509Certificate(a.certPem).fingerprint256)

    expect(configError({ DATA_DIR: dir, SCEP_CA_CERT: a.certPem, SCEP_CA_KEY: b.keyPem }).message).toBe(
      'SCEP_CA_KEY: does not match the certificate in SCEP_CA_CERT',
    )
    expect(configError({ DATA_DIR: dir, SCEP_CA_CERT: a.certPem }).variable).toBe('SCEP_CA_KEY')
    expect(configError({ DATA_DIR: dir, PROFILE_SIGNING_CERT: '/nonexistent.pem', PROFILE_SIGNING_KEY: a.keyPem }).message).toMatch(
      /^PROFILE_SIGNING_CERT: cannot read PEM file \/nonexistent.pem: ENOENT/,
    )
  })
})
