--
-- Timed transitions, driven by sweep(as_of): idle, timeout, expiry.
--

-- Idle: online until last_active + away_after, then away, dated at the
-- deadline.  Nothing is due before it.
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('alice', 'tab', ttl => '10 min');
SELECT presence.sweep(:'t0'::timestamptz + interval '4 min 59 s');
SELECT presence.sweep(:'t0'::timestamptz + interval '5 min');
SELECT presence.sweep(:'t0'::timestamptz + interval '5 min');
SELECT * FROM t_sessions('alice', :'t0');
COMMIT;
SELECT * FROM t_events(:'t0');
SELECT status, since - :'t0' AS since FROM presence.get('alice');

-- Then the session ends at last_seen + ttl: timeout, offline.
BEGIN;
SELECT presence.sweep(:'t0'::timestamptz + interval '10 min');
SELECT count(*) FROM presence.sessions WHERE user_id = 'alice';
COMMIT;
SELECT * FROM t_events(:'t0');
SELECT * FROM t_get('alice', :'t0');

-- When both deadlines have passed, the user goes straight to offline in
-- one event, dated at the end of the session.
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('bob', 'tab', ttl => '1 min', away_after => '30 s');
SELECT presence.sweep(:'t0'::timestamptz + interval '1 hour');
COMMIT;
SELECT * FROM t_events(:'t0');

-- Several sessions: the user is online while any session is online, and
-- away once all are idle; the last session's end takes them offline.
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('carol', 'a', away_after => '1 min', ttl => '5 min');
SELECT presence.heartbeat('carol', 'b', away_after => '2 min', ttl => '3 min');
SELECT presence.sweep(:'t0'::timestamptz + interval '1 min');
SELECT presence.sweep(:'t0'::timestamptz + interval '2 min');
SELECT presence.sweep(:'t0'::timestamptz + interval '3 min');
SELECT presence.sweep(:'t0'::timestamptz + interval '5 min');
COMMIT;
SELECT * FROM t_events(:'t0');

-- Activity after going idle brings the user back online.
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('dave', 'tab', ttl => '1 hour');
SELECT presence.sweep(:'t0'::timestamptz + interval '6 min');
COMMIT;
BEGIN;
SELECT presence.heartbeat('dave', 'tab');
COMMIT;
SELECT user_id, status, previous, reason FROM t_events(:'t0');
SELECT presence.disconnect('dave');

-- A session that misses its deadline is settled by the next call for its
-- user, before the call's own change: the timeout comes first.
-- (A ttl of one microsecond has passed by the next statement.)
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('erin', 'tab', ttl => '1 microsecond');
COMMIT;
SELECT presence.heartbeat('erin', 'tab') AS erin;
SELECT presence.disconnect('erin');
SELECT user_id, status, previous, reason FROM t_events(:'t0');

-- Timers come from the settings, per session, role or database.
SET presence.away_after = '2 min';
SET presence.session_ttl = '1 h';
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('frank');
SELECT away_at, end_at FROM t_sessions('frank', :'t0');
COMMIT;
RESET presence.away_after;
RESET presence.session_ttl;
SELECT presence.disconnect('frank');
SELECT user_id, status, previous, reason FROM t_events(now());

-- A manual status with until: the override and the message expire
-- together, announced with reason 'expired' at the until time.
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('gina', 'tab', ttl => '1 day', away_after => '1 day');
SELECT presence.set_status('gina', 'busy', 'In a meeting', :'t0'::timestamptz + interval '1 hour');
SELECT presence.sweep(:'t0'::timestamptz + interval '59 min');
SELECT presence.sweep(:'t0'::timestamptz + interval '1 hour');
SELECT manual, manual_message, manual_until FROM presence.users WHERE user_id = 'gina';
COMMIT;
SELECT * FROM t_events(:'t0');
SELECT presence.disconnect('gina');
SELECT user_id, status, previous, reason FROM t_events(now());

-- A message with until on an offline user expires too.
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.set_status('henry', 'auto', 'On holiday', :'t0'::timestamptz + interval '1 day');
SELECT presence.sweep(:'t0'::timestamptz + interval '1 day');
COMMIT;
SELECT * FROM t_events(:'t0');

-- sweep() with nothing due changes nothing and returns 0.
SELECT presence.sweep();
SELECT presence.sweep('-infinity');

-- sweep('infinity') ends everything.
SELECT presence.heartbeat('ivan');
SELECT presence.sweep('infinity') > 0 AS swept;
SELECT count(*) FROM presence.sessions;
SELECT user_id, status, reason FROM t_events(now()) ORDER BY user_id;
