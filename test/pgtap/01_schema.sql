-- 01_schema.sql: the schema objects of presence--1.0.sql exist as declared:
-- the extension, the status enum, the tables (users, sessions, history and
-- the room tables members and typing) with their columns, keys, checks and
-- indexes, the sequence, and what pg_dump is told to dump.
BEGIN;
SELECT plan(42);
SET LOCAL search_path = public, pg_catalog;

-- The extension and its schema.
SELECT has_extension('presence', 'extension presence is installed');
SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'presence'),
		  '1.0', 'extension version is 1.0');
SELECT is((SELECT extnamespace::regnamespace::text FROM pg_extension
			WHERE extname = 'presence'),
		  'presence', 'extension lives in schema presence');
SELECT has_schema('presence', 'schema presence exists');

-- The status type, in sort order.
SELECT has_enum('presence', 'status', 'enum presence.status exists');
SELECT enum_has_labels('presence', 'status',
					   ARRAY['online', 'away', 'busy', 'offline'],
					   'presence.status labels are online, away, busy, offline in that order');

-- Exactly these tables and sequences.
SELECT tables_are('presence', ARRAY['users', 'sessions', 'history', 'members', 'typing'],
				  'schema presence has tables users, sessions, history, members, typing');
SELECT sequences_are('presence', ARRAY['seq'], 'schema presence has sequence seq');
SELECT has_sequence('presence', 'seq', 'sequence presence.seq exists');

-- Columns: name, type, NOT NULL, in order.
SELECT results_eq(
	$$ SELECT a.attname::text COLLATE "default", format_type(a.atttypid, a.atttypmod), a.attnotnull
		 FROM pg_attribute a
		WHERE a.attrelid = 'presence.users'::regclass AND a.attnum > 0
		  AND NOT a.attisdropped ORDER BY a.attnum $$,
	$$ VALUES ('user_id', 'text', true),
			  ('status', 'presence.status', true),
			  ('message', 'text', false),
			  ('since', 'timestamp with time zone', true),
			  ('last_active', 'timestamp with time zone', false),
			  ('last_seen', 'timestamp with time zone', false),
			  ('manual', 'text', false),
			  ('manual_message', 'text', false),
			  ('manual_until', 'timestamp with time zone', false) $$,
	'presence.users has the documented columns');
SELECT results_eq(
	$$ SELECT a.attname::text COLLATE "default", format_type(a.atttypid, a.atttypmod), a.attnotnull
		 FROM pg_attribute a
		WHERE a.attrelid = 'presence.sessions'::regclass AND a.attnum > 0
		  AND NOT a.attisdropped ORDER BY a.attnum $$,
	$$ VALUES ('user_id', 'text', true),
			  ('session_id', 'text', true),
			  ('started_at', 'timestamp with time zone', true),
			  ('last_seen', 'timestamp with time zone', true),
			  ('last_active', 'timestamp with time zone', false),
			  ('away_at', 'timestamp with time zone', true),
			  ('end_at', 'timestamp with time zone', true),
			  ('due_at', 'timestamp with time zone', true),
			  ('meta', 'jsonb', false) $$,
	'presence.sessions has the documented columns');
SELECT results_eq(
	$$ SELECT a.attname::text COLLATE "default", format_type(a.atttypid, a.atttypmod), a.attnotnull
		 FROM pg_attribute a
		WHERE a.attrelid = 'presence.history'::regclass AND a.attnum > 0
		  AND NOT a.attisdropped ORDER BY a.attnum $$,
	$$ VALUES ('seq', 'bigint', true),
			  ('user_id', 'text', true),
			  ('status', 'presence.status', true),
			  ('previous', 'presence.status', true),
			  ('reason', 'text', true),
			  ('message', 'text', false),
			  ('last_active', 'timestamp with time zone', false),
			  ('at', 'timestamp with time zone', true) $$,
	'presence.history has the documented columns');
SELECT results_eq(
	$$ SELECT a.attname::text COLLATE "default", format_type(a.atttypid, a.atttypmod), a.attnotnull
		 FROM pg_attribute a
		WHERE a.attrelid = 'presence.members'::regclass AND a.attnum > 0
		  AND NOT a.attisdropped ORDER BY a.attnum $$,
	$$ VALUES ('room', 'text', true),
			  ('user_id', 'text', true),
			  ('session_id', 'text', true),
			  ('meta', 'jsonb', false),
			  ('joined_at', 'timestamp with time zone', true),
			  ('meta_sent_at', 'timestamp with time zone', true),
			  ('meta_due_at', 'timestamp with time zone', false) $$,
	'presence.members has the documented columns');
SELECT results_eq(
	$$ SELECT a.attname::text COLLATE "default", format_type(a.atttypid, a.atttypmod), a.attnotnull
		 FROM pg_attribute a
		WHERE a.attrelid = 'presence.typing'::regclass AND a.attnum > 0
		  AND NOT a.attisdropped ORDER BY a.attnum $$,
	$$ VALUES ('room', 'text', true),
			  ('user_id', 'text', true),
			  ('started_at', 'timestamp with time zone', true),
			  ('until', 'timestamp with time zone', true) $$,
	'presence.typing has the documented columns');
SELECT is((SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
			 JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
			WHERE d.adrelid = 'presence.users'::regclass AND a.attname = 'status'),
		  '''offline''::presence.status', 'users.status defaults to offline');

-- Keys and checks.
SELECT col_is_pk('presence', 'users', 'user_id', 'users is keyed by user_id');
SELECT col_is_pk('presence', 'sessions', ARRAY['user_id', 'session_id'],
				 'sessions is keyed by (user_id, session_id)');
SELECT col_is_pk('presence', 'history', 'seq', 'history is keyed by seq');
SELECT col_is_pk('presence', 'members', ARRAY['room', 'user_id', 'session_id'],
				 'members is keyed by (room, user_id, session_id)');
SELECT col_is_pk('presence', 'typing', ARRAY['room', 'user_id'],
				 'typing is keyed by (room, user_id)');
SELECT is_empty(
	$$ SELECT conrelid::regclass::text, conname FROM pg_constraint
		WHERE connamespace = 'presence'::regnamespace AND contype = 'f' $$,
	'no foreign keys between the tables: pg_restore -j loads them in any order');
SELECT col_has_check('presence', 'users', 'manual', 'users.manual has a check');
SELECT throws_ok(
	$$ INSERT INTO presence.users (user_id, since, manual)
	   VALUES ('tap-check', now(), 'online') $$,
	'23514', NULL, 'users.manual rejects values other than away, busy, invisible');
SELECT lives_ok(
	$$ INSERT INTO presence.users (user_id, since, manual)
	   VALUES ('tap-a', now(), 'away'), ('tap-b', now(), 'busy'),
			  ('tap-i', now(), 'invisible'), ('tap-n', now(), NULL) $$,
	'users.manual accepts away, busy, invisible and NULL');

-- Indexes.
SELECT indexes_are('presence', 'users',
				   ARRAY['users_pkey', 'users_manual_until_idx', 'users_status_idx'],
				   'users has exactly its documented indexes');
SELECT indexes_are('presence', 'sessions',
				   ARRAY['sessions_pkey', 'sessions_due_at_idx'],
				   'sessions has exactly its documented indexes');
SELECT indexes_are('presence', 'history',
				   ARRAY['history_pkey', 'history_user_idx', 'history_at_idx'],
				   'history has exactly its documented indexes');
SELECT indexes_are('presence', 'members',
				   ARRAY['members_pkey', 'members_session_idx', 'members_meta_due_idx'],
				   'members has exactly its documented indexes');
SELECT indexes_are('presence', 'typing',
				   ARRAY['typing_pkey', 'typing_until_idx'],
				   'typing has exactly its documented indexes');
SELECT has_index('presence', 'members', 'members_session_idx', ARRAY['user_id', 'session_id'],
				 'members_session_idx is on (user_id, session_id)');
SELECT has_index('presence', 'members', 'members_meta_due_idx', 'meta_due_at',
				 'members_meta_due_idx is on meta_due_at');
SELECT is((SELECT pg_get_expr(indpred, indrelid) FROM pg_index
			WHERE indexrelid = 'presence.members_meta_due_idx'::regclass),
		  '(meta_due_at IS NOT NULL)', 'members_meta_due_idx is partial: meta_due_at IS NOT NULL');
SELECT has_index('presence', 'typing', 'typing_until_idx', 'until',
				 'typing_until_idx is on until');
SELECT has_index('presence', 'users', 'users_manual_until_idx', 'manual_until',
				 'users_manual_until_idx is on manual_until');
SELECT has_index('presence', 'users', 'users_status_idx', 'status',
				 'users_status_idx is on status');
SELECT has_index('presence', 'sessions', 'sessions_due_at_idx', 'due_at',
				 'sessions_due_at_idx is on due_at');
SELECT has_index('presence', 'history', 'history_user_idx', ARRAY['user_id', 'seq'],
				 'history_user_idx is on (user_id, seq)');
SELECT has_index('presence', 'history', 'history_at_idx', 'at',
				 'history_at_idx is on at');
SELECT is((SELECT pg_get_expr(indpred, indrelid) FROM pg_index
			WHERE indexrelid = 'presence.users_manual_until_idx'::regclass),
		  '(manual_until IS NOT NULL)', 'users_manual_until_idx is partial: manual_until IS NOT NULL');
SELECT is((SELECT pg_get_expr(indpred, indrelid) FROM pg_index
			WHERE indexrelid = 'presence.users_status_idx'::regclass),
		  '(status <> ''offline''::presence.status)', 'users_status_idx is partial: status <> offline');

-- pg_dump keeps state and history; every object belongs to the extension.
SELECT is((SELECT array_agg(c::regclass::text ORDER BY c::regclass::text)
			 FROM pg_extension, unnest(extconfig) AS c
			WHERE extname = 'presence'),
		  ARRAY['presence.history', 'presence.members', 'presence.seq',
				'presence.sessions', 'presence.typing', 'presence.users'],
		  'users, sessions, history, members, typing and seq are extension configuration (dumped)');
SELECT is_empty(
	$$ SELECT c.oid::regclass::text FROM pg_class c
		WHERE c.relnamespace = 'presence'::regnamespace
		  AND c.relkind IN ('r', 'S')
		  AND NOT EXISTS (SELECT FROM pg_depend d
						   WHERE d.classid = 'pg_class'::regclass
							 AND d.objid = c.oid AND d.deptype = 'e')
	   UNION ALL
	   SELECT p.oid::regprocedure::text FROM pg_proc p
		WHERE p.pronamespace = 'presence'::regnamespace
		  AND NOT EXISTS (SELECT FROM pg_depend d
						   WHERE d.classid = 'pg_proc'::regclass
							 AND d.objid = p.oid AND d.deptype = 'e') $$,
	'every table, sequence and function in schema presence belongs to the extension');

SELECT * FROM finish();
ROLLBACK;
