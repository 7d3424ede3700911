--
-- An application role with exactly the documented grants uses the whole
-- API, each call committing (events are written at commit, after the
-- SECURITY DEFINER functions have returned), but cannot touch the tables.
--
CREATE ROLE presence_app;
GRANT USAGE ON SCHEMA presence TO presence_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA presence TO presence_app;
CREATE ROLE presence_nobody;

SET ROLE presence_app;
SELECT presence.heartbeat('app_alice', 'tab');
SELECT presence.set_status('app_alice', 'busy', 'Working', now() + interval '1 hour');
SELECT presence.join('app_room', 'app_alice', 'tab', '{"cursor": 1}');
SELECT presence.join('app_room', 'app_bob', 'phone');
SELECT presence.set_meta('app_room', 'app_bob', 'phone', '{"cursor": 2}');
SELECT presence.typing('app_room', 'app_bob');
SELECT presence.typing('app_room', 'app_bob', false);
SELECT presence.broadcast('app_room', '{"ping": true}');
SELECT presence.leave('app_room', 'app_bob');
SELECT presence.disconnect('app_bob');
SELECT presence.sweep(now() + interval '2 hours') > 0 AS swept;
SELECT user_id, status, reason FROM presence.changes(0, 100000)
 WHERE user_id LIKE 'app\_%' ORDER BY seq;
SELECT user_id, status, sessions FROM presence.get('app_alice');
SELECT count(*) FROM presence.members('app_room');
SELECT count(*) FROM presence.counts();
SELECT count(*) >= 0 AS ok FROM presence.worker_status();
SELECT status, duration > '0' AS some FROM presence.time_in_status('app_alice', now() - interval '1 min');

-- but not the tables or the sequence
SELECT count(*) FROM presence.users;
INSERT INTO presence.history VALUES (0, 'x', 'online', 'offline', 'manual', NULL, NULL, now());
UPDATE presence.sessions SET end_at = 'infinity';
DELETE FROM presence.members;
SELECT nextval('presence.seq');
RESET ROLE;

-- and a role without the grants can call nothing
SET ROLE presence_nobody;
SELECT presence.heartbeat('app_mallory');
SELECT * FROM presence.get('app_alice');
RESET ROLE;
SELECT count(*) FROM presence.users WHERE user_id = 'app_mallory';

DROP OWNED BY presence_app, presence_nobody;
DROP ROLE presence_app, presence_nobody;
