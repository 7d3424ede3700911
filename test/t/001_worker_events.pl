
# 001_worker_events.pl: the background worker's events, as a LISTEN client
# sees them.
#
# With the library preloaded and startup_grace = 0 it checks that:
#  - the launcher and one worker for the database show up in
#    pg_stat_activity (the launcher connected to no database);
#  - a session with short timers is announced connect -> idle (away) ->
#    timeout (offline), each payload valid JSON with exactly the documented
#    keys, the timed events sent by the worker's pid and dated exactly at the
#    session's stored deadlines (away_at, end_at);
#  - a busy status with `until` is announced as expired, back to online;
#  - seq strictly increases in arrival order, each event appears exactly
#    once and matches its presence.history row field by field, and history
#    holds nothing that was not announced;
#  - every timed event arrives within a generous bound of its deadline
#    (the measured latencies are printed);
#  - worker_status() has one row for the worker, with transitions > 0;
#  - the worker is woken at commit: with the worker asleep until its next
#    periodic wake-up (it never sleeps more than a few seconds), a session
#    with a 1 s ttl is ended at its deadline, before that wake-up;
#  - history pruning follows presence.history_retention after a reload:
#    rows older than the retention disappear, recent rows stay.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use PresenceTAP;

# A timed event must arrive within this many seconds of its deadline.  The
# worker aims at well under a second; this only catches a worker that does
# not act on its own.
my $MAX_LATENCY = 5;

my $node = presence_node('events');
$node->safe_psql('postgres', 'CREATE EXTENSION presence');

# --- The launcher and the worker are running -------------------------------

my $waited = wait_until(30,
	sub { defined launcher_pid($node) && defined worker_pid($node, 'postgres') });
ok(defined $waited, 'launcher and worker appear in pg_stat_activity');
note sprintf('worker appeared %.2f s after CREATE EXTENSION', $waited // -1);

my @backends = presence_backends($node);
is(scalar(grep { $_->{backend_type} eq 'presence launcher' } @backends),
	1, 'exactly one presence launcher');
is(scalar(grep { $_->{backend_type} eq 'presence worker' } @backends),
	1, 'exactly one presence worker');
my ($launcher) = grep { $_->{backend_type} eq 'presence launcher' } @backends;
is($launcher->{datname}, '', 'the launcher is connected to no database');
my $wpid = worker_pid($node, 'postgres');

my $dbh = db_connect($node);
my $mypid = query_value($dbh, 'SELECT pg_backend_pid()');

# --- Old history for the pruning check at the end ---------------------------
#
# The worker prunes about once a minute, starting when it starts.  Rows
# dated two hours ago are kept under the default retention (30 days) and
# must go once the retention is reloaded as one hour; the events made
# meanwhile are recent and must stay.  Doing this first lets the wait for
# the next prune overlap with the rest of the test.
$dbh->do(q{
	INSERT INTO presence.history
		(seq, user_id, status, previous, reason, message, last_active, at)
	SELECT nextval('presence.seq'), 'old_' || i, 'offline', 'online',
		   'timeout', NULL, NULL, now() - interval '2 hours'
	  FROM generate_series(1, 3) AS i});
my $old_max_seq = query_value($dbh,
	q{SELECT max(seq) FROM presence.history WHERE user_id LIKE 'old\_%'});
$node->append_conf('postgresql.conf', "presence.history_retention = '1h'");
$node->reload;
my $reloaded_at = time;

# --- Events of a session with short timers, and of an expiring busy status -

my $listener = PresenceTAP::Listener->new($node, 'postgres');

# alice: away after 1 s of inactivity, ends after 2 s without a heartbeat.
$dbh->do(q{SELECT presence.heartbeat('alice', 's1',
	ttl => '2 s', away_after => '1 s')});
my $alice = query_row($dbh,
	q{SELECT away_at::text, end_at::text FROM presence.sessions
	   WHERE user_id = 'alice' AND session_id = 's1'});

# bob: a long session, busy until 2 s from now.
$dbh->do(q{SELECT presence.heartbeat('bob', 's1',
	ttl => '1 h', away_after => '1 h')});
$dbh->begin_work;
my $bob_until = query_value($dbh, q{SELECT (now() + interval '2 s')::text});
$dbh->do(q{SELECT presence.set_status('bob', 'busy', 'in a meeting', ?)},
	undef, $bob_until);
$dbh->commit;

my @got = $listener->wait_for_user_status('alice', 'offline', 2 + 30);
ok(@got, 'alice went offline on her own');
@got = $listener->wait_for(
	sub {
		my $ev = $_[0]->{ev};
		$ev && $ev->{user_id} eq 'bob' && $ev->{reason} eq 'expired';
	},
	30);
ok(@got, "bob's busy status expired on its own");

# Anything sent twice would come right after the first copy.
$listener->drain(1.5);

my @all = $listener->all;
my @alice = $listener->for_user('alice');
my @bob = $listener->for_user('bob');

# Every notification: valid JSON with exactly the documented keys.
foreach my $n (@all)
{
	ok(defined $n->{ev}, "payload is valid JSON: $n->{payload}")
	  or diag $n->{json_error};
	next unless defined $n->{ev};
	is(join(',', sort keys %{ $n->{ev} }), EVENT_KEYS,
		"payload has exactly the documented keys (seq $n->{ev}{seq})");
	is($n->{ev}{event}, 'status', 'event is "status"');
	is($n->{channel}, 'presence', 'sent on channel "presence"');
}

sub summary
{
	return join(' ; ',
		map { "$_->{ev}{previous}->$_->{ev}{status} ($_->{ev}{reason})" } @_);
}

is(summary(@alice),
	'offline->online (connect) ; online->away (idle) ; away->offline (timeout)',
	'alice: connect, idle, timeout, each exactly once, in order');
is(summary(@bob),
	'offline->online (connect) ; online->busy (manual) ; busy->online (expired)',
	'bob: connect, manual busy, expired, each exactly once, in order');

# Who sent what: the connect and manual events come from this session's
# commits, the timed ones from the worker.
is($alice[0]{pid}, $mypid, "alice's connect was sent by the heartbeat's backend");
is($alice[1]{pid}, $wpid, "alice's idle event was sent by the worker");
is($alice[2]{pid}, $wpid, "alice's timeout event was sent by the worker");
is($bob[2]{pid}, $wpid, "bob's expiry was sent by the worker");

# Timed events are dated at their deadlines, exactly.
sub same_time
{
	my ($x, $y) = @_;
	return query_value($dbh, 'SELECT ?::timestamptz = ?::timestamptz', $x, $y);
}
ok(same_time($alice[1]{ev}{at}, $alice->{away_at}),
	"idle event's at equals the session's away_at ($alice->{away_at})");
ok(same_time($alice[2]{ev}{at}, $alice->{end_at}),
	"timeout event's at equals the session's end_at ($alice->{end_at})");
ok(same_time($bob[2]{ev}{at}, $bob_until),
	"expired event's at equals the until given ($bob_until)");
is($bob[1]{ev}{message}, 'in a meeting', 'the busy event carries the message');
ok(!defined $bob[2]{ev}{message}, 'the message is gone once busy expired');
ok(defined $alice[2]{ev}{last_active},
	'the timeout event carries last_active');

# Latency from deadline to arrival, for the worker's events.
foreach my $n ($alice[1], $alice[2], $bob[2])
{
	my $latency = $n->{received} - epoch_of($dbh, $n->{ev}{at});
	note sprintf('%s %s: arrived %.3f s after its deadline',
		$n->{ev}{user_id}, $n->{ev}{reason}, $latency);
	cmp_ok($latency, '<', $MAX_LATENCY,
		"$n->{ev}{user_id} $n->{ev}{reason} arrived within $MAX_LATENCY s of its deadline");
	cmp_ok($latency, '>', -0.5,
		"$n->{ev}{user_id} $n->{ev}{reason} did not arrive before its deadline");
}

# seq strictly increases in arrival order and matches history, both ways.
my @seqs = map { $_->{ev}{seq} } grep { defined $_->{ev} } @all;
my $increasing = 1;
for my $i (1 .. $#seqs)
{
	$increasing = 0 unless $seqs[$i] > $seqs[ $i - 1 ];
}
ok($increasing, "seq strictly increases in arrival order (@seqs)");

foreach my $n (grep { defined $_->{ev} } @all)
{
	my $ev = $n->{ev};
	my $h = query_row($dbh,
		q{SELECT user_id, status::text, previous::text, reason, message,
				 at = ?::timestamptz AS same_at,
				 last_active IS NOT DISTINCT FROM ?::timestamptz AS same_last_active
			FROM presence.history WHERE seq = ?},
		$ev->{at}, $ev->{last_active}, $ev->{seq});
	ok($h, "history has seq $ev->{seq}") or next;
	is_deeply(
		[ @$h{qw(user_id status previous reason message)} ],
		[ @$ev{qw(user_id status previous reason message)} ],
		"history row $ev->{seq} matches its event");
	ok($h->{same_at} && $h->{same_last_active},
		"history row $ev->{seq} has the event's at and last_active");
}
is( query_value($dbh,
		q{SELECT string_agg(seq::text, ' ' ORDER BY seq) FROM presence.history
		   WHERE user_id IN ('alice', 'bob')}),
	join(' ', sort { $a <=> $b }
		  map { $_->{ev}{seq} } (@alice, @bob)),
	'history holds exactly the events that were announced');

is( query_value($dbh,
		q{SELECT status || '/' || sessions FROM presence.get('alice')}),
	'offline/0', 'get(alice): offline, no session left');
is(query_value($dbh, q{SELECT status || '/' || coalesce(message, '-')
		FROM presence.get('bob')}),
	'online/-', 'get(bob): online again, without the message');

# --- worker_status() --------------------------------------------------------

my $ws = query_rows($dbh, 'SELECT * FROM presence.worker_status()');
is(scalar @$ws, 1, 'worker_status() returns one row');
is($ws->[0]{pid}, $wpid, 'worker_status().pid is the worker in pg_stat_activity');
cmp_ok($ws->[0]{transitions}, '>=', 3,
	'worker_status().transitions counts the worker\'s transitions');
is($ws->[0]{errors}, 0, 'no errors');
ok(defined $ws->[0]{last_sweep}, 'last_sweep is set');
ok(!defined $ws->[0]{last_error}, 'no last_error');
note explain $ws->[0];

# --- The worker is woken at commit -----------------------------------------
#
# bob's session ends in an hour, so the worker sleeps until its periodic
# wake-up (at most a few seconds).  Right after it has gone to sleep, store a
# session that ends in 1 s: the committing backend must wake the worker, so
# that the session ends at its deadline and not at the next periodic wake.
my $sleeping = wait_until(30,
	sub {
		query_value($dbh,
			q{SELECT next_wake - clock_timestamp() > interval '3.5 s'
				FROM presence.worker_status()});
	},
	0.02);
ok(defined $sleeping, 'the worker sleeps towards a wake-up more than 3.5 s away');
my $ws_before = query_row($dbh,
	q{SELECT extract(epoch FROM next_wake)::float8 AS wake,
			 extract(epoch FROM next_wake - clock_timestamp())::float8 AS left
		FROM presence.worker_status()});
$dbh->do(q{SELECT presence.heartbeat('carol', 's1',
	ttl => '1 s', away_after => '1 h')});
my $carol_end = query_value($dbh,
	q{SELECT end_at::text FROM presence.sessions WHERE user_id = 'carol'});
my $carol_end_epoch = epoch_of($dbh, $carol_end);
note sprintf('worker would wake by itself in %.3f s; carol ends %.3f s before that',
	$ws_before->{left}, $ws_before->{wake} - $carol_end_epoch);

@got = $listener->wait_for_user_status('carol', 'offline', 1 + 30);
ok(@got, 'carol went offline on her own');
if (@got)
{
	my $latency = $got[0]{received} - $carol_end_epoch;
	note sprintf('carol timeout: arrived %.3f s after its deadline, %.3f s before '
		  . 'the worker would have woken by itself',
		$latency, $ws_before->{wake} - $got[0]{received});
	cmp_ok($latency, '<', $MAX_LATENCY,
		"carol's timeout arrived within $MAX_LATENCY s of its deadline");
	cmp_ok($got[0]{received}, '<', $ws_before->{wake},
		'carol was ended before the worker\'s own wake-up: the commit woke it');
	is($got[0]{ev}{reason}, 'timeout', 'reason timeout');
	is($got[0]{pid}, $wpid, 'sent by the worker');
	ok(same_time($got[0]{ev}{at}, $carol_end), 'dated at its end_at');
}

# --- History pruning --------------------------------------------------------

my $pruned = wait_until(
	90 - (time - $reloaded_at),
	sub {
		query_value($dbh,
			'SELECT count(*) = 0 FROM presence.history WHERE seq <= ?',
			$old_max_seq);
	},
	0.25);
ok(defined $pruned,
	'history older than presence.history_retention (reloaded as 1h) is pruned');
note sprintf('old history gone %.1f s after the reload', time - $reloaded_at);
is( query_value($dbh,
		q{SELECT count(*) FROM presence.history WHERE user_id IN ('alice', 'bob')}),
	scalar(@alice) + scalar(@bob),
	'recent history is kept');
is($node->safe_psql('postgres', 'SHOW presence.history_retention'),
	'1h', 'presence.history_retention is 1h after the reload');

# Nothing went wrong in the worker along the way.
is(query_value($dbh, 'SELECT errors FROM presence.worker_status()'),
	0, 'worker_status().errors is still 0');
is(worker_pid($node, 'postgres'), $wpid, 'the same worker ran throughout');

$listener->disconnect;
$dbh->disconnect;
$node->stop('fast');

done_testing();
