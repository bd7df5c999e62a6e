/**
 * Enrollment SSO documents: the server's (ESSO_*) and each team's own settings (admin API) are built as
 * the server builds them and checked against every rule of PROTOCOL.md section 5 (services/esso.ts
 * essoProblems, the check the server runs at start and the admin API on every change). A device that
 * dislikes a document cancels the enrollment without saying why, so a team whose stored settings break
 * a rule (written before the rule existed, say) is worth a failure here.
 */
import type { Config } from '../../config/index.js'
import { generateRsaKeyPair, createSelfSigned, type Identity } from '../../pki/x509.js'
import type { EssoSettings } from '../../protocol/esso.js'
import { serverUrls } from '../../protocol/urls.js'
import { essoModeOf, essoProblems } from '../../services/esso.js'
import { essoSettingsFromJson } from '../../services/esso-settings.js'
import type { Database } from '../../storage/database.js'
import { allTeams } from '../../storage/teams.js'
import { fail, ok, skipped, type Outcome } from './result.js'

/**
 * `signer` is the server's profile signer when the doctor could read it; otherwise a throwaway one is
 * made (the rules do not depend on which key signs).
 */
export async function checkEsso(config: Config, db: Database | undefined, signer: Identity | undefined): Promise<Outcome> {
  const subjects: { name: string; settings: EssoSettings | null; problem?: string; fix: string }[] = []
  if (config.esso) subjects.push({ name: 'the server settings (ESSO_*)', settings: config.esso, fix: 'correct the ESSO_* variables (README "Enrollment SSO and declarations"); npm start refuses to start with them' })
  if (db) {
    for (const team of await allTeams(db.prisma)) {
      if (team.essoSettings === null || team.essoSettings === undefined) continue
      const fix = `correct team "${team.name}"'s settings: PUT /api/v1/admin/teams/${team.id}/esso (or DELETE it to use the server's)`
      try {
        subjects.push({ name: `team "${team.name}"`, settings: essoSettingsFromJson(team.essoSettings), fix })
      } catch (err) {
        subjects.push({ name: `team "${team.name}"`, settings: null, problem: (err as Error).message, fix })
      }
    }
  }
  const active = subjects.filter((s) => s.settings !== null || s.problem)
  if (active.length === 0) {
    return skipped(`Enrollment SSO is not configured (ESSO_EXTENSIBLE_SSO is not set${db ? ' and no team has settings of its own' : ''})`)
  }

  const sign = signer ?? (await throwawaySigner())
  const urls = serverUrls(config.serverUrl)
  const broken: { name: string; problems: string[]; fix: string }[] = []
  for (const s of active) {
    const problems = s.problem ? [s.problem] : essoProblems(s.settings!, { config, urls, signer: sign })
    if (problems.length) broken.push({ name: s.name, problems, fix: s.fix })
  }
  if (broken.length) {
    return fail(
      `the Enrollment SSO document of ${broken.map((b) => `${b.name} would break Apple's rules: ${b.problems.join('; ')}`).join('. And of ')}`,
      broken.map((b) => b.fix).join('; '),
    )
  }
  const described = active.map((s) => `${s.name} (${essoModeOf(s.settings!)} document, delivery ${s.settings!.delivery ?? 'both'})`)
  return ok(`the Enrollment SSO documents of ${described.join(', ')} obey Apple's rules`)
}

async function throwawaySigner(): Promise<Identity> {
  const keys = await generateRsaKeyPair(2048)
  const notBefore = new Date(Date.now() - 60_000)
  const certificate = await createSelfSigned({ subject: [['CN', 'byod-mdm doctor']], keys, notBefore, notAfter: new Date(notBefore.getTime() + 3600_000), keyUsage: ['digitalSignature'] })
  return { certificate, privateKey: keys.privateKey, chain: [] }
}
