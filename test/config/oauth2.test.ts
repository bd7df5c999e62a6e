import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../../src/config/index.js'

const base = () => ({ DATA_DIR: mkdtempSync(path.join(tmpdir(), 'byod-mdm-config-')) })
const oidc = { OIDC_ISSUER: 'https://login.example.com/realms/staff', OIDC_CLIENT_ID: 'byod-mdm', OIDC_CLIENT_SECRET: 's3cret' }

function refusal(env: Record<string, string>): ConfigError {
  try {
    loadConfig({ ...base(), ...env })
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return err as ConfigError
  }
  throw new Error('expected a ConfigError')
}

describe('OAuth 2 / OIDC configuration', () => {
  it('defaults: saml, no OIDC provider, 1 h access tokens, 90 d refresh tokens, 30 requests a minute', () => {
    const config = loadConfig(base())
    expect(config.authMethod).toBe('saml')
    expect(config.oidc).toBeNull()
    expect(config.oauth2).toEqual({ accessTokenTtlSeconds: 3600, refreshTokenTtlSeconds: 90 * 86400, rateLimitPerMinute: 30 })
  })

  it('reads a complete provider with the Apple redirect URL and the standard scope by default', () => {
    const config = loadConfig({ ...base(), ...oidc, AUTH_METHOD: 'oauth2', OAUTH2_ACCESS_TOKEN_TTL: '15m', OAUTH2_REFRESH_TOKEN_TTL: '30d' })
    expect(config.authMethod).toBe('oauth2')
    expect(config.oidc).toEqual({
      issuer: 'https://login.example.com/realms/staff',
      clientId: 'byod-mdm',
      clientSecret: 's3cret',
      scope: 'openid email profile',
      redirectUrl: 'apple-remotemanagement-user-login:/oauth2/redirection',
      tokenAuthMethod: 'client_secret_basic',
      claims: { email: 'email', name: 'name', groups: 'groups' },
      timeoutSeconds: 10,
      allowInsecureHttp: false,
    })
    expect(config.oauth2.accessTokenTtlSeconds).toBe(900)
    expect(config.oauth2.refreshTokenTtlSeconds).toBe(30 * 86400)
  })

  it('with AUTH_METHOD=oauth2 names the first missing OIDC variable', () => {
    expect(refusal({ AUTH_METHOD: 'oauth2' }).variable).toBe('OIDC_ISSUER')
    expect(refusal({ AUTH_METHOD: 'oauth2', OIDC_ISSUER: oidc.OIDC_ISSUER }).variable).toBe('OIDC_CLIENT_ID')
    expect(refusal({ AUTH_METHOD: 'oauth2', OIDC_ISSUER: oidc.OIDC_ISSUER, OIDC_CLIENT_ID: 'x' }).variable).toBe('OIDC_CLIENT_SECRET')
    // Half a provider is an error with AUTH_METHOD=saml too.
    expect(refusal({ OIDC_CLIENT_ID: 'x' }).variable).toBe('OIDC_ISSUER')
  })

  it('refuses http issuers, and OIDC_ALLOW_INSECURE_HTTP for anything but loopback', () => {
    expect(refusal({ ...oidc, OIDC_ISSUER: 'http://login.example.com' }).variable).toBe('OIDC_ISSUER')
    expect(refusal({ ...oidc, OIDC_ISSUER: 'http://login.example.com', OIDC_ALLOW_INSECURE_HTTP: 'true' }).variable).toBe('OIDC_ALLOW_INSECURE_HTTP')
    expect(refusal({ ...oidc, OIDC_ISSUER: 'http://10.0.0.5:8080', OIDC_ALLOW_INSECURE_HTTP: 'true' }).variable).toBe('OIDC_ALLOW_INSECURE_HTTP')
    for (const issuer of ['http://127.0.0.1:4000', 'http://localhost:4000', 'http://[::1]:4000']) {
      expect(loadConfig({ ...base(), ...oidc, OIDC_ISSUER: issuer, OIDC_ALLOW_INSECURE_HTTP: 'true' }).oidc?.allowInsecureHttp).toBe(true)
    }
    expect(refusal({ ...oidc, OIDC_ISSUER: 'https://login.example.com/?tenant=1' }).variable).toBe('OIDC_ISSUER')
  })

  it('refuses values that could not go into the WWW-Authenticate header or would not match as sent', () => {
    expect(refusal({ ...oidc, OIDC_SCOPE: 'email profile' }).variable).toBe('OIDC_SCOPE')
    expect(refusal({ ...oidc, OIDC_SCOPE: 'openid "email"' }).variable).toBe('OIDC_SCOPE')
    expect(refusal({ ...oidc, OIDC_SCOPE: 'openid  email' }).variable).toBe('OIDC_SCOPE')
    expect(refusal({ ...oidc, OIDC_CLIENT_ID: 'id\nwith-newline' }).variable).toBe('OIDC_CLIENT_ID')
    expect(refusal({ ...oidc, OIDC_REDIRECT_URL: 'not a url' }).variable).toBe('OIDC_REDIRECT_URL')
    expect(refusal({ ...oidc, OIDC_REDIRECT_URL: 'HTTPS://Example.com/cb' }).variable).toBe('OIDC_REDIRECT_URL')
    // Apple's web authentication session only returns to its own scheme.
    expect(refusal({ ...oidc, OIDC_REDIRECT_URL: 'https://mdm.example.com/oauth2/redirection' }).message).toMatch(/apple-remotemanagement-user-login: scheme/)
    expect(refusal({ ...oidc, OIDC_REDIRECT_URL: 'com.example.app:/oauth2/redirection' }).variable).toBe('OIDC_REDIRECT_URL')
    expect(refusal({ ...oidc, OIDC_REDIRECT_URL: 'apple-remotemanagement-user-login:/oauth2/redirection?x=1' }).variable).toBe('OIDC_REDIRECT_URL')
    expect(refusal({ ...oidc, OIDC_TOKEN_AUTH_METHOD: 'private_key_jwt' }).variable).toBe('OIDC_TOKEN_AUTH_METHOD')
    expect(refusal({ ...oidc, OAUTH2_ACCESS_TOKEN_TTL: '10s' }).variable).toBe('OAUTH2_ACCESS_TOKEN_TTL')
    expect(refusal({ AUTH_METHOD: 'oidc' }).variable).toBe('AUTH_METHOD')
    expect(loadConfig({ ...base(), ...oidc, OIDC_SCOPE: 'openid email profile offline_access' }).oidc?.scope).toBe('openid email profile offline_access')
  })
})
