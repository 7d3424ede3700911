--
-- Invisible: through every function and event, an invisible user looks
-- exactly like one who disconnected when they went invisible.
--
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('alice', 'tab', ttl => '1 day', away_after => '1 day');
SELECT presence.set_status('alice', 'auto', 'Working from home');
COMMIT;
SELECT user_id, status, previous, reason, message FROM t_events(:'t0');

-- Going invisible reads as a disconnect.
BEGIN;
SELECT now() AS t1 \gset
SELECT presence.set_status('alice', 'invisible', 'Hiding');
COMMIT;
SELECT user_id, status, previous, reason, message, at = '0' AS at_now FROM t_events(:'t1');
SELECT user_id, status, message, since = '0' AS since_now, sessions
  FROM t_get('alice', :'t1');
SELECT last_active AS frozen_active, last_seen AS frozen_seen
  FROM presence.get('alice') \gset

-- Nothing advances while invisible: heartbeats, activity, new sessions,
-- message changes, idling and timers are all silent and invisible.
SELECT presence.heartbeat('alice', 'tab');
SELECT presence.heartbeat('alice', 'phone');
SELECT presence.set_status('alice', 'invisible', 'Still hiding');
SELECT presence.sweep(now() + interval '2 days');
SELECT presence.heartbeat('alice', 'tab');
SELECT count(*) FROM t_events(:'t1');
SELECT user_id, status, message, last_active = :'frozen_active' AS active_frozen,
	   last_seen = :'frozen_seen' AS seen_frozen, since = :'t1' AS since_frozen,
	   sessions
  FROM presence.get('alice');
SELECT * FROM presence.online_users();
SELECT * FROM presence.counts();
SELECT user_id, status FROM presence.statuses(ARRAY['alice']);

-- Coming back reads as a connect, with the message set then.
BEGIN;
SELECT now() AS t2 \gset
SELECT presence.set_status('alice', 'auto', 'Back');
COMMIT;
SELECT user_id, status, previous, reason, message FROM t_events(:'t2');
SELECT user_id, status, message, sessions FROM presence.get('alice');

-- Invisible with until: coming back at the until time is a connect too.
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('alice', 'tab', ttl => '1 day', away_after => '1 day');
SELECT presence.set_status('alice', 'invisible', NULL, :'t0'::timestamptz + interval '1 hour');
SELECT presence.sweep(:'t0'::timestamptz + interval '1 hour');
COMMIT;
SELECT user_id, status, previous, reason, message, at FROM t_events(:'t0');

-- Going invisible while offline is silent, and so is connecting while
-- invisible; an expiry while still disconnected announces nothing either.
SELECT presence.set_status('alice', 'auto', 'Visible message');
SELECT presence.disconnect('alice');
SELECT user_id, status, reason, message FROM t_events(now());
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.set_status('alice', 'invisible', 'Gone', :'t0'::timestamptz + interval '1 hour');
SELECT presence.sweep(:'t0'::timestamptz + interval '2 hours');
COMMIT;
SELECT count(*) FROM t_events(:'t0');
SELECT user_id, status, message FROM presence.get('alice');

-- Busy and away overrides show as such while connected.
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.set_status('bob', 'dnd', 'Focus time');
SELECT presence.heartbeat('bob');
SELECT presence.set_status('bob', 'away');
SELECT presence.set_status('bob', 'online');
COMMIT;
SELECT user_id, status, previous, reason, message FROM t_events(:'t0');
SELECT presence.disconnect('bob');
SELECT user_id, status, reason FROM t_events(now());
