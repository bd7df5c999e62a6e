/**
 * The APNs push certificate. loadConfig already refuses a certificate whose key does not match, whose
 * subject UID (the Topic) does not start with com.apple.mgmt., or that disagrees with APNS_TOPIC (those
 * are failures of the configuration line, naming the variable); what is left is the banner's question
 * (services/push.ts describePush): is it expired, or about to be?
 */
import type { Config, Environment } from '../../config/index.js'
import { describePush } from '../../services/push.js'
import { fail, isoDate, ok, warn, type Outcome } from './result.js'

const PORTAL = 'README "Push notifications (APNs)"'

export function checkApns(config: Config, env: Environment, now: Date): Outcome {
  const credentials = config.apns.credentials
  if (!credentials) {
    const fix = `for production get the MDM push certificate (${PORTAL}) and set APNS_CERT + APNS_KEY, or APNS_P12 + APNS_P12_PASSWORD, before enrolling real devices`
    if (config.apnsTopic) return warn(`no push certificate: new profiles carry APNS_TOPIC ${config.apnsTopic}, but nothing is pushed, so commands wait for each device's next check-in`, fix)
    return warn("not configured: nothing is pushed (commands wait for each device's next check-in), and new profiles carry a placeholder topic, so devices enrolled now must enroll again to receive pushes", fix)
  }
  const summary = describePush(config.apns, now)
  if (credentials.expired) return fail(summary.warning ?? `the push certificate expired on ${isoDate(credentials.notAfter)}`)
  if (summary.warning) return warn(summary.warning)
  const topic = env.APNS_TOPIC ? `topic ${credentials.topic} (as APNS_TOPIC says)` : `topic ${credentials.topic}`
  return ok(`MDM push certificate with ${topic}, its private key matches, valid until ${isoDate(credentials.notAfter)}`)
}
