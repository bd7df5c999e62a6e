import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../../src/config/index.js'

const base = () => ({ DATA_DIR: mkdtempSync(path.join(tmpdir(), 'byod-mdm-config-')) })

function variableOf(env: Record<string, string>): string {
  try {
    loadConfig({ ...base(), ...env })
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return (err as ConfigError).variable
  }
  throw new Error('expected a ConfigError')
}

describe('enrollment configuration', () => {
  it('defaults: strict signatures, every user-enrollment family, every domain, auto Managed Apple Account, no topic', () => {
    const config = loadConfig(base())
    expect(config.enrollment).toEqual({ deviceSignature: 'strict', domains: undefined, modelFamilies: ['iPhone', 'iPad', 'Mac', 'RealityDevice'], managedAppleIdSource: 'auto', rateLimitPerMinute: 120, deviceTeams: [] })
    expect(config.apnsTopic).toBeUndefined()
  })

  it('reads ENROLL_DOMAINS as domains with optional team names, lower-cased', () => {
    const config = loadConfig({ ...base(), ENROLL_DOMAINS: ' Example.com , example.org = Contractors Ltd ,', ENROLL_MODEL_FAMILIES: 'Mac, iPad', APNS_TOPIC: 'com.apple.mgmt.External.abc' })
    expect(config.enrollment.domains).toEqual([{ domain: 'example.com', team: undefined }, { domain: 'example.org', team: 'Contractors Ltd' }])
    expect(config.enrollment.modelFamilies).toEqual(['Mac', 'iPad'])
    expect(config.apnsTopic).toBe('com.apple.mgmt.External.abc')
  })

  it('names the variable when a value is wrong', () => {
    expect(variableOf({ APNS_TOPIC: 'com.example.push' })).toBe('APNS_TOPIC')
    expect(variableOf({ ENROLL_DEVICE_SIGNATURE: 'off' })).toBe('ENROLL_DEVICE_SIGNATURE')
    expect(variableOf({ MANAGED_APPLE_ID_SOURCE: 'upn' })).toBe('MANAGED_APPLE_ID_SOURCE')
    for (const bad of ['not a domain', 'example.com, example.com', 'example.com=', 'localhost', ',']) expect(variableOf({ ENROLL_DOMAINS: bad }), bad).toBe('ENROLL_DOMAINS')
    // tvOS and watchOS have no user enrollment.
    for (const bad of ['Watch', 'AppleTV', 'iphone', ',']) expect(variableOf({ ENROLL_MODEL_FAMILIES: bad }), bad).toBe('ENROLL_MODEL_FAMILIES')
  })
})
