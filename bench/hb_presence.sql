-- presence.heartbeat of an existing, active session whose status does not
-- change: a random one of :users users (session 's1')
\set uid random(1, :users)
SELECT presence.heartbeat('u' || :uid, 's1');
