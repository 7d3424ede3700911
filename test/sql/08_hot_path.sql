--
-- The hot path: a heartbeat that moves no deadline by more than the
-- granularity and changes no status writes nothing.
--
SELECT presence.heartbeat('alice', 'tab');
SELECT xmin AS session_xmin, ctid AS session_ctid FROM presence.sessions
 WHERE user_id = 'alice' \gset
SELECT xmin AS user_xmin FROM presence.users WHERE user_id = 'alice' \gset

-- No row version, and no transaction id (so no WAL for it either).
BEGIN;
SELECT presence.heartbeat('alice', 'tab');
SELECT presence.heartbeat('alice', 'tab', active => false);
SELECT presence.heartbeat('alice', 'tab', meta => NULL);
SELECT pg_current_xact_id_if_assigned() IS NULL AS no_xid;
COMMIT;
SELECT xmin = :'session_xmin' AND ctid = :'session_ctid' AS session_untouched
  FROM presence.sessions WHERE user_id = 'alice';
SELECT xmin = :'user_xmin' AS user_untouched FROM presence.users WHERE user_id = 'alice';

-- Moving a deadline by more than the granularity is written.
SET presence.granularity = 0;
BEGIN;
SELECT presence.heartbeat('alice', 'tab');
SELECT pg_current_xact_id_if_assigned() IS NOT NULL AS has_xid;
COMMIT;
SELECT xmin <> :'session_xmin' AS session_written
  FROM presence.sessions WHERE user_id = 'alice';
RESET presence.granularity;

-- So is a new ttl, changed metadata, or an idle session becoming active.
SELECT xmin AS x FROM presence.sessions WHERE user_id = 'alice' \gset
SELECT presence.heartbeat('alice', 'tab', ttl => '10 min');
SELECT xmin <> :'x' AS ttl_written FROM presence.sessions WHERE user_id = 'alice';
SELECT xmin AS x FROM presence.sessions WHERE user_id = 'alice' \gset
SELECT presence.heartbeat('alice', 'tab', ttl => '10 min', meta => '{"page": 2}');
SELECT xmin <> :'x' AS meta_written FROM presence.sessions WHERE user_id = 'alice';
SELECT xmin AS x FROM presence.sessions WHERE user_id = 'alice' \gset
SELECT presence.heartbeat('alice', 'tab', ttl => '10 min', meta => '{"page": 2}');
SELECT xmin = :'x' AS same_meta_not_written FROM presence.sessions WHERE user_id = 'alice';
SELECT presence.heartbeat('alice', 'tab', ttl => '10 min', away_after => '0');
SELECT presence.heartbeat('alice', 'tab', ttl => '10 min');
SELECT user_id, status, previous, reason FROM t_events(now());

SELECT presence.disconnect('alice');
SELECT count(*) >= 0 FROM t_events(now());

-- The probe sees earlier changes of the same statement: a session ended
-- by disconnect() is started again by a heartbeat in the same query.
SELECT presence.heartbeat('alice', 'tab');
SELECT presence.disconnect('alice', 'tab') AS after_disconnect,
       presence.heartbeat('alice', 'tab') AS after_heartbeat;
SELECT count(*) AS sessions FROM presence.sessions WHERE user_id = 'alice';
SELECT presence.disconnect('alice');
SELECT count(*) >= 0 FROM t_events(now());

-- sweep() settles more due users than one batch (presence.batch_size,
-- 1000): each batch must see what the one before it did.
SET statement_timeout = '60s';
SELECT count(presence.heartbeat('batch' || i, 'tab', true, NULL, '1 min'))
  FROM generate_series(1, 1500) i;
SELECT presence.sweep(now() + interval '2 min') AS events;
SELECT count(*) AS left_sessions FROM presence.sessions WHERE user_id LIKE 'batch%';
RESET statement_timeout;
SELECT count(*) >= 0 FROM t_events(now());
