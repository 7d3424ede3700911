-- 04_settings.sql: every presence.* setting exists with its documented
-- default, unit, type and context.  The test cluster runs with
-- presence.startup_grace = 0, so defaults are read from boot_val.
BEGIN;
SELECT plan(21);
SET LOCAL search_path = public, pg_catalog;

SELECT results_eq(
	$$ SELECT name COLLATE "default", vartype, unit, boot_val, context
		 FROM pg_settings WHERE name LIKE 'presence.%' ORDER BY name $$,
	$$ VALUES ('presence.away_after', 'integer', 'ms', '300000', 'user'),
			  ('presence.batch_size', 'integer', NULL, '1000', 'sighup'),
			  ('presence.channel', 'string', NULL, 'presence', 'superuser'),
			  ('presence.granularity', 'integer', 'ms', '60000', 'user'),
			  ('presence.history_retention', 'integer', 's', '2592000', 'superuser'),
			  ('presence.join_check', 'string', NULL, '', 'superuser'),
			  ('presence.max_databases', 'integer', NULL, '64', 'postmaster'),
			  ('presence.max_sessions', 'integer', NULL, '100000', 'postmaster'),
			  ('presence.meta_interval', 'integer', 'ms', '100', 'user'),
			  ('presence.session_ttl', 'integer', 'ms', '60000', 'user'),
			  ('presence.startup_grace', 'integer', 'ms', '30000', 'sighup'),
			  ('presence.typing_timeout', 'integer', 'ms', '5000', 'user') $$,
	'the presence.* settings are exactly the documented ones (name, type, unit, default, context)');

-- Defaults as a user sees them (nothing overrides these in the test cluster).
SELECT is(current_setting('presence.away_after'), '5min', 'presence.away_after defaults to 5min');
SELECT is(current_setting('presence.session_ttl'), '1min', 'presence.session_ttl defaults to 60s');
SELECT is(current_setting('presence.granularity'), '1min', 'presence.granularity defaults to 1min');
SELECT is(current_setting('presence.channel'), 'presence', 'presence.channel defaults to ''presence''');
SELECT is(current_setting('presence.history_retention'), '30d', 'presence.history_retention defaults to 30d');
SELECT is(current_setting('presence.batch_size'), '1000', 'presence.batch_size defaults to 1000');
SELECT is(current_setting('presence.max_databases'), '64', 'presence.max_databases defaults to 64');
SELECT is(current_setting('presence.max_sessions'), '100000', 'presence.max_sessions defaults to 100000');
SELECT cmp_ok((SELECT shared_bytes::numeric / max_sessions FROM presence.cache_status()), '<', 256::numeric,
			  'the session cache takes under 256 bytes of shared memory per session');
SELECT is((SELECT boot_val || unit FROM pg_settings WHERE name = 'presence.startup_grace'),
		  '30000ms', 'presence.startup_grace defaults to 30s');
SELECT is(current_setting('presence.startup_grace'), '0', 'this cluster runs with presence.startup_grace = 0');
SELECT is(current_setting('presence.typing_timeout'), '5s', 'presence.typing_timeout defaults to 5s');
SELECT is(current_setting('presence.meta_interval'), '100ms', 'presence.meta_interval defaults to 100ms');
SELECT is(current_setting('presence.join_check'), '', 'presence.join_check defaults to empty (anyone may join)');
SELECT results_eq(
	$$ SELECT name COLLATE "default", min_val, max_val FROM pg_settings
		WHERE name IN ('presence.typing_timeout', 'presence.meta_interval') ORDER BY name $$,
	$$ VALUES ('presence.meta_interval', '0', '2147483647'),
			  ('presence.typing_timeout', '1', '2147483647') $$,
	'typing_timeout is at least 1 ms; meta_interval may be 0 (no throttling)');

-- Who may set the room settings: the timers anyone, join_check a superuser.
CREATE ROLE tap_settings_user;
SET LOCAL ROLE tap_settings_user;
SELECT lives_ok($$ SET LOCAL presence.typing_timeout = '2s' $$,
				'a plain role may set presence.typing_timeout');
SELECT lives_ok($$ SET LOCAL presence.meta_interval = '1s' $$,
				'a plain role may set presence.meta_interval');
SELECT throws_ok($$ SET LOCAL presence.join_check = 'public.f' $$, '42501', NULL,
				 'a plain role may not set presence.join_check');
RESET ROLE;
SELECT lives_ok($$ SET LOCAL presence.join_check = 'public.f' $$,
				'a superuser may set presence.join_check');
SELECT throws_ok($$ SET LOCAL presence.typing_timeout = 0 $$, '22023', NULL,
				 'presence.typing_timeout = 0 is refused');

SELECT * FROM finish();
ROLLBACK;
