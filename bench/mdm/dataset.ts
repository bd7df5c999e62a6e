/**
 * A large database made by SQL: `enrollments` synthetic users, each with an access token, an identity
 * certificate, an active enrollment and its device channel, and `commands` commands spread over them
 * (most pending, some finished), as a server with that many devices would hold. The benchmark's own
 * devices enroll for real beside them; the hot path must not slow down because these rows exist.
 */
import type pg from 'pg'

export interface DatasetSize {
  enrollments: number
  commands: number
}

export async function generateDataset(client: pg.Client, size: DatasetSize): Promise<void> {
  const { rows } = await client.query<{ id: string }>('SELECT id FROM teams ORDER BY created_at LIMIT 1')
  const teamId = rows[0]?.id
  if (!teamId) throw new Error('no team: start the server on this database first')
  const n = size.enrollments
  await client.query('BEGIN')
  // One statement per table, row i of each belonging together (ids derived from i).
  await client.query(
    `INSERT INTO users (id, issuer, subject, email, updated_at)
     SELECT md5('u' || i)::uuid, 'dev', 'synthetic-' || i, 'synthetic-' || i || '@bench.example', now() FROM generate_series(1, $1) i`,
    [n],
  )
  await client.query(
    `INSERT INTO access_tokens (id, token_hash, user_id, team_id, method, created_at, enroll_until, profile_issued_at)
     SELECT md5('t' || i)::uuid, sha256(('t' || i)::bytea), md5('u' || i)::uuid, $2, 'dev', now() - interval '1 day', now(), now() - interval '1 day'
     FROM generate_series(1, $1) i`,
    [n, teamId],
  )
  await client.query(
    `INSERT INTO device_certificates (id, serial, fingerprint_sha256, subject, not_before, not_after, user_id, team_id, access_token_id, certificate_der)
     SELECT md5('c' || i)::uuid, md5('serial' || i), encode(sha256(('c' || i)::bytea), 'hex'), 'CN=synthetic-' || i,
            now() - interval '1 day', now() + interval '365 days', md5('u' || i)::uuid, $2, md5('t' || i)::uuid, sha256(('der' || i)::bytea)
     FROM generate_series(1, $1) i`,
    [n, teamId],
  )
  await client.query(
    `INSERT INTO mdm_enrollments (id, enrollment_id, user_id, team_id, access_token_id, current_access_token_id, signed_in_at, status, topic,
                                  product_name, os_version, authenticated_at, activated_at, last_seen_at, updated_at)
     SELECT md5('e' || i)::uuid, upper(md5('eid' || i)::uuid::text), md5('u' || i)::uuid, $2, md5('t' || i)::uuid, md5('t' || i)::uuid,
            now() - interval '1 day', 'active', 'com.apple.mgmt.External.bench', 'iPhone14,2', '18.1',
            now() - interval '1 day', now() - interval '1 day', now() - (i % 1440) * interval '1 minute', now()
     FROM generate_series(1, $1) i`,
    [n, teamId],
  )
  await client.query(
    `INSERT INTO mdm_enrollment_certificates (device_certificate_id, mdm_enrollment_id) SELECT md5('c' || i)::uuid, md5('e' || i)::uuid FROM generate_series(1, $1) i`,
    [n],
  )
  await client.query(
    `INSERT INTO mdm_channels (id, mdm_enrollment_id, channel_id, topic, push_token, push_magic, token_updated_at, last_seen_at, updated_at)
     SELECT md5('ch' || i)::uuid, md5('e' || i)::uuid, upper(md5('eid' || i)::uuid::text), 'com.apple.mgmt.External.bench',
            encode(sha256(('push' || i)::bytea), 'hex'), md5('magic' || i), now(), now(), now()
     FROM generate_series(1, $1) i`,
    [n],
  )
  // Commands round-robin over the enrollments; one in five finished, the rest waiting.
  await client.query(
    `INSERT INTO mdm_commands (command_uuid, mdm_enrollment_id, mdm_channel_id, request_type, command, status, created_at, completed_at)
     SELECT upper(md5('cmd' || j)::uuid::text), md5('e' || (1 + j % $2))::uuid, md5('ch' || (1 + j % $2))::uuid, 'DeviceInformation',
            '{"RequestType": "DeviceInformation", "Queries": ["OSVersion", "ModelName", "SerialNumber"]}'::jsonb,
            CASE WHEN j % 5 = 0 THEN 'acknowledged' ELSE 'pending' END, now() - (j % 10000) * interval '1 second',
            CASE WHEN j % 5 = 0 THEN now() ELSE NULL END
     FROM generate_series(1, $1) j`,
    [size.commands, n],
  )
  await client.query('COMMIT')
  await client.query('VACUUM ANALYZE')
}
