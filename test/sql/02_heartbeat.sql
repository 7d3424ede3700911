--
-- heartbeat() and disconnect(): sessions, return values and their events.
--

-- First session: online, one connect event.  A second tab is silent.
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('alice', 'tab-1');
SELECT presence.heartbeat('alice', 'tab-2', meta => '{"page": "/inbox"}');
SELECT * FROM t_sessions('alice', :'t0');
COMMIT;
SELECT * FROM t_events(:'t0');
SELECT * FROM t_get('alice', :'t0');

-- The default session id is 'default'.
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('bob');
SELECT session_id FROM presence.sessions WHERE user_id = 'bob';
COMMIT;
SELECT * FROM t_events(:'t0');

-- A session created with active => false starts away.
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('carol', 'phone', active => false);
SELECT * FROM t_sessions('carol', :'t0');
COMMIT;
SELECT * FROM t_events(:'t0');

-- An active heartbeat from an idle session brings the user online.
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('carol', 'phone', active => true);
COMMIT;
SELECT * FROM t_events(:'t0');

-- active => false only keeps the session alive: last_active stays.
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('carol', 'phone', active => false, ttl => '10 min');
SELECT session_id, end_at FROM t_sessions('carol', :'t0');
COMMIT;
SELECT * FROM t_events(:'t0');

-- away_after => '0' makes a session away at once (an app sent to the
-- background); with a second, active session the user stays online.
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('dave', 'desktop');
SELECT presence.heartbeat('dave', 'mobile', away_after => '0');
SELECT presence.heartbeat('dave', 'desktop', away_after => '0');
COMMIT;
SELECT * FROM t_events(:'t0');

-- Metadata: stored, kept when NULL is passed, replaced when given.
SELECT presence.heartbeat('alice', 'tab-2');
SELECT meta FROM presence.sessions WHERE user_id = 'alice' AND session_id = 'tab-2';
SELECT presence.heartbeat('alice', 'tab-2', meta => '{"page": "/settings"}');
SELECT meta FROM presence.sessions WHERE user_id = 'alice' AND session_id = 'tab-2';

-- Closing one of two tabs is silent; closing the last one is a disconnect.
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.disconnect('alice', 'tab-1');
SELECT presence.disconnect('alice', 'tab-1');
SELECT presence.disconnect('alice', 'tab-2');
COMMIT;
SELECT * FROM t_events(:'t0');
SELECT user_id, status, last_active < '0' AS active_before, last_seen, since,
	   sessions
  FROM t_get('alice', :'t0');

-- disconnect() without a session id ends all of the user's sessions.
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('erin', 'a');
SELECT presence.heartbeat('erin', 'b');
SELECT presence.heartbeat('erin', 'c');
SELECT presence.disconnect('erin');
SELECT count(*) FROM presence.sessions WHERE user_id = 'erin';
COMMIT;
SELECT * FROM t_events(:'t0');

-- Unknown users and sessions: offline, nothing created, nothing announced.
SELECT presence.disconnect('nobody');
SELECT presence.disconnect('bob', 'no-such-tab');
SELECT count(*) FROM presence.users WHERE user_id = 'nobody';
SELECT count(*) FROM t_events(now());

-- Clean up for the next tests.
SELECT presence.disconnect(user_id) FROM presence.users ORDER BY user_id;
SELECT user_id, status, reason FROM t_events(now()) ORDER BY user_id;
