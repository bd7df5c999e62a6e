/**
 * The whole command path with pushes (issue 12): an administrator queues a command, the fake APNs
 * receives the push with the channel's topic, token and PushMagic, the emulated device's Idle gets the
 * command, its Acknowledged result is shown by the admin API, and the next Idle is empty. Removing the
 * enrollment pushes too, and the device is then told to unenroll.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { parsePlistDict } from '../../src/protocol/plist.js'
import { admin, ADMIN_TOKEN } from '../helpers/admin.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import { startFakeApns, type FakeApns, type PushIdentityFixture } from '../helpers/fake-apns.js'
import { apnsEnv, pushableDevice } from '../helpers/push.js'

let fake: FakeApns
let identity: PushIdentityFixture
let t: TestApp
beforeAll(async () => {
  fake = await startFakeApns()
  identity = await fake.issuePushIdentity()
  t = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN, ...apnsEnv(fake, identity) } })
})
afterAll(async () => {
  await t?.close()
  await fake?.close()
})

it('enqueue -> push -> Idle gets the command -> Acknowledged -> the result in the admin API -> empty Idle', async () => {
  const { device, token, pushMagic } = await pushableDevice(t.app)
  expect(device.topic).toBe(identity.topic)
  const enrollment = (await admin(t.app, 'GET', `/enrollments?enrollment_id=${device.enrollmentId}`)).json().items[0].id as string
  const before = fake.requests.length

  const queued = await admin(t.app, 'POST', `/enrollments/${enrollment}/commands`, { RequestType: 'DeviceInformation', Queries: ['OSVersion'] })
  expect(queued.statusCode, queued.body).toBe(201)
  const uuid = queued.json().command_uuid as string
  await t.app.services.push.idle()
  const pushes = fake.requests.slice(before)
  expect(pushes).toHaveLength(1)
  expect(pushes[0]).toMatchObject({ token, body: JSON.stringify({ mdm: pushMagic }) })
  expect(pushes[0]!.headers['apns-topic']).toBe(identity.topic)
  expect(pushes[0]!.headers['apns-push-type']).toBe('mdm')

  const idle = await device.idle()
  expect(idle.statusCode).toBe(200)
  expect(parsePlistDict(idle.body)).toEqual({ CommandUUID: uuid, Command: { RequestType: 'DeviceInformation', Queries: ['OSVersion'] } })
  const done = await device.idle(undefined, { Status: 'Acknowledged', CommandUUID: uuid, QueryResponses: { OSVersion: '18.2.1' } })
  expect(done.statusCode).toBe(200)
  expect(done.body).toBe('')
  expect((await admin(t.app, 'GET', `/commands/${uuid}`)).json()).toMatchObject({ status: 'acknowledged', result: { QueryResponses: { OSVersion: '18.2.1' } } })
  const view = (await admin(t.app, 'GET', `/enrollments/${enrollment}`)).json()
  expect(view.channels[0].push).toMatchObject({ status: 'delivered', has_token: true })
  expect((await device.idle()).body).toBe('')

  // Removal pushes the device, whose next request is told to unenroll.
  const pushed = fake.requests.length
  expect((await admin(t.app, 'DELETE', `/enrollments/${enrollment}`)).statusCode).toBe(200)
  await t.app.services.push.idle()
  expect(fake.requests.length).toBe(pushed + 1)
  expect((await device.idle()).json()).toEqual({ code: 'com.apple.unrecognized.device' })
})
