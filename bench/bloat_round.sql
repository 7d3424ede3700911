-- one heartbeat per user per round, in order: client c of 8 sends for
-- users c+1, c+9, c+17, ...; n counts this client's calls (-D n=0)
\set uid (:n % (:users / 8)) * 8 + :client_id + 1
\set n :n + 1
SELECT presence.heartbeat('u' || :uid, 's1');
