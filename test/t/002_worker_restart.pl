
# 002_worker_restart.pl: the worker survives what can happen to it.
#
#  - pg_terminate_backend(worker): the launcher starts a new worker (another
#    pid) within seconds, and sessions that fell due while no worker ran are
#    each announced exactly once, by the new worker, dated at their deadlines;
#  - SIGKILL of a worker: the postmaster's crash restart brings back the
#    launcher and a worker, the tables are consistent (history chains, users
#    versus sessions), and what fell due is announced once;
#  - SIGHUP: presence.channel changed in postgresql.conf and reloaded sends
#    the worker's events on the new channel only;
#  - errors: a transition that cannot commit (a CHECK constraint a superuser
#    added to presence.history) is logged and counted in worker_status();
#    when it is one user's, the users due with it still go through and that
#    user is set aside and retried later (meanwhile the worker sleeps
#    rather than spins); when it is everyone's, the worker
#    backs off and retries; the same worker process runs throughout (no
#    crash, no crash loop), and once the constraint is dropped every
#    transition goes through, announced once;
#  - presence.startup_grace = 3s and a restart: a session already past its
#    ttl is not ended before the grace is over and is ended (once, dated at
#    its deadline) after it; a user whose client heartbeats during the grace
#    stays online without an offline flicker.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use PresenceTAP;

my $node = presence_node('restart', conf => "restart_after_crash = on\n");
$node->safe_psql('postgres', 'CREATE EXTENSION presence');

my $dbh = db_connect($node);
ok(defined wait_until(30, sub { defined worker_pid($node, 'postgres') }),
	'worker started');
my $w1 = worker_pid($node, 'postgres');
my $launcher1 = launcher_pid($node);

sub same_time
{
	my ($x, $y) = @_;
	return query_value($dbh, 'SELECT ?::timestamptz = ?::timestamptz', $x, $y);
}

# The number of times a worker started, from the log.
sub worker_starts
{
	my $log = slurp_file($node->logfile);
	my @m = $log =~ /presence worker started for database/g;
	return scalar @m;
}

# Events about $user, as "previous->status (reason)" strings.
sub summary
{
	return join(' ; ',
		map { "$_->{ev}{previous}->$_->{ev}{status} ($_->{ev}{reason})" } @_);
}

# Tables are consistent: every user's history is a chain (each row's
# previous is the status before it), each user's last event is their
# status, and no visible user is without a session.
sub check_consistency
{
	my ($what) = @_;
	is( query_value($dbh, q{
			SELECT count(*) FROM (
				SELECT previous, lag(status) OVER (PARTITION BY user_id
												   ORDER BY seq) AS before
				  FROM presence.history) h
			 WHERE before IS NOT NULL AND before <> previous}),
		0, "$what: each user's history is an unbroken chain");
	is( query_value($dbh, q{
			SELECT count(*) FROM presence.users u
			 WHERE u.status <> (SELECT h.status FROM presence.history h
								 WHERE h.user_id = u.user_id
								 ORDER BY h.seq DESC LIMIT 1)}),
		0, "$what: each user's status is their last announced one");
	is( query_value($dbh, q{
			SELECT count(*) FROM presence.users u
			 WHERE u.status <> 'offline'
			   AND NOT EXISTS (SELECT FROM presence.sessions s
								WHERE s.user_id = u.user_id)}),
		0, "$what: nobody is shown present without a session");
	ok( query_value($dbh, q{
			SELECT coalesce(max(seq), 0) <= (SELECT last_value FROM presence.seq)
			  FROM presence.history}),
		"$what: no history seq beyond the sequence");
}

# ---------------------------------------------------------------------------
# pg_terminate_backend(): restarted, and catches up exactly once
# ---------------------------------------------------------------------------

my $listener = PresenceTAP::Listener->new($node, 'postgres');

ok(query_value($dbh, 'SELECT pg_terminate_backend(?, 10000)', $w1),
	'pg_terminate_backend(worker) returns once the worker is gone');
my $t_term = time;

# Sessions that end 100 ms from now: the launcher waits at least a second
# before restarting a worker, so they fall due while none runs.
$dbh->do(q{SELECT presence.heartbeat(u, 's1', ttl => '100 ms', away_after => '1 h')
			 FROM unnest(ARRAY['d1', 'd2', 'd3']) AS u});
my $d_end = query_value($dbh,
	q{SELECT max(end_at)::text FROM presence.sessions
	   WHERE user_id IN ('d1', 'd2', 'd3')});

my $back = wait_until(30,
	sub {
		my $p = worker_pid($node, 'postgres');
		defined $p && $p != $w1;
	});
ok(defined $back, 'a new worker starts after pg_terminate_backend()');
note sprintf('new worker %.2f s after the termination', time - $t_term);
my $w2 = worker_pid($node, 'postgres');
isnt($w2, $w1, 'the new worker has another pid');
is(launcher_pid($node), $launcher1, 'the launcher itself was not restarted');

foreach my $u (qw(d1 d2 d3))
{
	ok(scalar $listener->wait_for_user_status($u, 'offline', 30),
		"$u is announced offline after the worker came back");
}
$listener->drain(1.5);

my $w2_started = query_value($dbh,
	'SELECT started_at::text FROM presence.worker_status()');
SKIP:
{
	skip 'the sessions did not fall due before the new worker started', 1
	  unless query_value($dbh, 'SELECT ?::timestamptz < ?::timestamptz',
		$d_end, $w2_started);
	pass("the sessions fell due ($d_end) while no worker ran "
		  . "(the new one started $w2_started)");
}
foreach my $u (qw(d1 d2 d3))
{
	my @ev = $listener->for_user($u);
	is(summary(@ev), 'offline->online (connect) ; online->offline (timeout)',
		"$u: connect, then timeout exactly once");
	is($ev[-1]{pid}, $w2, "$u: the timeout was sent by the new worker");
	my $end = query_value($dbh,
		q{SELECT at::text FROM presence.history
		   WHERE user_id = ? AND reason = 'timeout'}, $u);
	ok(same_time($ev[-1]{ev}{at}, $end), "$u: history has the same timeout");
	is( query_value($dbh,
			q{SELECT count(*) FROM presence.history WHERE user_id = ?}, $u),
		2, "$u: two history rows");
}
is(query_value($dbh, 'SELECT transitions FROM presence.worker_status()'),
	3, 'the new worker counts its own 3 transitions');

# ---------------------------------------------------------------------------
# SIGKILL: crash restart of the whole server
# ---------------------------------------------------------------------------

# k_live stays online through the crash; k_due falls due while the server
# restarts.
$dbh->do(q{SELECT presence.heartbeat('k_live', 's1', ttl => '1 h', away_after => '1 h')});
$dbh->do(q{SELECT presence.heartbeat('k_due', 's1', ttl => '1 s', away_after => '1 h')});
my $k_end = query_value($dbh,
	q{SELECT end_at::text FROM presence.sessions WHERE user_id = 'k_due'});
my $log_pos = log_position($node);
$listener->disconnect;
$dbh->disconnect;

ok(kill('KILL', $w2), 'SIGKILL sent to the worker');
my $t_kill = time;

$back = wait_until(60,
	sub {
		my $p = worker_pid($node, 'postgres');
		defined $p && $p != $w2;
	},
	0.2);
ok(defined $back, 'a worker runs again after the crash restart');
note sprintf('worker back %.2f s after SIGKILL', time - $t_kill);
my $w3 = worker_pid($node, 'postgres');
my $crash_log = log_since($node, $log_pos);
like($crash_log, qr/terminated by signal 9/,
	'the postmaster saw the worker die by SIGKILL');
like($crash_log, qr/all server processes terminated; reinitializing/,
	'the postmaster reinitialized (crash restart)');
isnt(launcher_pid($node), $launcher1, 'the launcher was restarted too');

$dbh = db_connect($node);
ok( defined wait_until(30,
		sub {
			query_value($dbh,
				q{SELECT count(*) FROM presence.history
				   WHERE user_id = 'k_due' AND reason = 'timeout'}) > 0;
		}),
	'k_due, due during the crash, is ended after it');
is( query_value($dbh,
		q{SELECT string_agg(reason, ',' ORDER BY seq) FROM presence.history
		   WHERE user_id = 'k_due'}),
	'connect,timeout', 'k_due: announced once');
ok( same_time(
		query_value($dbh,
			q{SELECT at::text FROM presence.history
			   WHERE user_id = 'k_due' AND reason = 'timeout'}),
		$k_end),
	'k_due: dated at its deadline');
is(query_value($dbh, q{SELECT status FROM presence.get('k_live')}),
	'online', 'k_live is still online');
is( query_value($dbh,
		q{SELECT count(*) FROM presence.sessions WHERE user_id = 'k_live'}),
	1, 'k_live still has its session');
check_consistency('after the crash');
is(query_value($dbh, 'SELECT pid FROM presence.worker_status()'),
	$w3, 'worker_status() shows the new worker');

# ---------------------------------------------------------------------------
# SIGHUP: a new presence.channel
# ---------------------------------------------------------------------------

$listener = PresenceTAP::Listener->new($node, 'postgres', 'presence', 'presence_alt');
$node->append_conf('postgresql.conf', "presence.channel = 'presence_alt'");
$node->reload;
ok( defined wait_until(30,
		sub {
			$node->safe_psql('postgres', 'SHOW presence.channel') eq
			  'presence_alt';
		}),
	'presence.channel is presence_alt after the reload');

my $dbh2 = db_connect($node);
$dbh2->do(q{SELECT presence.heartbeat('h1', 's1', ttl => '1 s', away_after => '1 h')});
my @got = $listener->wait_for_user_status('h1', 'offline', 30);
ok(@got, 'h1 is announced offline');
$listener->drain(1);
my @h1 = $listener->for_user('h1');
is(join(',', map { $_->{channel} } @h1),
	'presence_alt,presence_alt', 'both of h1\'s events are on presence_alt');
is($h1[-1]{pid}, $w3, 'the worker sent the timeout on the new channel');
is(scalar(grep { $_->{channel} eq 'presence' } $listener->all),
	0, 'nothing was sent on the old channel');
$dbh2->disconnect;
$listener->disconnect;

$node->append_conf('postgresql.conf', "presence.channel = 'presence'");
$node->reload;
ok( defined wait_until(30,
		sub {
			$node->safe_psql('postgres', 'SHOW presence.channel') eq 'presence';
		}),
	'presence.channel is back to presence');

# ---------------------------------------------------------------------------
# Errors: a transition that cannot commit
# ---------------------------------------------------------------------------
#
# Two kinds of failure, both caused by a superuser's CHECK constraint on
# presence.history that the worker's commit violates:
#  - one user's (err1): the users due with it (ok1) must still go through,
#    err1 is set aside and retried later, and goes through once the
#    constraint is dropped;
#  - everyone's (sys1..sys3, all failing): the worker backs off and retries,
#    and everything goes through soon after the constraint is dropped.
# Throughout, the same worker process runs: nothing crashes or loops.

my $MAX_LATENCY = 10;    # generous: the first failure costs a 1 s backoff
$listener = PresenceTAP::Listener->new($node, 'postgres');
$dbh->do(q{SELECT presence.heartbeat(u, 's1', ttl => '1 s', away_after => '1 h')
			 FROM unnest(ARRAY['err1', 'ok1']) AS u});
my $err_end = query_value($dbh,
	q{SELECT end_at::text FROM presence.sessions WHERE user_id = 'err1'});
$dbh->do(q{ALTER TABLE presence.history ADD CONSTRAINT history_no_err1
	CHECK (user_id <> 'err1') NOT VALID});
my $starts_before = worker_starts();
$log_pos = log_position($node);

@got = $listener->wait_for_user_status('ok1', 'offline', 30);
ok(@got, 'ok1, due with err1, is ended although err1 fails');
if (@got)
{
	my $latency = $got[0]{received} - epoch_of($dbh, $got[0]{ev}{at});
	note sprintf('ok1 ended %.3f s after its deadline', $latency);
	cmp_ok($latency, '<', $MAX_LATENCY,
		"... within $MAX_LATENCY s of its deadline");
	is($got[0]{pid}, $w3, '... by the worker');
}
ok( defined wait_until(30,
		sub { query_value($dbh, 'SELECT errors >= 1 FROM presence.worker_status()') },
		0.1),
	'worker_status().errors counts the failure');
my $ws = query_row($dbh, 'SELECT * FROM presence.worker_status()');
like($ws->{last_error}, qr/history_no_err1/,
	'worker_status().last_error tells why');
is($ws->{pid}, $w3, 'the same worker process keeps running');
note explain $ws;
ok( defined wait_until(30,
		sub { log_since($node, $log_pos) =~ /skipping user "err1"/ }),
	'the worker logs that it sets err1 aside');
my $log = log_since($node, $log_pos);
like($log,
	qr/ERROR:  new row for relation "history" violates check constraint "history_no_err1"/,
	'the error is logged');
unlike($log, qr/skipping user "ok1"/, 'ok1 was not set aside');
is(query_value($dbh, q{SELECT status FROM presence.get('err1')}),
	'online', 'err1 is still online');

# While err1 is set aside and nothing else is due, the worker has nothing
# to do and should sleep: count its sweeps (each sets last_sweep) over 2 s.
my %sweeps;
my $until = time + 2;
while (time < $until)
{
	$sweeps{ query_value($dbh, 'SELECT last_sweep::text FROM presence.worker_status()')
		  // '' } = 1;
	Time::HiRes::usleep(20_000);
}
my $next_wake_in = query_value($dbh,
	q{SELECT extract(epoch FROM next_wake - clock_timestamp())::float8
		FROM presence.worker_status()});
note sprintf('while err1 is set aside: %d sweeps in 2 s; next_wake is %s s away',
	scalar(keys %sweeps), $next_wake_in // 'NULL');
cmp_ok(scalar(keys %sweeps), '<=', 3,
	'the worker does not spin while the only due user is set aside');

$dbh->do('ALTER TABLE presence.history DROP CONSTRAINT history_no_err1');
my $t_drop = time;

# While err1 waits for its retry: a failure that hits every due user.
$dbh->do(q{SELECT presence.heartbeat(u, 's1', ttl => '1 s', away_after => '1 h')
			 FROM unnest(ARRAY['sys1', 'sys2', 'sys3']) AS u});
$dbh->do(q{ALTER TABLE presence.history ADD CONSTRAINT history_no_sys
	CHECK (user_id !~ '^sys') NOT VALID});
my $errors_before = query_value($dbh, 'SELECT errors FROM presence.worker_status()');
ok( defined wait_until(30,
		sub {
			query_value($dbh, 'SELECT errors >= ? + 4 FROM presence.worker_status()',
				$errors_before);
		},
		0.1),
	'every user failing: the worker keeps retrying');
$ws = query_row($dbh, 'SELECT * FROM presence.worker_status()');
like($ws->{last_error}, qr/history_no_sys/, 'last_error tells why');
is($ws->{pid}, $w3, 'still the same worker process');
is( query_value($dbh,
		q{SELECT count(*) FROM presence.users WHERE user_id ~ '^sys' AND status = 'online'}),
	3, 'sys1..sys3 are still online');
$dbh->do('ALTER TABLE presence.history DROP CONSTRAINT history_no_sys');
my $t_drop_sys = time;
foreach my $u (qw(sys1 sys2 sys3))
{
	ok(scalar $listener->wait_for_user_status($u, 'offline', 60),
		"$u is ended once the constraint is gone");
}
note sprintf('sys1..sys3 ended %.2f s after their constraint was dropped',
	time - $t_drop_sys);
unlike(log_since($node, $log_pos), qr/skipping user "sys/,
	'a failure of everyone sets nobody aside');

# err1 is retried after being set aside for a while.
@got = $listener->wait_for_user_status('err1', 'offline', 120 - (time - $t_drop));
ok(@got, 'once its constraint is gone, err1 is ended too');
note sprintf('err1 ended %.2f s after its constraint was dropped', time - $t_drop);
$listener->drain(1);
foreach my $u (qw(err1 ok1 sys1 sys2 sys3))
{
	is(summary($listener->for_user($u)),
		'offline->online (connect) ; online->offline (timeout)',
		"$u: connect, then one timeout event, no duplicate");
}
if (@got)
{
	ok(same_time($got[0]{ev}{at}, $err_end), 'err1: dated at its deadline');
	is($got[0]{pid}, $w3, 'err1: sent by the worker that had the errors');
}
is(worker_pid($node, 'postgres'), $w3, 'still the same worker');
is(worker_starts(), $starts_before, 'no worker was started meanwhile (no crash loop)');
my $errors = query_value($dbh, 'SELECT errors FROM presence.worker_status()');
cmp_ok($errors, '<=', 30, "errors = $errors: retries are spaced out");
unlike(log_since($node, $log_pos),
	qr/background worker "presence worker" \(PID \d+\) (exited|was terminated)/,
	'no process died');
check_consistency('after the errors');
$listener->disconnect;

# ---------------------------------------------------------------------------
# presence.startup_grace
# ---------------------------------------------------------------------------
#
# g_stale and g_back have sessions that end 1 s from now.  A transaction
# holding their rows keeps the worker (which skips locked users) from ending
# them before the server stops, so both are past their ttl when it starts
# again with a grace of 3 s.
$node->append_conf('postgresql.conf', "presence.startup_grace = '3s'");
$dbh->do(q{SELECT presence.heartbeat(u, 's1', ttl => '1 s', away_after => '1 h')
			 FROM unnest(ARRAY['g_stale', 'g_back']) AS u});
my $g_end = query_value($dbh,
	q{SELECT max(end_at)::text FROM presence.sessions
	   WHERE user_id IN ('g_stale', 'g_back')});
my $locker = db_connect($node);
$locker->begin_work;
$locker->do(q{SELECT FROM presence.users WHERE user_id IN ('g_stale', 'g_back')
			   FOR UPDATE});
ok( defined wait_until(30,
		sub { query_value($dbh, 'SELECT clock_timestamp() > ?::timestamptz', $g_end) }),
	'the sessions are past their ttl');
is( query_value($dbh,
		q{SELECT count(*) FROM presence.sessions WHERE user_id IN ('g_stale', 'g_back')}),
	2, 'both sessions still exist (their users are locked)');
$dbh->disconnect;
$node->stop('fast');
# the server ended the locker's connection
eval { $locker->disconnect };
$node->start;

$dbh = db_connect($node);
$listener = PresenceTAP::Listener->new($node, 'postgres');
# g_back's client reconnects right away.
$dbh->do(q{SELECT presence.heartbeat('g_back', 's1', ttl => '1 h', away_after => '1 h')});
my $hb_done = time;

# The grace starts when the launcher starts, after the postmaster: so it
# lasts at least until the postmaster's start time + 3 s.  Only that bound
# is used below, so that a slow start cannot make the test pass or fail
# wrongly.
my $grace_min = query_value($dbh,
	q{SELECT extract(epoch FROM pg_postmaster_start_time() + interval '3 s')::float8});
ok(defined wait_until(30, sub { defined worker_pid($node, 'postgres') }),
	'a worker runs after the restart');
my $rest = query_value($dbh,
	q{SELECT extract(epoch FROM next_wake - pg_postmaster_start_time())::float8
		FROM presence.worker_status()});
note sprintf('the worker rests until %.2f s after the postmaster started; '
	  . 'g_back heartbeated %.2f s before the grace ended',
	$rest // -1, $grace_min - $hb_done);

# During the grace, g_stale keeps its session, however often we look, and
# the worker says it rests until the grace is over.
my ($samples, $stale_online, $resting) = (0, 0, 0);
while (1)
{
	my $row = query_row($dbh,
		q{SELECT (SELECT status::text FROM presence.users WHERE user_id = 'g_stale') AS status,
				 (SELECT count(*) FROM presence.sessions WHERE user_id = 'g_stale') AS n,
				 (SELECT extract(epoch FROM next_wake)::float8
					FROM presence.worker_status()) AS wake,
				 extract(epoch FROM clock_timestamp())::float8 AS now});
	last if $row->{now} >= $grace_min - 0.3;
	$samples++;
	$stale_online++ if $row->{status} eq 'online' && $row->{n} == 1;
	$resting++ if defined $row->{wake} && $row->{wake} >= $grace_min - 0.01;
	Time::HiRes::usleep(100_000);
}
note "$samples samples taken during the grace";
cmp_ok($samples, '>', 0, 'g_stale was looked at during the grace');
is($stale_online, $samples,
	'g_stale, past its ttl, is not ended during the grace');
is($resting, $samples,
	'worker_status().next_wake shows the worker resting until the grace ends');

@got = $listener->wait_for_user_status('g_stale', 'offline', 30);
ok(@got, 'g_stale is ended after the grace');
if (@got)
{
	note sprintf('g_stale ended %.3f s after the earliest end of the grace',
		$got[0]{received} - $grace_min);
	cmp_ok($got[0]{received}, '>=', $grace_min - 0.05,
		'... not before the grace was over');
	is($got[0]{ev}{reason}, 'timeout', '... as a timeout');
	ok(same_time($got[0]{ev}{at}, $g_end), '... dated at its deadline');
	is($got[0]{pid}, worker_pid($node, 'postgres'), '... by the worker');
}
$listener->drain(1);
is(scalar $listener->for_user('g_stale'), 1, 'g_stale: announced once');

SKIP:
{
	skip 'the restart took so long that g_back heartbeated after the grace', 3
	  unless $hb_done < $grace_min;

	is(query_value($dbh, q{SELECT status FROM presence.get('g_back')}),
		'online', 'g_back, who heartbeated during the grace, is online');
	is( query_value($dbh,
			q{SELECT string_agg(previous || '->' || status || ' (' || reason || ')',
								' ; ' ORDER BY seq)
				FROM presence.history WHERE user_id = 'g_back'}),
		'offline->online (connect)',
		'g_back: never announced offline (no flicker across the restart)')
	  or diag('g_back history: ', explain(query_rows($dbh,
			q{SELECT seq, previous, status, reason, at FROM presence.history
			   WHERE user_id = 'g_back' ORDER BY seq})));
	is(scalar $listener->for_user('g_back'), 0,
		'g_back: no event after the restart')
	  or diag 'g_back events after the restart (the heartbeat was sent by pid '
	  . query_value($dbh, 'SELECT pg_backend_pid()') . '): '
	  . join("\n", map { "pid $_->{pid}: $_->{payload}" } $listener->for_user('g_back'));
}
check_consistency('after the grace');

$listener->disconnect;
$dbh->disconnect;
$node->stop('fast');

done_testing();
