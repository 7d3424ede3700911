-- 03_privileges.sql: nothing in presence is granted to PUBLIC, and an
-- application role given exactly
--   GRANT USAGE ON SCHEMA presence TO app;
--   GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA presence TO app;
-- can call every function but cannot read or write the tables directly.
BEGIN;
SELECT plan(50);
SET LOCAL search_path = public, pg_catalog;

CREATE ROLE tap_nobody;
CREATE ROLE tap_app;
GRANT USAGE ON SCHEMA presence TO tap_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA presence TO tap_app;

-- No ACL entry for PUBLIC (grantee 0) anywhere in the schema.
SELECT is_empty(
	$$ SELECT 'schema presence' FROM pg_namespace n, aclexplode(n.nspacl) a
		WHERE n.nspname = 'presence' AND a.grantee = 0
	   UNION ALL
	   SELECT c.oid::regclass::text FROM pg_class c, aclexplode(c.relacl) a
		WHERE c.relnamespace = 'presence'::regnamespace AND a.grantee = 0
	   UNION ALL
	   SELECT p.oid::regprocedure::text FROM pg_proc p, aclexplode(p.proacl) a
		WHERE p.pronamespace = 'presence'::regnamespace AND a.grantee = 0 $$,
	'nothing in schema presence is granted to PUBLIC');
-- A NULL ACL means the built-in defaults, which give functions to PUBLIC.
SELECT is_empty(
	$$ SELECT p.oid::regprocedure::text FROM pg_proc p
		WHERE p.pronamespace = 'presence'::regnamespace AND p.proacl IS NULL $$,
	'no function in presence has the default (PUBLIC EXECUTE) ACL');

-- A role with no grants can use nothing.
SELECT ok(NOT has_schema_privilege('tap_nobody', 'presence', 'USAGE'),
		  'a role without grants has no USAGE on schema presence');
SELECT ok(NOT has_schema_privilege('tap_nobody', 'presence', 'CREATE'),
		  'a role without grants has no CREATE on schema presence');
SELECT ok(NOT has_table_privilege('tap_nobody', t,
		  'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'),
		  'a role without grants has no privilege on ' || t)
  FROM unnest(ARRAY['presence.users', 'presence.sessions', 'presence.history',
					'presence.members', 'presence.typing']) AS t;
SELECT ok(NOT has_sequence_privilege('tap_nobody', 'presence.seq', 'USAGE, SELECT, UPDATE'),
		  'a role without grants has no privilege on presence.seq');
SELECT is_empty(
	$$ SELECT p.oid::regprocedure::text FROM pg_proc p
		WHERE p.pronamespace = 'presence'::regnamespace
		  AND has_function_privilege('tap_nobody', p.oid, 'EXECUTE') $$,
	'a role without grants can execute no function in presence');

-- The application role: every function, no table, no sequence.
SELECT ok(has_schema_privilege('tap_app', 'presence', 'USAGE'),
		  'the app role has USAGE on schema presence');
SELECT ok(NOT has_schema_privilege('tap_app', 'presence', 'CREATE'),
		  'the app role has no CREATE on schema presence');
SELECT is_empty(
	$$ SELECT p.oid::regprocedure::text FROM pg_proc p
		WHERE p.pronamespace = 'presence'::regnamespace
		  AND NOT has_function_privilege('tap_app', p.oid, 'EXECUTE') $$,
	'the app role can execute every function in presence');
SELECT ok(NOT has_table_privilege('tap_app', t,
		  'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'),
		  'the app role has no privilege on ' || t)
  FROM unnest(ARRAY['presence.users', 'presence.sessions', 'presence.history',
					'presence.members', 'presence.typing']) AS t;
SELECT ok(NOT has_sequence_privilege('tap_app', 'presence.seq', 'USAGE, SELECT, UPDATE'),
		  'the app role has no privilege on presence.seq');

-- And in practice, as the app role.
SET LOCAL ROLE tap_app;
SELECT is(presence.heartbeat('tap-user'), 'online'::presence.status,
		  'the app role can call heartbeat, which returns online');
SELECT is((SELECT status FROM presence.get('tap-user')), 'online'::presence.status,
		  'the app role can read the new status through get()');
SELECT lives_ok($$ SELECT * FROM presence.statuses(ARRAY['tap-user', 'tap-other']) $$,
				'the app role can call statuses()');
SELECT lives_ok($$ SELECT * FROM presence.online_users() $$,
				'the app role can call online_users()');
SELECT lives_ok($$ SELECT * FROM presence.counts() $$,
				'the app role can call counts()');
SELECT lives_ok($$ SELECT * FROM presence.changes() $$,
				'the app role can call changes()');
SELECT lives_ok($$ SELECT * FROM presence.worker_status() $$,
				'the app role can call worker_status()');
SELECT lives_ok($$ SELECT presence.join('tap-room', 'tap-user', 'tab', '{"cursor": 1}') $$,
				'the app role can call join()');
SELECT lives_ok($$ SELECT presence.set_meta('tap-room', 'tap-user', 'tab', '{"cursor": 2}') $$,
				'the app role can call set_meta()');
SELECT lives_ok($$ SELECT presence.typing('tap-room', 'tap-user') $$,
				'the app role can call typing()');
SELECT lives_ok($$ SELECT presence.broadcast('tap-room', '{"ping": 1}') $$,
				'the app role can call broadcast()');
SELECT is((SELECT array_agg(m.user_id) FROM presence.members('tap-room') m),
		  ARRAY['tap-user'], 'the app role sees the member through members()');
SELECT is(presence.room_count('tap-room'), 1, 'the app role can call room_count()');
SELECT is((SELECT array_agg(r) FROM presence.rooms('tap-user') r),
		  ARRAY['tap-room'], 'the app role can call rooms()');
SELECT is((SELECT array_agg(u) FROM presence.typing_users('tap-room') u),
		  ARRAY['tap-user'], 'the app role can call typing_users()');
SELECT is(presence.room_channel('tap-room'), 'presence:tap-room',
		  'the app role can call room_channel()');
SELECT lives_ok($$ SELECT * FROM presence.time_in_status('tap-user', now() - interval '1 hour') $$,
				'the app role can call time_in_status()');
SELECT lives_ok($$ SELECT presence.leave('tap-room', 'tap-user') $$,
				'the app role can call leave()');
SELECT throws_ok($$ SELECT * FROM presence.members $$, '42501', NULL,
				 'the app role cannot SELECT the presence.members table');
SELECT throws_ok($$ SELECT * FROM presence.typing $$, '42501', NULL,
				 'the app role cannot SELECT the presence.typing table');
SELECT throws_ok($$ INSERT INTO presence.typing VALUES ('r', 'u', now(), now()) $$,
				 '42501', NULL, 'the app role cannot INSERT into presence.typing');
SELECT throws_ok($$ DELETE FROM presence.members $$,
				 '42501', NULL, 'the app role cannot DELETE from presence.members');
SELECT throws_ok($$ SET presence.join_check = 'public.anything' $$, '42501', NULL,
				 'the app role cannot set presence.join_check');
SELECT throws_ok($$ SELECT * FROM presence.users $$, '42501', NULL,
				 'the app role cannot SELECT presence.users');
SELECT throws_ok($$ SELECT * FROM presence.sessions $$, '42501', NULL,
				 'the app role cannot SELECT presence.sessions');
SELECT throws_ok($$ SELECT * FROM presence.history $$, '42501', NULL,
				 'the app role cannot SELECT presence.history');
SELECT throws_ok($$ INSERT INTO presence.users (user_id, since) VALUES ('x', now()) $$,
				 '42501', NULL, 'the app role cannot INSERT into presence.users');
SELECT throws_ok($$ UPDATE presence.users SET status = 'busy' $$,
				 '42501', NULL, 'the app role cannot UPDATE presence.users');
SELECT throws_ok($$ DELETE FROM presence.sessions $$,
				 '42501', NULL, 'the app role cannot DELETE from presence.sessions');
SELECT throws_ok($$ SELECT nextval('presence.seq') $$,
				 '42501', NULL, 'the app role cannot use presence.seq');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
