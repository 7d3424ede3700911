-- two status-changing calls, each its own transaction announcing one event:
-- connect (offline -> online) then disconnect (online -> offline).  Each
-- client owns the user ids congruent to its client_id mod 8 (at most 8
-- clients), so no call of another client can make a call announce nothing.
\set uid random(1, :users / 8) * 8 + :client_id
SELECT presence.heartbeat('c' || :uid, 's1');
SELECT presence.disconnect('c' || :uid, 's1');
