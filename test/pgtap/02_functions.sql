-- 02_functions.sql: every function of presence--1.0.sql exists with its
-- exact signature (argument names, types and defaults), return type,
-- language, volatility and strictness, and runs as SECURITY DEFINER with
-- search_path pinned to pg_catalog, pg_temp; all but heartbeat() and
-- heartbeat_many(), which are plain functions that switch to their owner
-- and pin the search_path in C whenever they touch the tables.
BEGIN;
SELECT plan(233);
SET LOCAL search_path = public, pg_catalog;

SELECT functions_are('presence',
	ARRAY['heartbeat', 'heartbeat_many', 'disconnect', 'set_status', 'sweep', 'worker_status',
		  'cache_status',
		  'statuses', 'get', 'online_users', 'counts', 'changes', 'last_seq',
		  'join', 'leave', 'set_meta', 'typing', 'broadcast', 'room_channel',
		  'members', 'room_count', 'rooms', 'typing_users', 'time_in_status'],
	'schema presence has exactly the documented functions');

-- Nothing in the schema may run SQL with the caller's rights or search_path.
SELECT is_empty(
	$$ SELECT p.oid::regprocedure::text FROM pg_proc p
		WHERE p.pronamespace = 'presence'::regnamespace
		  AND p.proname NOT IN ('heartbeat', 'heartbeat_many')
		  AND (NOT p.prosecdef OR p.proconfig IS DISTINCT FROM
			   ARRAY['search_path=pg_catalog, pg_temp']) $$,
	'every function in presence but the heartbeats is SECURITY DEFINER with search_path = pg_catalog, pg_temp');
SELECT is_empty(
	$$ SELECT p.oid::regprocedure::text FROM pg_proc p
		WHERE p.pronamespace = 'presence'::regnamespace
		  AND p.proname IN ('heartbeat', 'heartbeat_many')
		  AND (p.prosecdef OR p.proconfig IS NOT NULL
			   OR p.prolang <> (SELECT oid FROM pg_language WHERE lanname = 'c')) $$,
	'heartbeat() and heartbeat_many() are plain C functions (they switch roles in C)');

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
('heartbeat_many', ARRAY['text[]', 'text[]', 'boolean'],
 'presence.heartbeat_many(text[],text[],boolean)', 'integer',
 'user_ids text[], session_ids text[], active boolean DEFAULT true',
 'integer', 'c', 'volatile', false),
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
('cache_status', ARRAY[]::name[],
 'presence.cache_status()', 'record',
 'OUT max_sessions bigint, OUT sessions bigint, OUT sessions_here bigint, OUT rejected bigint, OUT shared_bytes bigint',
 'record', 'c', 'volatile', true),
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
 'TABLE(seq bigint, user_id text, status presence.status, previous presence.status, reason text, message text, last_active timestamp with time zone, at timestamp with time zone)',
 'sql', 'stable', true),
('last_seq', ARRAY[]::name[],
 'presence.last_seq()', 'bigint',
 '',
 'bigint', 'sql', 'stable', false),
-- rooms
('join', ARRAY['text', 'text', 'text', 'jsonb'],
 'presence.join(text,text,text,jsonb)', 'void',
 'room text, user_id text, session_id text DEFAULT ''default''::text, meta jsonb DEFAULT NULL::jsonb',
 'void', 'c', 'volatile', false),
('leave', ARRAY['text', 'text', 'text'],
 'presence.leave(text,text,text)', 'void',
 'room text, user_id text, session_id text DEFAULT NULL::text',
 'void', 'c', 'volatile', false),
('set_meta', ARRAY['text', 'text', 'text', 'jsonb'],
 'presence.set_meta(text,text,text,jsonb)', 'void',
 'room text, user_id text, session_id text, meta jsonb',
 'void', 'c', 'volatile', false),
('typing', ARRAY['text', 'text', 'boolean'],
 'presence.typing(text,text,boolean)', 'void',
 'room text, user_id text, is_typing boolean DEFAULT true',
 'void', 'c', 'volatile', false),
('broadcast', ARRAY['text', 'jsonb'],
 'presence.broadcast(text,jsonb)', 'void',
 'room text, payload jsonb',
 'void', 'c', 'volatile', false),
('room_channel', ARRAY['text'],
 'presence.room_channel(text)', 'text',
 'room text',
 'text', 'c', 'stable', false),
('members', ARRAY['text'],
 'presence.members(text)', 'setof record',
 'room text',
 'TABLE(user_id text, status presence.status, message text, metas jsonb, joined_at timestamp with time zone)',
 'sql', 'stable', true),
('room_count', ARRAY['text'],
 'presence.room_count(text)', 'integer',
 'room text',
 'integer', 'sql', 'stable', true),
('rooms', ARRAY['text'],
 'presence.rooms(text)', 'setof text',
 'user_id text',
 'SETOF text', 'sql', 'stable', true),
('typing_users', ARRAY['text'],
 'presence.typing_users(text)', 'setof text',
 'room text',
 'SETOF text', 'sql', 'stable', true),
('time_in_status', ARRAY['text', 'timestamp with time zone', 'timestamp with time zone'],
 'presence.time_in_status(text,timestamp with time zone,timestamp with time zone)', 'setof record',
 'user_id text, since timestamp with time zone, until timestamp with time zone DEFAULT now()',
 'TABLE(status presence.status, duration interval)',
 'plpgsql', 'stable', false);

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
SELECT CASE WHEN name IN ('heartbeat', 'heartbeat_many')
			THEN isnt_definer('presence', name, args, sig || ' is not SECURITY DEFINER')
			ELSE is_definer('presence', name, args, sig || ' is SECURITY DEFINER') END
  FROM tap_fn ORDER BY name;
SELECT CASE WHEN name IN ('heartbeat', 'heartbeat_many')
			THEN is((SELECT proconfig FROM pg_proc WHERE oid = to_regprocedure(sig)),
					NULL, sig || ' has no SET clause')
			ELSE is((SELECT proconfig FROM pg_proc WHERE oid = to_regprocedure(sig)),
					ARRAY['search_path=pg_catalog, pg_temp'],
					sig || ' pins search_path = pg_catalog, pg_temp') END
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
	$$ SELECT presence.join(room => 'tap-room', user_id => 'tap-named',
							session_id => 's2', meta => '{"cursor": 1}') $$,
	'join accepts its arguments by name');
SELECT lives_ok(
	$$ SELECT presence.set_meta(room => 'tap-room', user_id => 'tap-named',
								session_id => 's2', meta => '{"cursor": 2}') $$,
	'set_meta accepts its arguments by name');
SELECT lives_ok(
	$$ SELECT presence.typing(room => 'tap-room', user_id => 'tap-named',
							  is_typing => true) $$,
	'typing accepts its arguments by name');
SELECT lives_ok(
	$$ SELECT presence.broadcast(room => 'tap-room', payload => '{"ping": 1}') $$,
	'broadcast accepts its arguments by name');
SELECT is((SELECT array_agg(u) FROM presence.typing_users(room => 'tap-room') u),
		  ARRAY['tap-named'], 'typing_users accepts its argument by name');
SELECT is(presence.room_count(room => 'tap-room'), 1,
		  'room_count accepts its argument by name');
SELECT is((SELECT array_agg(r) FROM presence.rooms(user_id => 'tap-named') r),
		  ARRAY['tap-room'], 'rooms accepts its argument by name');
SELECT is((SELECT array_agg(m.user_id) FROM presence.members(room => 'tap-room') m),
		  ARRAY['tap-named'], 'members accepts its argument by name');
SELECT is(presence.room_channel(room => 'tap-room'), 'presence:tap-room',
		  'room_channel accepts its argument by name');
SELECT lives_ok(
	$$ SELECT presence.leave(room => 'tap-room', user_id => 'tap-named',
							 session_id => 's2') $$,
	'leave accepts its arguments by name');
SELECT is((SELECT count(*)::integer FROM presence.time_in_status(
			  user_id => 'tap-named', since => now() - interval '1 hour',
			  until => now())), 4,
		  'time_in_status accepts its arguments by name and lists the four statuses');
SELECT lives_ok(
	$$ SELECT presence.disconnect(user_id => 'tap-named', session_id => 's') $$,
	'disconnect accepts its arguments by name');

SELECT * FROM finish();
ROLLBACK;
