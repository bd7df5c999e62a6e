/**
 * The use cases as a named plugin: creates the Default team on first start, then every service
 * (services/index.ts). Decorates `app.services`, `app.urls` and `app.defaultTeam`; closes the push
 * service (its APNs connection) when the app closes.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { serverUrls, type ServerUrls } from '../protocol/urls.js'
import { createServices, type Services } from '../services/index.js'
import { ConfigError } from '../config/index.js'
import { allTeams, ensureDefaultTeam, ensureTeamNamed, findTeam, setTeamEnrollmentType } from '../storage/teams.js'
import type { Team } from '../storage/types.js'

declare module 'fastify' {
  interface FastifyInstance {
    urls: ServerUrls
    services: Services
    defaultTeam: Team
  }
}

export default fp(
  async (app: FastifyInstance) => {
    const urls = serverUrls(app.config.serverUrl)
    app.decorate('urls', urls)
    const defaultTeam = await ensureDefaultTeam(app.db.prisma)
    const services = createServices({ db: app.db.prisma, sql: app.db.sql, config: app.config, keys: app.keys, urls, log: app.log })
    app.decorate('services', services)
    // The server's Enrollment SSO documents must obey Apple's rules before any device sees them: a device
    // that dislikes one cancels the enrollment silently (PROTOCOL.md section 5).
    if (app.config.esso) {
      const problems = services.esso.problems(app.config.esso)
      if (problems.length) throw new ConfigError('ESSO_EXTENSIBLE_SSO', `the Enrollment SSO document would break Apple's rules: ${problems.join('; ')}`)
    }
    // ENROLL_DEVICE_TEAMS: these teams enroll organisation-owned devices (account-driven device enrollment).
    for (const name of app.config.enrollment.deviceTeams) {
      const team = await ensureTeamNamed(app.db.prisma, name)
      if (team.enrollmentType !== 'device') {
        await setTeamEnrollmentType(app.db.prisma, team.id, 'device')
        app.log.info({ teamId: team.id, name }, 'team set to account-driven device enrollment (ENROLL_DEVICE_TEAMS)')
      }
    }
    // After ENROLL_DEVICE_TEAMS, which may name the Default team.
    app.decorate('defaultTeam', (await findTeam(app.db.prisma, defaultTeam.id)) ?? defaultTeam)
    // A team's declaration set changes with the ESSO settings of this start: its enrollments are told.
    for (const team of await allTeams(app.db.prisma)) {
      const told = await services.declarations.sync(team)
      if (told) app.log.info({ teamId: team.id, enrollments: told }, 'declarations changed: DeclarativeManagement queued')
    }
    // The ABM server token lasts a year; say so at start from 30 days before it expires.
    const abmWarning = await services.abm.expiryWarning()
    if (abmWarning) app.log.warn({ abm: { warning: abmWarning } }, abmWarning)
    // Before the database closes (onClose hooks run in reverse order of registration): pushes in flight
    // record their outcome, then the APNs connection ends.
    app.addHook('onClose', async () => app.services.push.close())
  },
  { name: 'services', dependencies: ['database', 'keys'] },
)
