-- 02_functions.sql: every function of presence--1.0.sql exists with its
-- exact signature (argument names, types and defaults), return type,
-- language, volatility and strictness, and runs as SECURITY DEFINER with
-- search_path pinned to pg_catalog, pg_temp.
BEGIN;
SELECT plan(95);
SET LOCAL search_path = public, pg_catalog;

SELECT functions_are('presence',
	ARRAY['heartbeat', 'disconnect', 'set_status', 'sweep', 'worker_status',
		  'statuses', 'get', 'online_users', 'counts', 'changes'],
	'schema presence has exactly the documented functions');

-- Nothing in the schema may run with the caller's rights or search_path.
SELECT is_empty(
	$$ SELECT p.oid::regprocedure::text FROM pg_proc p
		WHERE p.pronamespace = 'presence'::regnamespace
		  AND (NOT p.prosecdef OR p.proconfig IS DISTINCT FROM
			   ARRAY['search_path=pg_catalog, pg_temp']) $$,
	'every function in presence is SECURITY DEFINER with search_path = pg_catalog, pg_temp');

-- Each function: has_function, function_returns, full argument list with
-- defaults, language, volatility, strictness, definer, pinned search_path.
CREATE TEMP TABLE tap_fn (name text, args name[], sig text, returns text,
						  arguments text, result text, lang name, vol text,
						  strict boolean) ON COMMIT DROP;
INSERT INTO tap_fn VALUES
('heartbeat', ARRAY['text', 'text', 'boolean', 'jsonb', 'interval', 'interval'],
 'presence.heartbeat(text,text,boolean,jsonb,interval,interval)', 'presence.status',
 'user_id text, session_id text DEFAULT ''default''::text, active boolean DEFAULT true, meta jsonb DEFAULT NULL::jsonb, ttl interval DEFAULT NULL::interval, away_after interval DEFAULT NULL::interval',
 'presence.status', 'c', 'volatile', false),
('disconnect', ARRAY['text', 'text'],
 'presence.disconnect(text,text)', 'presence.status',
 'user_id text, session_id text DEFAULT NULL::text',
 'presence.status', 'c', 'volatile', false),
('set_status', ARRAY['text', 'text', 'text', 'timestamp with time zone'],
 'presence.set_status(text,text,text,timestamp with time zone)', 'presence.status',
 'user_id text, status text, message text DEFAULT NULL::text, until timestamp with time zone DEFAULT NULL::timestamp with time zone',
 'presence.status', 'c', 'volatile', false),
('sweep', ARRAY['timestamp with time zone'],
 'presence.sweep(timestamp with time zone)', 'integer',
 'as_of timestamp with time zone DEFAULT clock_timestamp()',
 'integer', 'c', 'volatile', false),
('worker_status', ARRAY[]::name[],
 'presence.worker_status()', 'setof record',
 'OUT pid integer, OUT started_at timestamp with time zone, OUT last_sweep timestamp with time zone, OUT next_wake timestamp with time zone, OUT transitions bigint, OUT errors bigint, OUT last_error text',
 'SETOF record', 'c', 'volatile', true),
('statuses', ARRAY['text[]'],
 'presence.statuses(text[])', 'setof record',
 'user_ids text[]',
 'TABLE(user_id text, status presence.status, message text, last_active timestamp with time zone, last_seen timestamp with time zone, since timestamp with time zone, sessions integer)',
 'sql', 'stable', true),
('get', ARRAY['text'],
 'presence.get(text)', 'setof record',
 'user_id text',
 'TABLE(user_id text, status presence.status, message text, last_active timestamp with time zone, last_seen timestamp with time zone, since timestamp with time zone, sessions integer)',
 'sql', 'stable', true),
('online_users', ARRAY['integer'],
 'presence.online_users(integer)', 'setof record',
 'max_rows integer DEFAULT 100',
 'TABLE(user_id text, status presence.status, message text, last_active timestamp with time zone, last_seen timestamp with time zone, since timestamp with time zone, sessions integer)',
 'sql', 'stable', true),
('counts', ARRAY[]::name[],
 'presence.counts()', 'setof record',
 '',
 'TABLE(status presence.status, users bigint)',
 'sql', 'stable', false),
('changes', ARRAY['bigint', 'integer'],
 'presence.changes(bigint,integer)', 'setof record',
 'since bigint DEFAULT 0, max_rows integer DEFAULT 1000',
 'TABLE(seq bigint, user_id text, status presence.status, previous presence.status, reason text, message text, at timestamp with time zone)',
 'sql', 'stable', true);

SELECT has_function('presence', name, args, sig || ' exists') FROM tap_fn ORDER BY name;
SELECT function_returns('presence', name, args, returns, sig || ' returns ' || returns)
  FROM tap_fn ORDER BY name;
SELECT is(pg_get_function_arguments(to_regprocedure(sig)), arguments,
		  sig || ' has the documented argument names and defaults')
  FROM tap_fn ORDER BY name;
SELECT is(pg_get_function_result(to_regprocedure(sig)), result,
		  sig || ' returns ' || result)
  FROM tap_fn ORDER BY name;
SELECT function_lang_is('presence', name, args, lang, sig || ' is LANGUAGE ' || lang)
  FROM tap_fn ORDER BY name;
SELECT volatility_is('presence', name, args, vol, sig || ' is ' || vol)
  FROM tap_fn ORDER BY name;
SELECT CASE WHEN strict
			THEN is_strict('presence', name, args, sig || ' is STRICT')
			ELSE isnt_strict('presence', name, args, sig || ' is CALLED ON NULL INPUT') END
  FROM tap_fn ORDER BY name;
SELECT is_definer('presence', name, args, sig || ' is SECURITY DEFINER')
  FROM tap_fn ORDER BY name;
SELECT is((SELECT proconfig FROM pg_proc WHERE oid = to_regprocedure(sig)),
		  ARRAY['search_path=pg_catalog, pg_temp'],
		  sig || ' pins search_path = pg_catalog, pg_temp')
  FROM tap_fn ORDER BY name;

-- Argument names are part of the API (named notation).
SELECT lives_ok(
	$$ SELECT presence.heartbeat(user_id => 'tap-named', session_id => 's',
								 active => false, meta => '{}',
								 ttl => '1 minute', away_after => '30 seconds') $$,
	'heartbeat accepts its arguments by name');
SELECT lives_ok(
	$$ SELECT presence.set_status(user_id => 'tap-named', status => 'busy',
								  message => 'm', until => now() + '1 hour') $$,
	'set_status accepts its arguments by name');
SELECT lives_ok(
	$$ SELECT presence.disconnect(user_id => 'tap-named', session_id => 's') $$,
	'disconnect accepts its arguments by name');

SELECT * FROM finish();
ROLLBACK;
