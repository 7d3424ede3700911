--
-- heartbeat_many(): many heartbeats in one call, as an app server holding
-- many connections sends them; returns how many changed a status.
--
BEGIN;
SELECT now() AS t0 \gset
-- three new sessions: three users connect
SELECT presence.heartbeat_many(ARRAY['hm_a', 'hm_b', 'hm_c'], ARRAY['t', 't', 't']);
-- a second tab of hm_a, and hm_b again: nothing changes
SELECT presence.heartbeat_many(ARRAY['hm_a', 'hm_b'], ARRAY['t2', 't']);
SELECT user_id, session_id, away_at - :'t0' AS away_at, end_at - :'t0' AS end_at
  FROM presence.sessions WHERE user_id LIKE 'hm\_%' ORDER BY 1, 2;
COMMIT;
SELECT user_id, status, previous, reason FROM t_events(:'t0') ORDER BY user_id;

-- Inside the granularity nothing is written: no row version, no xid.
SELECT string_agg(xmin::text, ',' ORDER BY user_id, session_id) AS xmins
  FROM presence.sessions WHERE user_id LIKE 'hm\_%' \gset
BEGIN;
SELECT presence.heartbeat_many(ARRAY['hm_a', 'hm_a', 'hm_b', 'hm_c'],
							   ARRAY['t', 't2', 't', 't']);
SELECT pg_current_xact_id_if_assigned() IS NULL AS no_xid;
COMMIT;
SELECT string_agg(xmin::text, ',' ORDER BY user_id, session_id) = :'xmins' AS untouched
  FROM presence.sessions WHERE user_id LIKE 'hm\_%';

-- active => false only keeps sessions alive; an idle session made active
-- again is a change of status, counted, as heartbeat() would announce it.
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('hm_c', 't', away_after => '0');
SELECT presence.heartbeat_many(ARRAY['hm_c'], ARRAY['t'], false);
SELECT presence.heartbeat_many(ARRAY['hm_c'], ARRAY['t'], true);
COMMIT;
SELECT user_id, status, previous, reason FROM t_events(:'t0');

-- The same user twice in one batch, and an invisible user: counted only
-- when a visible status changed.
SELECT presence.set_status('hm_d', 'invisible');
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat_many(ARRAY['hm_e', 'hm_e', 'hm_d'], ARRAY['x', 'y', 'z']);
COMMIT;
SELECT user_id, status, previous, reason FROM t_events(:'t0');
SELECT user_id, status, sessions FROM presence.statuses(ARRAY['hm_d', 'hm_e']);

-- Nothing to do.
SELECT presence.heartbeat_many('{}', '{}');

-- Bad input: a clear error, nothing changed.
SELECT count(*) AS sessions_before FROM presence.sessions \gset
\set VERBOSITY terse
SELECT presence.heartbeat_many(ARRAY['hm_x'], ARRAY['t', 'u']);
SELECT presence.heartbeat_many(NULL, ARRAY['t']);
SELECT presence.heartbeat_many(ARRAY['hm_x'], NULL);
SELECT presence.heartbeat_many(ARRAY['hm_x', NULL], ARRAY['t', 'u']);
SELECT presence.heartbeat_many(ARRAY['hm_x', ''], ARRAY['t', 'u']);
SELECT presence.heartbeat_many(ARRAY['hm_x', repeat('x', 257)], ARRAY['t', 'u']);
SELECT presence.heartbeat_many(ARRAY[['hm_x']], ARRAY[['t']]);
SELECT presence.heartbeat_many(ARRAY['hm_x'], ARRAY['t'], NULL);
\set VERBOSITY default
SELECT count(*) = :sessions_before AS nothing_changed FROM presence.sessions;
SELECT count(*) FROM presence.users WHERE user_id = 'hm_x';

SELECT presence.disconnect(u) FROM unnest(ARRAY['hm_a', 'hm_b', 'hm_c', 'hm_d', 'hm_e']) u;
SELECT count(*) >= 0 FROM t_events(now());
