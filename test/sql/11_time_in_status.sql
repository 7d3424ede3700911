--
-- time_in_status(user_id, since, until): how long a user showed each
-- status between two times, from the history, so as others saw it.  Every
-- change here is driven by sweep(as_of), so the durations are exact.
--

-- Three users, all changes from t0 on:
--   tina: busy (an override until 30 min), then away (her session is idle
--         by then), offline when her session ends at 1 hour
--   ulf:  online, a message that expires at 5 min, away at 10 min, offline
--         at 1 hour
--   vera: invisible (offline to everyone) until 20 min, then online
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.set_status('tina', 'busy', 'Focus', :'t0'::timestamptz + interval '30 min');
SELECT presence.heartbeat('tina', 'tab', ttl => '1 hour', away_after => '10 min');
SELECT presence.heartbeat('ulf', 'tab', ttl => '1 hour', away_after => '10 min');
SELECT presence.set_status('ulf', 'auto', 'Lunch', :'t0'::timestamptz + interval '5 min');
SELECT presence.set_status('vera', 'invisible', NULL, :'t0'::timestamptz + interval '20 min');
SELECT presence.heartbeat('vera', 'tab', ttl => '1 day', away_after => '1 day');
SELECT presence.sweep(:'t0'::timestamptz + interval '5 min');
SELECT presence.sweep(:'t0'::timestamptz + interval '10 min');
SELECT presence.sweep(:'t0'::timestamptz + interval '20 min');
SELECT presence.sweep(:'t0'::timestamptz + interval '30 min');
SELECT presence.sweep(:'t0'::timestamptz + interval '1 hour');
COMMIT;
SELECT user_id, status, previous, reason, message, at FROM t_events(:'t0')
 ORDER BY user_id, at;

-- Every status is listed, in the type's order, zeros included.
SELECT * FROM presence.time_in_status('tina', :'t0', :'t0'::timestamptz + interval '2 hours');
SELECT * FROM presence.time_in_status('ulf', :'t0', :'t0'::timestamptz + interval '2 hours');
SELECT * FROM presence.time_in_status('vera', :'t0', :'t0'::timestamptz + interval '1 hour');

-- A window inside the history counts only its part of each span.
SELECT * FROM presence.time_in_status('ulf', :'t0'::timestamptz + interval '5 min',
									   :'t0'::timestamptz + interval '15 min');
SELECT * FROM presence.time_in_status('tina', :'t0'::timestamptz + interval '29 min',
									   :'t0'::timestamptz + interval '31 min');
-- A window within one span.
SELECT * FROM presence.time_in_status('tina', :'t0'::timestamptz + interval '40 min',
									   :'t0'::timestamptz + interval '50 min');
-- Before the first change a user counts as offline.
SELECT * FROM presence.time_in_status('ulf', :'t0'::timestamptz - interval '1 hour',
									   :'t0'::timestamptz + interval '10 min');
-- The spans always add up to the window.
SELECT u, sum(d.duration) AS total
  FROM unnest(ARRAY['tina', 'ulf', 'vera', 'nobody']) AS u,
	   presence.time_in_status(u, :'t0'::timestamptz - interval '7 min',
							   :'t0'::timestamptz + interval '3 hours') d
 GROUP BY u ORDER BY u;

-- An empty window is all zeros.
SELECT * FROM presence.time_in_status('ulf', :'t0', :'t0');

-- A user never seen has been offline all along; until defaults to now().
SELECT * FROM presence.time_in_status('nobody', :'t0', :'t0'::timestamptz + interval '1 hour');
SELECT * FROM presence.time_in_status('nobody', now() - interval '90 min');
SELECT count(*) AS nobody_created FROM presence.users WHERE user_id = 'nobody';

-- since must not be later than until, and nothing may be NULL.
CREATE FUNCTION s_err(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text;
	msg text;
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
	RETURN st || ': ' || msg;
END
$$;
SELECT s_err($q$SELECT * FROM presence.time_in_status('ulf', now(), now() - interval '1 s')$q$);
SELECT s_err($q$SELECT * FROM presence.time_in_status(NULL, now())$q$);
SELECT s_err($q$SELECT * FROM presence.time_in_status('ulf', NULL)$q$);
SELECT s_err($q$SELECT * FROM presence.time_in_status('ulf', now(), NULL)$q$);
DROP FUNCTION s_err(text);

SELECT presence.disconnect(user_id) FROM presence.users
 WHERE status <> 'offline' ORDER BY user_id;
SELECT count(*) >= 0 FROM t_events(now());
