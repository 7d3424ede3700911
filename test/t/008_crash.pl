
# 008_crash.pl: presence across a crash restart and an immediate shutdown.
#
# Two scenarios on one cluster (startup_grace 5 s, default ttl 3 s), each
# under load: psql clients heartbeat users in loops (keep_*, loop_*; the
# loop_* users also sit in a room, renew their typing flag and move their
# metadata), users past_* are past their ttl but held by a transaction so
# that the worker could not end them yet, users late_* have a ttl that ends
# after the grace, and the worker keeps ending sessions that a client starts
# and never heartbeats again (kx_*).
#
#  a. SIGKILL of a backend in the middle of its heartbeats: the victim's
#     transaction has written a new session (user kx_<xid>) and waits on an
#     advisory lock when it is killed; the postmaster's crash-restart cycle
#     follows;
#  b. pg_ctl stop -m immediate, a pause until every session's ttl has passed
#     while the server is down, and a start.
#
# After each restart:
#  - the tables are consistent (table_violations: members have their
#    sessions, sessions their users, history chains unbroken, seq unique and
#    within the sequence, each user's status is their last announced one,
#    nobody present without a session), and the killed transaction left
#    nothing behind (no row, no history, no event for kx_<xid>);
#  - the grace is honoured: while it lasts, sampled every 100 ms, no session
#    ends and no event is written, even for sessions whose deadline passed
#    before or during the outage, and no timeout arrives before it is over;
#  - the keep_* users, whose clients come back during the grace only after
#    their sessions' deadlines have passed, stay online: no event at all
#    after the restart, only their first connect in history;
#  - every other session alive at the restart ends exactly once (one
#    history row, one notification with the same seq, by the worker), as a
#    timeout dated at its stored deadline, within 3 s ($BOUND) of
#    max(deadline, end of the grace); users without a session get no event;
#  - the events after the restart arrive in strictly increasing seq order
#    and are exactly the history rows written after it.
# The figures (restart time, grace, latencies) are printed with note().
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use List::Util qw(max min sum);
use PresenceTAP;

my $GRACE = 5;    # presence.startup_grace, seconds
my $TTL = 3;      # presence.session_ttl, seconds: every loop heartbeat's ttl
my $BOUND = 3;    # an ending is due at max(deadline, grace end) + this

# Start without a grace (no need to wait at the first start), then set it:
# a reload reaches the postmaster, which creates shared memory again at a
# crash restart, and every process started after.
my $node = presence_node('crash',
	conf => "restart_after_crash = on\n"
	  . "presence.session_ttl = '${TTL}s'\n"
	  . "presence.away_after = '1h'\n");
$node->safe_psql('postgres', 'CREATE EXTENSION presence');
ok(defined wait_until(30, sub { defined worker_pid($node, 'postgres') }),
	'the worker runs');
$node->append_conf('postgresql.conf', "presence.startup_grace = '${GRACE}s'\n");
$node->reload;
ok( defined wait_until(10,
		sub { $node->safe_psql('postgres', 'SHOW presence.startup_grace') eq "${GRACE}s" }),
	"presence.startup_grace is ${GRACE}s");

# Errors a client of the crashed server may print; anything else is a bug.
my $LOST_CONNECTION = qr/server closed the connection unexpectedly|connection to server was lost|terminating connection because of crash of another server process|terminating connection due to (?:administrator|immediate shutdown) command|connection to server .* failed|This probably means the server terminated abnormally|before or while processing the request|no connection to the server|the database system is (?:in recovery mode|shutting down|starting up)|FATAL:  terminating connection/;

sub unexpected_errors
{
	my @clients = @_;
	my @bad;
	foreach my $c (@clients)
	{
		push @bad, map { "$c->{name}: $_" }
		  grep { /ERROR|FATAL|PANIC|WARNING|error:/ && !/$LOST_CONNECTION/ }
		  split /\n/, client_stderr($c);
	}
	return @bad;
}

sub in_list { return join(', ', map { "'$_'" } @_); }

sub stats
{
	my @v = @_;
	return 'none' unless @v;
	return sprintf('min %.3f, mean %.3f, max %.3f s (n=%d)',
		min(@v), sum(@v) / @v, max(@v), scalar @v);
}

# Connect, retrying while the server restarts.
sub connect_when_up
{
	my $dbh;
	my $t = wait_until(60,
		sub {
			$dbh = db_connect($node);
			$dbh->do('SELECT 1');
			1;
		},
		0.1);
	return defined $t ? $dbh : undef;
}

# ---------------------------------------------------------------------------
# One scenario: $how is 'kill' (SIGKILL of a backend) or 'immediate'.
# ---------------------------------------------------------------------------
sub scenario
{
	my ($p, $how) = @_;
	my $what = $how eq 'kill' ? 'SIGKILL of a backend' : 'immediate shutdown';
	my @keep = map { "${p}_keep$_" } 1 .. 3;
	my @loop1 = map { "${p}_loop$_" } 1 .. 4;
	my @loop2 = map { "${p}_loop$_" } 5 .. 8;
	my @past = map { "${p}_past$_" } 1 .. 3;
	my @late = map { "${p}_late$_" } 1 .. 3;
	my $room = "${p}_room";
	my $late_ttl = $how eq 'kill' ? $GRACE + 3 : $GRACE + $TTL + 4;

	my $dbh = db_connect($node);
	my $start_pos = log_position($node);

	# --- Load ------------------------------------------------------------
	my @clients;
	push @clients,
	  start_psql_client($node, 'postgres',
		"\\set ON_ERROR_STOP 1\n"
		  . "SELECT count(presence.heartbeat(u, 's1')) FROM unnest(ARRAY["
		  . in_list(@keep)
		  . "]) AS u \\watch 0.1\n",
		"${p}_keep");
	foreach my $users (\@loop1, \@loop2)
	{
		my $list = in_list(@$users);
		push @clients,
		  start_psql_client($node, 'postgres',
			"\\set ON_ERROR_STOP 1\n"
			  . "SELECT count(*) FROM (SELECT presence.join('$room', u, 's1', '{\"c\": 0}')"
			  . " FROM unnest(ARRAY[$list]) AS u) x;\n"
			  . "SELECT count(*) FROM (SELECT presence.heartbeat(u, 's1'),"
			  . " presence.typing('$room', u),"
			  . " presence.set_meta('$room', u, 's1', jsonb_build_object('t', clock_timestamp()))"
			  . " FROM unnest(ARRAY[$list]) AS u) x \\watch 0.05\n",
			"${p}_loop" . scalar(@clients));
	}
	# One session per transaction, never heartbeated again: the worker
	# keeps ending them.  The transaction passes an advisory lock the test
	# can take, to stop it with its session written but not committed.
	push @clients,
	  start_psql_client($node, 'postgres',
		"\\set ON_ERROR_STOP 1\n"
		  . "BEGIN \\; SELECT presence.heartbeat('${p}_kx' || txid_current(), 's1') \\; "
		  . "SELECT pg_advisory_lock_shared(4242), pg_advisory_unlock_shared(4242) \\; "
		  . "COMMIT \\watch 0.05\n",
		"${p}_kx");

	# past_*: their 1 s ttl runs out while a transaction holds their rows,
	# which keeps the worker (it skips locked users) from ending them.
	$dbh->do(q{SELECT presence.heartbeat(u, 's1', ttl => '1 s')
				 FROM unnest(?::text[]) AS u}, undef, \@past);
	my $past_end = query_value($dbh,
		q{SELECT max(end_at)::text FROM presence.sessions WHERE user_id = ANY (?::text[])},
		\@past);
	my $locker = db_connect($node);
	$locker->begin_work;
	$locker->do(q{SELECT FROM presence.users WHERE user_id = ANY (?::text[]) FOR UPDATE},
		undef, \@past);

	ok( defined wait_until(30,
			sub {
				query_value($dbh,
					q{SELECT count(*) FROM presence.sessions
					   WHERE user_id = ANY (?::text[])}, [ @keep, @loop1, @loop2 ]) == 11
				  && query_value($dbh, q{SELECT count(*) > 3 FROM presence.history
										  WHERE user_id LIKE ? AND reason = 'timeout'},
					"${p}_kx%")
				  && query_value($dbh, 'SELECT clock_timestamp() > ?::timestamptz',
					$past_end);
			}),
		"$what: load running (clients heartbeat, the worker ends sessions, "
		  . 'past_* are past their ttl)');
	is(query_value($dbh, q{SELECT count(*) FROM presence.sessions WHERE user_id = ANY (?::text[])},
			\@past),
		3, "$what: past_* still have their sessions (locked)");
	$dbh->do(q{SELECT presence.heartbeat(u, 's1', ttl => ?::interval)
				 FROM unnest(?::text[]) AS u}, undef, "$late_ttl s", \@late);
	my $pre = query_row($dbh,
		q{SELECT (SELECT max(seq) FROM presence.history) AS max_seq,
				 (SELECT count(*) FROM presence.history) AS events,
				 (SELECT count(*) FROM presence.sessions) AS sessions,
				 (SELECT transitions FROM presence.worker_status()) AS transitions});
	note sprintf('%s: before: %d events so far, %d sessions, the worker made %d transitions',
		$what, $pre->{events}, $pre->{sessions}, $pre->{transitions} // -1);
	is_deeply([ unexpected_errors(@clients) ], [], "$what: no client error before");
	$dbh->disconnect;

	# --- The fault ----------------------------------------------------------
	my ($t_fault, $t_start, $victim);
	if ($how eq 'kill')
	{
		my $blocker = db_connect($node);
		$blocker->do('SELECT pg_advisory_lock(4242)');
		ok( defined wait_until(30,
				sub {
					$victim = query_row($blocker,
						q{SELECT pid, backend_xid::text AS xid, query
							FROM pg_stat_activity
						   WHERE application_name = ? AND wait_event = 'advisory'
							 AND backend_xid IS NOT NULL}, "${p}_kx");
				}),
			'the victim waits in a transaction that wrote a session');
		note "victim: pid $victim->{pid}, xid $victim->{xid}";
		ok(kill('KILL', $victim->{pid}), 'SIGKILL sent to the victim backend');
		$t_fault = time;
		ok( defined wait_until(60,
				sub {
					log_since($node, $start_pos) =~
					  /all server processes terminated; reinitializing/;
				},
				0.05),
			'the postmaster reinitializes (crash restart)');
		eval { $blocker->disconnect };
		$t_start = $t_fault;    # shared memory is made again after this
	}
	else
	{
		$t_fault = time;
		$node->stop('immediate');
		note sprintf('immediate shutdown took %.2f s', time - $t_fault);
		# Down until every ttl of the loop clients' sessions has passed.
		wait_until($TTL + 5, sub { time > $t_fault + $TTL + 0.3 }, 0.05);
		$t_start = time;
		$node->start;
	}
	eval { $locker->disconnect };

	$dbh = connect_when_up();
	ok(defined $dbh, "$what: the server accepts connections again");
	my $t_up = time;
	my $listener = PresenceTAP::Listener->new($node, 'postgres');
	my $t_listen = time;
	note sprintf('%s: connections accepted %.2f s after the fault', $what, $t_up - $t_fault);

	# The grace: worker_status().next_wake while the worker rests.
	my $grace_until;
	ok( defined wait_until(30,
			sub {
				$grace_until = query_value($dbh,
					q{SELECT extract(epoch FROM next_wake)::float8
						FROM presence.worker_status()});
				defined $grace_until;
			}),
		"$what: a worker runs and says when it resumes");
	$grace_until //= time;
	note sprintf('%s: the grace ends %.2f s after the fault (%.2f s after the start)',
		$what, $grace_until - $t_fault, $grace_until - $t_start);
	cmp_ok($grace_until, '>=', $t_start + $GRACE,
		"$what: the grace lasts at least ${GRACE}s from the restart");

	# What survived, read before anything can change it.
	my $s0 = query_rows($dbh,
		q{SELECT user_id, session_id, end_at::text AS end_at,
				 extract(epoch FROM end_at)::float8 AS end_e
			FROM presence.sessions ORDER BY user_id, session_id});
	my $m = query_value($dbh, 'SELECT coalesce(max(seq), 0) FROM presence.history');
	my $t_s0 = time;
	cmp_ok($t_s0, '<', $grace_until - 1, "$what: the state was read well within the grace");
	ok($t_listen < $grace_until, "$what: the listener was back before the grace ended");
	my $v = table_violations($dbh);
	is_deeply($v, { map { $_ => 0 } keys %$v }, "$what: the tables are consistent after the restart")
	  or diag explain $v;
	cmp_ok($m, '>=', $pre->{max_seq}, "$what: history committed before the fault survived");

	my %keep = map { $_ => 1 } @keep;
	my %s0_user;
	$s0_user{ $_->{user_id} } = $_ foreach @$s0;
	is(scalar(grep { $s0_user{$_} } @keep, @loop1, @loop2, @past, @late),
		17, "$what: every heartbeated, past and late session survived");
	my @due = sort grep { !$keep{$_} } keys %s0_user;
	my $max_keep_end = max(map { $s0_user{$_}{end_e} } @keep);
	note sprintf('%s: %d sessions survived; %d users to end, %d to keep',
		$what, scalar @$s0, scalar @due, scalar @keep);

	if ($how eq 'kill')
	{
		my $ghost = "${p}_kx$victim->{xid}";
		is( query_value($dbh,
				q{SELECT (SELECT count(*) FROM presence.users WHERE user_id = $1)
					   + (SELECT count(*) FROM presence.sessions WHERE user_id = $1)
					   + (SELECT count(*) FROM presence.history WHERE user_id = $1)},
				$ghost),
			0, "the killed transaction left nothing behind ($ghost)");
		cmp_ok(query_value($dbh, q{SELECT count(*) FROM presence.users WHERE user_id LIKE ?},
				"${p}_kx%"),
			'>', 3, 'the sessions the victim committed before are there');
	}

	# --- The clients of keep_* come back, once their deadlines have passed ---
	my $resume = max(time, min($max_keep_end + 0.15, $grace_until - 1.5));
	wait_until(10, sub { time >= $resume }, 0.02);
	my $keeper = start_psql_client($node, 'postgres',
		"SELECT count(presence.heartbeat(u, 's1')) FROM unnest(ARRAY["
		  . in_list(@keep)
		  . "]) AS u \\watch 0.1\n",
		"${p}_keep_back");
	my $t_keep_back;
	ok( defined wait_until(10,
			sub {
				query_value($dbh,
					q{SELECT count(*) FROM presence.sessions
					   WHERE user_id = ANY (?::text[])
						 AND end_at > clock_timestamp() + ?::interval},
					\@keep, ($TTL - 1) . ' s') == 3;
			},
			0.02),
		"$what: the keep_* clients heartbeat again");
	$t_keep_back = time;
	note sprintf('%s: keep_* clients back %.2f s after their deadlines, %.2f s before the grace ended',
		$what, $t_keep_back - $max_keep_end, $grace_until - $t_keep_back);

	# --- During the grace nothing ends -------------------------------------
	my ($samples, $bad_samples) = (0, 0);
	while (time < $grace_until - 0.2)
	{
		my $row = query_row($dbh,
			q{SELECT (SELECT count(*) FROM presence.sessions
					   WHERE user_id = ANY (?::text[])) AS sessions,
					 (SELECT count(*) FROM presence.history WHERE seq > ?) AS events,
					 extract(epoch FROM clock_timestamp())::float8 AS now},
			\@due, $m);
		$listener->pump(0);
		last if $row->{now} >= $grace_until - 0.1;
		$samples++;
		$bad_samples++
		  unless $row->{sessions} == scalar(@due) && $row->{events} == 0;
		Time::HiRes::usleep(100_000);
	}
	note "$what: $samples samples during the grace";
	cmp_ok($samples, '>', 5, "$what: the tables were sampled during the grace");
	is($bad_samples, 0,
		"$what: during the grace no session ended and no event was written");

	# --- After the grace, every other session ends once, on time -----------
	my %due = map { $_ => 1 } @due;
	my $last_due = max($grace_until, map { $s0_user{$_}{end_e} } @due);
	ok( defined wait_until($last_due - time + $BOUND + 20,
			sub {
				$listener->pump(0);
				query_value($dbh,
					q{SELECT count(DISTINCT user_id) FROM presence.history
					   WHERE seq > ? AND reason = 'timeout' AND user_id = ANY (?::text[])},
					$m, \@due) == scalar(@due);
			},
			0.02),
		"$what: every session alive at the restart (but keep_*) has ended");
	$listener->drain(1.5);
	my $wpid = worker_pid($node, 'postgres');

	my $after = query_rows($dbh,
		q{SELECT seq, user_id, status::text, previous::text, reason, at::text
			FROM presence.history WHERE seq > ? ORDER BY seq}, $m);
	my %hist;
	push @{ $hist{ $_->{user_id} } }, $_ foreach @$after;
	my @notes = grep { defined $_->{ev} } $listener->all;
	my %ev;
	push @{ $ev{ $_->{ev}{user_id} } }, $_ foreach @notes;

	my (@wrong, @late_ones, @early, %lat);
	foreach my $u (@due)
	{
		my $h = $hist{$u} // [];
		my $e = $ev{$u} // [];
		my $s = $s0_user{$u};
		if (@$h != 1 || $h->[0]{reason} ne 'timeout' || $h->[0]{status} ne 'offline'
			|| !timestamps_equal($dbh, $h->[0]{at}, $s->{end_at}))
		{
			push @wrong, "$u: history " . join(' ; ',
				map { "$_->{seq} $_->{previous}->$_->{status} ($_->{reason}) at $_->{at}" } @$h)
			  . " (deadline $s->{end_at})";
			next;
		}
		if (@$e != 1 || $e->[0]{ev}{seq} != $h->[0]{seq} || $e->[0]{pid} != $wpid)
		{
			push @wrong, "$u: events " . join(' ; ', map { "pid $_->{pid}: $_->{payload}" } @$e);
			next;
		}
		my $due_at = max($s->{end_e}, $grace_until);
		my $latency = $e->[0]{received} - $due_at;
		my $kind = $u =~ /_(keep|loop|past|late|kx)/ ? $1 : 'other';
		push @{ $lat{$kind} }, $latency;
		push @early, sprintf('%s at %.3f s before the grace ended', $u,
			$grace_until - $e->[0]{received})
		  if $e->[0]{received} < $grace_until;
		push @late_ones, sprintf('%s %.3f s after max(deadline, grace end)', $u, $latency)
		  if $latency > $BOUND;
	}
	is_deeply(\@wrong, [],
		"$what: each of the " . scalar(@due) . ' sessions ended exactly once, '
		  . 'as a timeout dated at its deadline, announced once by the worker');
	is_deeply(\@early, [], "$what: no ending was announced before the grace was over");
	is_deeply(\@late_ones, [], "$what: every ending came within ${BOUND}s of max(deadline, grace end)");
	note "$what: latency of $_ endings after max(deadline, grace end): " . stats(@{ $lat{$_} })
	  foreach sort keys %lat;

	my @others = grep { !$due{ $_->{user_id} } } @$after;
	is_deeply([ map { "$_->{user_id} $_->{reason}" } @others ], [],
		"$what: no other event after the restart (keep_* never flickered)");
	is( query_value($dbh,
			q{SELECT string_agg(user_id || ':' || reasons, ' ' ORDER BY user_id) FROM (
				SELECT user_id, string_agg(reason, ',' ORDER BY seq) AS reasons
				  FROM presence.history WHERE user_id = ANY (?::text[]) GROUP BY user_id) x},
			\@keep),
		join(' ', map { "$_:connect" } @keep),
		"$what: keep_* have only their first connect in history");
	is( query_value($dbh,
			q{SELECT count(*) FROM presence.users WHERE user_id = ANY (?::text[]) AND status = 'online'},
			\@keep),
		3, "$what: keep_* are online");

	my @seqs = map { $_->{ev}{seq} } @notes;
	is(scalar(grep { $seqs[$_] <= $seqs[ $_ - 1 ] } 1 .. $#seqs),
		0, "$what: events after the restart arrive in increasing seq order");
	is(join(',', @seqs), join(',', map { $_->{seq} } @$after),
		"$what: they are exactly the history rows written after the restart");

	is_deeply([ unexpected_errors($keeper) ], [], "$what: no client error after the restart");
	stop_psql_client($keeper, 'TERM');
	foreach my $c (@clients)
	{
		stop_psql_client($c);    # they ended with the connection
	}
	is_deeply([ unexpected_errors(@clients) ], [],
		"$what: the clients of the crashed server saw only the connection go");

	$dbh->do(q{SELECT presence.disconnect(u) FROM unnest(?::text[]) AS u}, undef, \@keep);
	is(query_value($dbh, 'SELECT count(*) FROM presence.sessions WHERE user_id LIKE ?', "${p}_%"),
		0, "$what: no session is left");
	$v = table_violations($dbh);
	is_deeply($v, { map { $_ => 0 } keys %$v }, "$what: the tables are consistent at the end")
	  or diag explain $v;
	note sprintf('%s: %d events after the restart; %d in history in all',
		$what, scalar @$after, query_value($dbh, 'SELECT count(*) FROM presence.history'));

	$listener->disconnect;
	$dbh->disconnect;
	return;
}

scenario('a', 'kill');
scenario('b', 'immediate');

my $log = slurp_file($node->logfile);
unlike($log, qr/PANIC/, 'no PANIC in the log');
my @worker_deaths = $log =~ /(background worker "presence (?:worker|launcher)" \(PID \d+\) was terminated by signal \d+[^\n]*)/g;
is(scalar @worker_deaths, 0, 'no presence process died of a signal of its own')
  or diag join("\n", @worker_deaths);

$node->stop('fast');
done_testing();
