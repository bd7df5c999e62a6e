/**
 * Pushing in tests: the environment that points the server at the fake APNs, and enrolled devices each
 * with their own push token and PushMagic (the recorded TokenUpdate's are shared by every device).
 */
import { randomBytes, randomUUID } from 'node:crypto'
import type { App } from '../../src/app.js'
import { enrollDevice, type Device, type EnrollOptions } from './device.js'
import type { FakeApns, PushIdentityFixture } from './fake-apns.js'

/** APNS_URL, APNS_CERT/APNS_KEY (inline PEM) and APNS_CA for the fake. */
export function apnsEnv(fake: FakeApns, identity: PushIdentityFixture): Record<string, string> {
  return { APNS_URL: fake.url, APNS_CERT: identity.certPem, APNS_KEY: identity.keyPem, APNS_CA: fake.caPem }
}

export interface PushableDevice {
  device: Device
  /** The TokenUpdate's Token, hex, as APNs gets it in the path. */
  token: string
  pushMagic: string
  /** Sends the same TokenUpdate again (what a device does at every start). */
  tokenUpdate(): Promise<void>
}

/** A device that sent Authenticate and a TokenUpdate with a token and PushMagic of its own. */
export async function pushableDevice(app: App, options: EnrollOptions = {}): Promise<PushableDevice> {
  const device = await enrollDevice(app, options)
  const token = randomBytes(32)
  const pushMagic = randomUUID().toUpperCase()
  const tokenUpdate = async () => {
    const res = await device.tokenUpdate(undefined, { Token: new Uint8Array(token), PushMagic: pushMagic })
    if (res.statusCode !== 200) throw new Error(`TokenUpdate answered ${res.statusCode}: ${res.body}`)
  }
  const res = await device.authenticate()
  if (res.statusCode !== 200) throw new Error(`Authenticate answered ${res.statusCode}: ${res.body}`)
  await tokenUpdate()
  return { device, token: token.toString('hex'), pushMagic, tokenUpdate }
}

/** The device channel of a device (its channel_id is the EnrollmentID). */
export async function deviceChannel(app: App, device: Device) {
  const enrollment = await app.db.prisma.mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: device.enrollmentId }, orderBy: { createdAt: 'desc' } })
  const channel = await app.db.prisma.mdmChannel.findUniqueOrThrow({ where: { mdmEnrollmentId_channelId: { mdmEnrollmentId: enrollment.id, channelId: device.enrollmentId } } })
  return { enrollment, channel }
}
