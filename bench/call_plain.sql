-- breakdown: a plain C function call with the heartbeat's two arguments
\set uid random(1, :users)
SELECT bench.call_plain('u' || :uid, 's1');
