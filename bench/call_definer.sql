-- breakdown: the same C function, SECURITY DEFINER with SET search_path
-- (the call overhead of every presence function)
\set uid random(1, :users)
SELECT bench.call_definer('u' || :uid, 's1');
