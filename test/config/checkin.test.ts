/** REAUTH_AFTER, LAST_SEEN_INTERVAL and MDM_CLIENT_CERT_HEADER: parsed once at start, a bad value names its variable. */
import { describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/config/index.js'
import { testConfig } from '../helpers/app.js'

function configError(env: Record<string, string>): ConfigError {
  try {
    testConfig(env)
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return err as ConfigError
  }
  throw new Error('expected a ConfigError')
}

describe('check-in configuration', () => {
  it('is off by default', () => {
    expect(testConfig().checkin).toEqual({ reauthAfterSeconds: undefined, clientCertHeader: undefined, lastSeenIntervalSeconds: 60 })
    expect(testConfig({ REAUTH_AFTER: '0' }).checkin.reauthAfterSeconds).toBeUndefined()
  })

  it('reads REAUTH_AFTER as a duration of at least an hour', () => {
    expect(testConfig({ REAUTH_AFTER: '90d' }).checkin.reauthAfterSeconds).toBe(90 * 86400)
    expect(testConfig({ REAUTH_AFTER: '1h' }).checkin.reauthAfterSeconds).toBe(3600)
    for (const value of ['30m', '59', 'soon', '1w', '401d']) expect(configError({ REAUTH_AFTER: value }).variable, value).toBe('REAUTH_AFTER')
  })

  it('reads LAST_SEEN_INTERVAL as a duration of at most an hour, 0 allowed', () => {
    expect(testConfig({ LAST_SEEN_INTERVAL: '0' }).checkin.lastSeenIntervalSeconds).toBe(0)
    expect(testConfig({ LAST_SEEN_INTERVAL: '5m' }).checkin.lastSeenIntervalSeconds).toBe(300)
    for (const value of ['2h', 'often', '-1']) expect(configError({ LAST_SEEN_INTERVAL: value }).variable, value).toBe('LAST_SEEN_INTERVAL')
  })

  it('reads MDM_CLIENT_CERT_HEADER as a lowercase header name, never one the device sends itself', () => {
    expect(testConfig({ MDM_CLIENT_CERT_HEADER: 'X-SSL-Client-Cert' }).checkin.clientCertHeader).toBe('x-ssl-client-cert')
    for (const value of ['Mdm-Signature', 'Authorization', 'content-type', 'x client cert', 'x:cert', '-x']) {
      expect(configError({ MDM_CLIENT_CERT_HEADER: value }).variable, value).toBe('MDM_CLIENT_CERT_HEADER')
    }
  })
})
