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
