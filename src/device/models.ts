/**
 * What each simulated platform says about itself: the PRODUCT and VERSION of its enroll request (when
 * the body is the simulator's own, `--self-signed`), Authenticate's keys (PROTOCOL.md section 8: no UDID
 * or serial number under user enrollment; macOS adds DeviceName, Model and ModelName) and its answers to
 * DeviceInformation. The iPhone is the recorded iOS 18.2.1 device of test/fixtures.
 */
import { randomBytes } from 'node:crypto'
import type { ModelFamily } from '../protocol/discovery.js'
import type { Platform } from '../protocol/platform.js'

export interface DeviceModel {
  family: ModelFamily
  platform: Platform
  productName: string
  osVersion: string
  buildVersion: string
  /** macOS only in Authenticate. */
  model?: string
  modelName: string
  deviceName: string
  /** A macOS user channel opens (EnrollmentUserID) after the device channel. */
  userChannel: boolean
}

export const MODELS: Record<ModelFamily, DeviceModel> = {
  iPhone: { family: 'iPhone', platform: 'iOS', productName: 'iPhone12,1', osVersion: '18.2.1', buildVersion: '22C161', modelName: 'iPhone', deviceName: 'iPhone', userChannel: false },
  iPad: { family: 'iPad', platform: 'iOS', productName: 'iPad13,18', osVersion: '18.2', buildVersion: '22C152', modelName: 'iPad', deviceName: 'iPad', userChannel: false },
  Mac: {
    family: 'Mac',
    platform: 'macOS',
    productName: 'MacBookPro18,3',
    osVersion: '15.1',
    buildVersion: '24B83',
    model: 'MacBookPro18,3',
    modelName: 'MacBook Pro',
    deviceName: 'Simulated MacBook Pro',
    userChannel: true,
  },
  RealityDevice: { family: 'RealityDevice', platform: 'visionOS', productName: 'RealityDevice14,1', osVersion: '2.2', buildVersion: '22N842', modelName: 'Apple Vision Pro', deviceName: 'Apple Vision Pro', userChannel: false },
}

/** Authenticate's device keys for `model`. */
export function authenticateFields(model: DeviceModel): Record<string, string> {
  const fields: Record<string, string> = { ProductName: model.productName, OSVersion: model.osVersion, BuildVersion: model.buildVersion }
  if (model.platform === 'macOS') Object.assign(fields, { Model: model.model ?? model.productName, ModelName: model.modelName, DeviceName: model.deviceName })
  return fields
}

/** A UDID shaped as recent devices give it: `00008110-` and 16 hex digits. */
export function randomUdid(): string {
  return `00008110-${randomBytes(8).toString('hex').toUpperCase()}`
}

/** A 12-character serial number (letters and digits, no I or O, as Apple's). */
export function randomSerial(): string {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZ0123456789'
  return [...randomBytes(12)].map((b) => alphabet[b % alphabet.length]).join('')
}
