
# 011_soak.pl: a soak test of the real worker under concurrent load.
#
# PRESENCE_SOAK_CLIENTS (32) clients, each a DBD::Pg connection driven
# with non-blocking queries from this one process, send a seeded random
# mix of transactions for PRESENCE_SOAK_SECONDS (100) seconds: heartbeats
# (with and without activity, metadata, their own ttl and away_after),
# heartbeat_many, disconnects of one session and of all, set_status with
# and without until (invisible included), join (with set_meta and typing
# in the same transaction), leave, set_meta and typing, and transactions
# rolled back on purpose; a few sleep before their calls (their now() is
# then earlier than deadlines the worker applies meanwhile) or after them
# (holding the user's row lock, which the worker must skip).  The worker runs on short timers: sessions end
# after 0.3 to 3 s, go idle after 0 to 2 s, overrides expire after 0.3 to
# 3 s, typing stops after 1 s.  A LISTEN client records every event.
#
# Users: each client owns three "churn" users (short sessions only) and one
# "long" user (sessions of an hour, which it keeps or ends itself, going
# idle or not); eight "shared" users take heartbeats, joins and
# disconnects from every client (each on its own sessions), their
# set_status from one client.  So the calls of each user that decide its
# final state come from one client, in an order this test knows.
#
# At the end (once every short deadline has passed and the worker has
# caught up) it checks, and prints the counts of:
#  - zero errors in the clients, in worker_status() and in the server log,
#    and zero deadlocks (pg_stat_database and the log);
#  - every history row has exactly one status notification (same seq, same
#    fields) and every status notification one history row; every room
#    status event is one of them; seq strictly increases in arrival order;
#  - no event, history row or room event for anything that was rolled
#    back (users, messages and session ids used only in those
#    transactions);
#  - each user's events chain (each previous is the status before); an
#    event made by a call that takes the user online comes from a call
#    that can (an active heartbeat, a join, set_status); each (room,
#    user)'s joins and leaves alternate;
#  - the final state of every user (get(): status, message, sessions;
#    rooms(), members() with metadata, typing_users()) equals what
#    PresenceModel.pm computes from the committed calls alone, replayed at
#    their transactions' now() and then brought to the end time;
#  - no session outlives its ttl: none is left past its end_at, and the
#    most any was overdue while the load ran is printed (and bounded).
use strict;
use warnings;
use utf8;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IO::Select;
use JSON::PP;
use Encode ();
use DBD::Pg qw(:async);
use PresenceTAP;
use PresenceModel qw(iso_us);

my $SEED = $ENV{PRESENCE_SOAK_SEED} // int(rand(2**31));
my $NCLIENTS = $ENV{PRESENCE_SOAK_CLIENTS} // 32;
my $SECONDS = $ENV{PRESENCE_SOAK_SECONDS} // 100;
note "seed $SEED (set PRESENCE_SOAK_SEED=$SEED to repeat the mix), "
  . "$NCLIENTS clients for $SECONDS s";

use constant SEC => 1_000_000;
use constant MS => 1_000;

# The short timers (microseconds), as the worker and the model know them.
my %SETTINGS = (
	session_ttl => 3 * SEC,
	away_after => 1500 * MS,
	granularity => 60 * SEC,
	typing_timeout => 1 * SEC,
	meta_interval => 100 * MS,
);
my $LONG = 3600 * SEC;    # the ttl of long sessions, and long untils

sub utf8_diag { diag(Encode::encode_utf8(join('', @_))); }


# --- The cluster ------------------------------------------------------------------

my $node = presence_node('soak', conf => qq{
presence.session_ttl = '3s'
presence.away_after = '1500ms'
presence.typing_timeout = '1s'
max_connections = 80
log_lock_waits = on
deadlock_timeout = '200ms'
});
$node->safe_psql('postgres', 'CREATE EXTENSION presence');
ok(defined wait_until(30, sub { defined worker_pid($node, 'postgres') }),
	'the worker runs');
my $log_start = log_position($node);

my $ctl = db_connect($node);
$ctl->{pg_enable_utf8} = 1;
my @ROOMS = ('lobby', 'doc:42', q{room "quoted" \\ 'x'}, 'chat é😀', 'r5', 'r6');
my %ROOM_OF_CHANNEL = map { room_channel($ctl, $_) => $_ } @ROOMS;
my $listener = PresenceTAP::Listener->new($node, 'postgres', 'presence',
	sort keys %ROOM_OF_CHANNEL);
$listener->dbh->{pg_enable_utf8} = 1;
my $deadlocks_before = query_value($ctl,
	q{SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()});

# --- Users ---------------------------------------------------------------------------

my @MESSAGES = (undef, '', 'lunch', q{it's "quoted" \\ back}, "tab\there",
	'é' x 40, '😀 brb');
my $NSHARED = 8;
my (%owner, %class);    # user -> owning client, 'churn' / 'long' / 'shared'
for my $c (0 .. $NCLIENTS - 1)
{
	for my $k (0 .. 2)
	{
		$owner{"c${c}u$k"} = $c;
		$class{"c${c}u$k"} = 'churn';
	}
	$owner{"c${c}L"} = $c;
	$class{"c${c}L"} = 'long';
}
for my $j (0 .. $NSHARED - 1)
{
	$owner{"shared$j"} = ($j * 4) % $NCLIENTS;
	$class{"shared$j"} = 'shared';
}
my @USERS = sort keys %owner;

# --- Clients ---------------------------------------------------------------------------

my $base = PresenceModel::Rng->new($SEED);
my @clients;
for my $c (0 .. $NCLIENTS - 1)
{
	my $dbh = db_connect($node);
	$dbh->{pg_server_prepare} = 0;
	$dbh->{pg_enable_utf8} = 1;
	$dbh->{RaiseError} = 0;
	push @clients, {
		id => $c,
		dbh => $dbh,
		rng => PresenceModel::Rng->new($base->next),
		own => [ grep { $owner{$_} == $c } @USERS ],
		# what this client knows of its users: the long user's sessions
		# (alive, rooms), and each user's pending short until
		long => {},
		until => {},
		next_at => time + rand(0.5),
		inflight => undef,
		n => 0,
	};
}

my $rb_counter = 0;
my %RB_MARKERS;    # user ids, messages and session ids used only in rollbacks

sub q_text { my ($dbh, $v) = @_; return defined $v ? $dbh->quote($v) : 'NULL'; }
sub q_interval { return defined $_[0] ? "interval '$_[0] microseconds'" : 'NULL'; }
sub q_bool { return defined $_[0] ? ($_[0] ? 'true' : 'false') : 'NULL'; }

my $json = JSON::PP->new->canonical;
sub q_json { my ($dbh, $v) = @_; return defined $v ? $dbh->quote($json->encode($v)) . '::jsonb' : 'NULL'; }

# The SQL of one call.
sub call_sql
{
	my ($dbh, $c) = @_;
	my $f = $c->{fn};
	my $u = q_text($dbh, $c->{user});
	my $s = q_text($dbh, $c->{session});
	my $r = q_text($dbh, $c->{room});
	return "presence.heartbeat($u, $s, " . q_bool($c->{active}) . ', '
	  . q_json($dbh, $c->{meta}) . ', ' . q_interval($c->{ttl}) . ', '
	  . q_interval($c->{away_after}) . ')'
	  if $f eq 'heartbeat';
	return 'presence.heartbeat_many(ARRAY['
	  . join(', ', map { q_text($dbh, $_) } @{ $c->{users} }) . ']::text[], ARRAY['
	  . join(', ', map { q_text($dbh, $_) } @{ $c->{sessions} }) . ']::text[], '
	  . q_bool($c->{active}) . ')'
	  if $f eq 'heartbeat_many';
	return "presence.disconnect($u, $s)" if $f eq 'disconnect';
	return "presence.set_status($u, " . q_text($dbh, $c->{status}) . ', '
	  . q_text($dbh, $c->{message}) . ', '
	  . (defined $c->{until} ? 'now() + ' . q_interval($c->{until}) : 'NULL') . ')'
	  if $f eq 'set_status';
	return "presence.join($r, $u, $s, " . q_json($dbh, $c->{meta}) . ')'
	  if $f eq 'join';
	return "presence.leave($r, $u, $s)" if $f eq 'leave';
	return "presence.set_meta($r, $u, $s, " . q_json($dbh, $c->{meta}) . ')'
	  if $f eq 'set_meta';
	return "presence.typing($r, $u, " . q_bool($c->{is_typing}) . ')'
	  if $f eq 'typing';
	die "no SQL for $f";
}

sub short_ttl { my ($r) = @_; return $r->chance(0.3) ? undef : $r->between(300, 3000) * MS; }

sub short_away
{
	my ($r) = @_;
	my $k = $r->int(10);
	return undef if $k < 4;
	return 0 if $k < 6;
	return $r->between(200, 2000) * MS;
}

sub gen_meta { my ($r) = @_; return $r->chance(0.5) ? undef : { cursor => $r->int(1000), tab => $r->int(3) }; }

# A set_status call for one of the client's users.  Invisible is never
# timed with a short until, and is only set once an earlier short until of
# the user has passed by a second: then what the user showed when they
# went invisible (their frozen message) does not depend on a race with
# the worker expiring that until.
sub gen_set_status
{
	my ($cl, $u) = @_;
	my $r = $cl->{rng};
	my $status = $r->pick(qw(away busy dnd invisible auto online auto));
	my $k = $r->int(10);
	my $until = $k < 4 ? $r->between(300, 3000) * MS : $k < 5 ? $LONG : undef;
	if ($status eq 'invisible')
	{
		$until = undef if defined $until && $until != $LONG;
		my $pending = $cl->{until}{$u};
		$status = 'busy' if defined $pending && time < $pending + 1;
	}
	return { fn => 'set_status', user => $u, status => $status,
		message => $r->pick(@MESSAGES), until => $until };
}

# One transaction of a client: { calls => [...], rollback => 0/1 }.
sub gen_tx
{
	my ($cl) = @_;
	my $r = $cl->{rng};
	my $c = $cl->{id};
	my @own = @{ $cl->{own} };
	my ($long) = grep { $class{$_} eq 'long' } @own;
	my @churn = grep { $class{$_} ne 'long' } @own;
	my $shared = 'shared' . $r->int($NSHARED);
	my $room = $r->pick(@ROOMS);
	my $kind = $r->int(100);

	if ($kind < 5)
	{
		# Rolled back on purpose: calls that must leave no trace.
		$rb_counter++;
		my $rbu = "rb_user_$rb_counter";
		my $rbs = "rb_session_$rb_counter";
		my $rbm = "rb message $rb_counter";
		$RB_MARKERS{$_} = 1 foreach ($rbu, $rbs, $rbm);
		my $u = $r->pick(@own, $shared);
		return { rollback => 1, calls => [
			{ fn => 'heartbeat', user => $rbu, session => 'a', active => 1 },
			{ fn => 'heartbeat', user => $u, session => $rbs, active => 1 },
			{ fn => 'join', room => $room, user => $u, session => $rbs,
				meta => { rb => $rb_counter } },
			{ fn => 'set_status', user => $r->pick($rbu, $u), status => 'busy',
				message => $rbm },
			{ fn => 'disconnect', user => $u },
		] };
	}

	my $L = $cl->{long};
	if ($kind < 30)
	{
		# the long user
		my $s = $r->pick('L1', 'L2');
		my $k = $r->int(100);
		my @alive = grep { $L->{$_}{alive} } sort keys %$L;
		if ($k < 35)
		{
			my $away = $r->pick($LONG, $LONG, 0, $r->between(200, 2000) * MS);
			return { calls => [ { fn => 'heartbeat', user => $long, session => $s,
				active => $r->chance(0.7) ? 1 : 0, meta => gen_meta($r),
				ttl => $LONG, away_after => $away } ] };
		}
		if ($k < 40)
		{
			return { calls => [ { fn => 'heartbeat', user => $long, session => $s,
				active => 1, ttl => short_ttl($r), away_after => short_away($r) } ] };
		}
		if ($k < 45)
		{
			return { calls => [ { fn => 'disconnect', user => $long,
				session => $r->chance(0.5) ? $s : undef } ] };
		}
		if ($k < 60)
		{
			return { calls => [ gen_set_status($cl, $long) ] };
		}
		if ($k < 75)
		{
			my @calls = (
				{ fn => 'join', room => $room, user => $long, session => $s,
					meta => gen_meta($r) },
				{ fn => 'heartbeat', user => $long, session => $s,
					active => $r->chance(0.8) ? 1 : 0, ttl => $LONG,
					away_after => $r->pick($LONG, 0, $r->between(200, 2000) * MS) });
			push @calls, { fn => 'typing', room => $room, user => $long,
				is_typing => 1 }
			  if $r->chance(0.3);
			return { calls => \@calls };
		}
		my @in = map { my $x = $_; map { [ $x, $_ ] } sort keys %{ $L->{$x}{rooms} } } @alive;
		if (@in && $k < 85)
		{
			my ($ls, $lr) = @{ $r->pick(@in) };
			return { calls => [ $r->chance(0.6)
				  ? { fn => 'set_meta', room => $lr, user => $long, session => $ls,
					meta => gen_meta($r) }
				  : { fn => 'typing', room => $lr, user => $long,
					is_typing => $r->chance(0.6) ? 1 : 0 } ] };
		}
		if (@in && $k < 95)
		{
			my ($ls, $lr) = @{ $r->pick(@in) };
			return { calls => [ { fn => 'leave', room => $lr, user => $long,
				session => $r->chance(0.5) ? $ls : undef } ] };
		}
		return { calls => [ { fn => 'heartbeat', user => $long, session => $s,
			active => 0, ttl => $LONG } ] };
	}

	# a churn user of the client, or a shared one
	my $u = $r->chance(0.25) ? $shared : $r->pick(@churn);
	my @sessions = $class{$u} eq 'shared' ? map { "c${c}$_" } qw(a b) : qw(a b c);
	my $s = $r->pick(@sessions);
	my $mine = $owner{$u} == $c;
	my $k = $r->int(100);
	if ($k < 40)
	{
		return { calls => [ { fn => 'heartbeat', user => $u, session => $s,
			active => $r->chance(0.75) ? 1 : 0, meta => gen_meta($r),
			ttl => short_ttl($r), away_after => short_away($r) } ] };
	}
	if ($k < 47)
	{
		my @pairs = map { [ $r->pick(@churn), $r->pick(qw(a b c)) ] } 1 .. $r->between(1, 3);
		return { calls => [ { fn => 'heartbeat_many',
			users => [ map { $_->[0] } @pairs ], sessions => [ map { $_->[1] } @pairs ],
			active => $r->chance(0.7) ? 1 : 0 } ] };
	}
	if ($k < 57)
	{
		return { calls => [ { fn => 'disconnect', user => $u,
			session => ($r->chance(0.6) || !$mine) ? $s : undef } ] };
	}
	if ($k < 70 && $mine)
	{
		return { calls => [ gen_set_status($cl, $u) ] };
	}
	if ($k < 90)
	{
		my @calls = ({ fn => 'join', room => $room, user => $u, session => $s,
			meta => gen_meta($r) });
		push @calls, { fn => 'set_meta', room => $room, user => $u, session => $s,
			meta => gen_meta($r) }
		  if $r->chance(0.4);
		push @calls, { fn => 'typing', room => $room, user => $u,
			is_typing => $r->chance(0.8) ? 1 : 0 }
		  if $r->chance(0.4);
		return { calls => \@calls };
	}
	return { calls => [ { fn => 'leave', room => $room, user => $u,
		session => $r->chance(0.5) ? $s : undef } ] };
}

# What a committed transaction tells the client about its own users.
sub note_committed
{
	my ($cl, $tx) = @_;
	my $L = $cl->{long};
	foreach my $c (@{ $tx->{calls} })
	{
		my $f = $c->{fn};
		my $u = $c->{user} // '';
		if ($f eq 'set_status')
		{
			$cl->{until}{$u} = defined $c->{until} && $c->{until} != $LONG
			  ? $tx->{now} / SEC + $c->{until} / SEC : undef;
		}
		next unless $class{$u} && $class{$u} eq 'long';
		my $s = $c->{session};
		if ($f eq 'heartbeat')
		{
			$L->{$s}{alive} = defined $c->{ttl} && $c->{ttl} == $LONG;
			$L->{$s}{rooms} = {} unless $L->{$s}{alive};
		}
		elsif ($f eq 'join')
		{
			$L->{$s}{rooms}{ $c->{room} } = 1;
		}
		elsif ($f eq 'leave')
		{
			foreach my $x (defined $s ? ($s) : keys %$L)
			{
				delete $L->{$x}{rooms}{ $c->{room} };
			}
		}
		elsif ($f eq 'disconnect')
		{
			foreach my $x (defined $s ? ($s) : keys %$L)
			{
				$L->{$x}{alive} = 0;
				$L->{$x}{rooms} = {};
			}
		}
	}
	return;
}

# --- The load ---------------------------------------------------------------------

my (@committed, @errors);
my %COUNT = (transactions => 0, rolled_back => 0, calls => 0, slow_start => 0,
	slow_end => 0);
my %CALLS;
my $max_overdue = 0;
my $started = time;
my $load_end = $started + $SECONDS;
my $next_sample = $started + 2;
my $last_commit = $started;

sub send_tx
{
	my ($cl) = @_;
	my $tx = gen_tx($cl);
	my $dbh = $cl->{dbh};
	my @sql = map { 'SELECT ' . call_sql($dbh, $_) } @{ $tx->{calls} };
	# Some transactions are slow: they start well before their calls (so
	# their now() lies before deadlines the worker applies meanwhile), or
	# hold their user's row lock a while after them (the worker must skip
	# the user and come back).
	my $r = $cl->{rng};
	my $k = $r->int(100);
	my $sleep = sprintf('SELECT pg_sleep(%.3f)', $r->between(50, 400) / 1000);
	if (!$tx->{rollback} && $k < 5)
	{
		unshift @sql, $sleep;
		$COUNT{slow_start}++;
	}
	elsif (!$tx->{rollback} && $k < 8)
	{
		push @sql, $sleep;
		$COUNT{slow_end}++;
	}
	my $sql = $tx->{rollback}
	  ? join('; ', 'BEGIN', @sql, 'ROLLBACK')
	  : join('; ', @sql, 'SELECT (extract(epoch FROM now()) * 1000000)::bigint');
	$tx->{sql} = $sql;
	my $sth = $dbh->prepare($sql, { pg_async => PG_ASYNC });
	$sth->execute;
	$tx->{sth} = $sth;
	$cl->{inflight} = $tx;
	return;
}

# The transaction of a client has finished: record it.
sub finish_tx
{
	my ($cl) = @_;
	my $tx = $cl->{inflight};
	my $dbh = $cl->{dbh};
	my $rv = $dbh->pg_result;
	$cl->{inflight} = undef;
	$cl->{next_at} = time + $cl->{rng}->between(30, 250) / 1000;
	if (!defined $rv)
	{
		push @errors, sprintf('client %d: %s %s (in: %s)', $cl->{id},
			$dbh->state // '', $dbh->errstr // '', $tx->{sql});
		$dbh->do('ROLLBACK');
		return;
	}
	if ($tx->{rollback})
	{
		$COUNT{rolled_back}++;
		return;
	}
	my ($now) = $tx->{sth}->fetchrow_array;
	$tx->{now} = $now;
	$tx->{done} = time;
	$tx->{client} = $cl->{id};
	delete $tx->{sth};
	delete $tx->{sql};
	push @committed, $tx;
	$COUNT{transactions}++;
	$COUNT{calls} += @{ $tx->{calls} };
	$CALLS{ $_->{fn} }++ foreach @{ $tx->{calls} };
	$last_commit = time;
	note_committed($cl, $tx);
	return;
}

my $select = IO::Select->new;
$select->add($listener->dbh->{pg_socket});
my %client_of_fd;
foreach my $cl (@clients)
{
	$select->add($cl->{dbh}{pg_socket});
	$client_of_fd{ $cl->{dbh}{pg_socket} } = $cl;
}

while (1)
{
	my $t = time;
	my $loading = $t < $load_end;
	my $busy = grep { $_->{inflight} } @clients;
	last if !$loading && !$busy;
	my $wake = $t + 0.05;
	foreach my $cl (@clients)
	{
		next if $cl->{inflight};
		if ($loading && $cl->{next_at} <= $t)
		{
			send_tx($cl);
		}
		elsif ($loading && $cl->{next_at} < $wake)
		{
			$wake = $cl->{next_at};
		}
	}
	my $timeout = $wake - time;
	$select->can_read($timeout > 0 ? $timeout : 0);
	foreach my $cl (@clients)
	{
		finish_tx($cl) if $cl->{inflight} && $cl->{dbh}->pg_ready;
	}
	$listener->pump(0);
	if (time >= $next_sample)
	{
		# How long past its end the most overdue session is (the worker
		# should end it within a second).
		my $over = query_value($ctl,
			q{SELECT coalesce(extract(epoch FROM max(clock_timestamp() - end_at)), 0)
				FROM presence.sessions WHERE end_at < clock_timestamp()});
		$max_overdue = $over if $over > $max_overdue;
		$next_sample = time + 2;
	}
}
my $load_seconds = time - $started;
note sprintf('load: %d transactions committed, %d rolled back on purpose, '
	  . '%d calls in %.1f s (%.0f transactions/s)',
	$COUNT{transactions}, $COUNT{rolled_back}, $COUNT{calls}, $load_seconds,
	$COUNT{transactions} / $load_seconds);
note 'calls: ' . join(', ', map { "$_ $CALLS{$_}" } sort keys %CALLS);
note "slow transactions: $COUNT{slow_start} that slept before their calls, "
  . "$COUNT{slow_end} that held their user's lock after them";

is(scalar @errors, 0, 'no client got an error') or utf8_diag(join("\n", @errors[ 0 .. ($#errors < 9 ? $#errors : 9) ]));

# --- Quiescence -----------------------------------------------------------------------
#
# Every short deadline has passed (the longest short timer is 3 s) and the
# worker has applied everything that fell due.
my $quiet = wait_until(60, sub {
	return 0 if time < $last_commit + 3.5;
	$listener->pump(0);
	return query_value($ctl, q{
		SELECT NOT EXISTS (SELECT FROM presence.sessions WHERE due_at <= clock_timestamp())
		   AND NOT EXISTS (SELECT FROM presence.users WHERE manual_until <= clock_timestamp())
		   AND NOT EXISTS (SELECT FROM presence.typing WHERE until <= clock_timestamp())
		   AND NOT EXISTS (SELECT FROM presence.members WHERE meta_due_at <= clock_timestamp())});
}, 0.2);
ok(defined $quiet, 'the worker caught up with every deadline after the load');
$listener->drain(1);
my $end_us = query_value($ctl,
	q{SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint});

is(query_value($ctl, q{SELECT count(*) FROM presence.sessions WHERE end_at <= clock_timestamp()}),
	0, 'no session is left past its ttl');
note sprintf('the most overdue session while the load ran: %.3f s past its end', $max_overdue);
cmp_ok($max_overdue, '<', 5, 'no session outlived its ttl by 5 s or more during the load');

# --- Errors and deadlocks ------------------------------------------------------------

my $ws = query_row($ctl, 'SELECT errors, transitions, last_error FROM presence.worker_status()');
is($ws->{errors}, 0, 'worker_status(): no errors')
  or diag("last error: " . ($ws->{last_error} // ''));
my $deadlocks = query_value($ctl,
	q{SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()})
  - $deadlocks_before;
is($deadlocks, 0, 'pg_stat_database: no deadlocks');
my $log = log_since($node, $log_start);
my @log_errors = grep { /\b(ERROR|FATAL|PANIC):/ } split /\n/, $log;
my @log_deadlocks = grep { /deadlock detected/ } split /\n/, $log;
is(scalar @log_deadlocks, 0, 'the server log reports no deadlock');
is(scalar @log_errors, 0, 'the server log has no ERROR, FATAL or PANIC')
  or utf8_diag(join("\n", @log_errors[ 0 .. ($#log_errors < 9 ? $#log_errors : 9) ]));
my $lock_waits = grep { /still waiting for/ } split /\n/, $log;
note sprintf('worker: %d transitions; deadlocks %d; log errors %d; lock waits '
	  . 'over 200 ms logged: %d', $ws->{transitions}, $deadlocks,
	scalar @log_errors, $lock_waits);

# --- Events and history ---------------------------------------------------------------

my $hist = query_rows($ctl, q{SELECT seq, user_id, status::text AS status,
		previous::text AS previous, reason, message, at::text AS at
	FROM presence.history ORDER BY seq});
my @notes = $listener->all;
my @bad_json = grep { !defined $_->{ev} } @notes;
is(scalar @bad_json, 0, 'every notification is valid JSON');
@notes = grep { defined $_->{ev} } @notes;
my @status_notes = grep { $_->{channel} eq 'presence' } @notes;
my @room_notes = grep { $_->{channel} ne 'presence' } @notes;

my (%note_by_seq, $dup);
foreach my $n (@status_notes)
{
	$dup++ if $note_by_seq{ $n->{ev}{seq} };
	$note_by_seq{ $n->{ev}{seq} } = $n->{ev};
}
my %hist_by_seq = map { $_->{seq} => $_ } @$hist;
my ($missing, $mismatch, $extra) = (0, 0, 0);
my @examples;
foreach my $h (@$hist)
{
	my $e = $note_by_seq{ $h->{seq} };
	if (!$e)
	{
		$missing++;
		push @examples, "history row $h->{seq} was not announced";
		next;
	}
	my $same = $e->{user_id} eq $h->{user_id} && $e->{status} eq $h->{status}
	  && $e->{previous} eq $h->{previous} && $e->{reason} eq $h->{reason}
	  && PresenceModel::same_text($e->{message}, $h->{message})
	  && iso_us($e->{at}) == iso_us($h->{at});
	if (!$same)
	{
		$mismatch++;
		push @examples, "seq $h->{seq}: history and notification differ";
	}
}
foreach my $seq (keys %note_by_seq)
{
	next if $hist_by_seq{$seq};
	$extra++;
	push @examples, "notification $seq has no history row";
}
is($dup // 0, 0, 'no status notification is duplicated');
is($missing, 0, 'every history row has its notification');
is($extra, 0, 'every status notification has its history row');
is($mismatch, 0, 'each notification carries the fields of its history row');
diag(join("\n", @examples[ 0 .. ($#examples < 9 ? $#examples : 9) ])) if @examples;

my $room_status_ok = !grep {
	$_->{ev}{event} eq 'status'
	  && (!$hist_by_seq{ $_->{ev}{seq} }
		|| $hist_by_seq{ $_->{ev}{seq} }{user_id} ne $_->{ev}{user_id})
} @room_notes;
ok($room_status_ok, 'every status event in a room is a history row of that user');

my $increasing = 1;
my $prev_seq = 0;
my %seen_room_seq;
foreach my $n (@notes)
{
	my $seq = $n->{ev}{seq};
	next if $n->{channel} ne 'presence' && $n->{ev}{event} eq 'status';
	$increasing = 0 if $seq <= $prev_seq;
	$prev_seq = $seq;
}
ok($increasing, 'seq strictly increases in arrival order');

# Nothing that was rolled back shows anywhere.
my $leaks = 0;
foreach my $n (@notes)
{
	my $ev = $n->{ev};
	foreach my $v (grep { defined } ($ev->{user_id}, $ev->{message}, $ev->{session_id}))
	{
		$leaks++ if $RB_MARKERS{$v};
	}
	$leaks++ if ref $ev->{meta} eq 'HASH' && exists $ev->{meta}{rb};
}
foreach my $h (@$hist)
{
	$leaks++ if $RB_MARKERS{ $h->{user_id} } || ($h->{message} && $RB_MARKERS{ $h->{message} });
}
my $rb_rows = query_value($ctl, q{SELECT count(*) FROM presence.users WHERE user_id LIKE 'rb\_user\_%'})
  + query_value($ctl, q{SELECT count(*) FROM presence.sessions WHERE session_id LIKE 'rb\_session\_%'})
  + query_value($ctl, q{SELECT count(*) FROM presence.members WHERE session_id LIKE 'rb\_session\_%'});
is($leaks + $rb_rows, 0,
	"nothing of the $COUNT{rolled_back} rolled-back transactions was announced or stored");

# Each user's status events chain: each previous is the status before.
# (An event dated before the previous one of its user is a call whose
# transaction started before a deadline the worker then applied first:
# counted, not an error.)
my (%last_status, %last_at, $broken, $earlier) = ();
($broken, $earlier) = (0, 0);
foreach my $h (@$hist)
{
	my $at = iso_us($h->{at});
	$earlier++ if defined $last_at{ $h->{user_id} } && $at < $last_at{ $h->{user_id} };
	$last_at{ $h->{user_id} } = $at;
	my $before = $last_status{ $h->{user_id} } // 'offline';
	if ($h->{previous} ne $before)
	{
		$broken++;
		push @examples, "seq $h->{seq}: $h->{user_id} $h->{previous} -> $h->{status}, but was $before";
	}
	$last_status{ $h->{user_id} } = $h->{status};
}
is($broken, 0, "each user's status events chain, each from the status before");
note "events dated before their user's previous event: $earlier";

# An event dated at the now() of one of its user's transactions was made
# by that transaction's calls.  If it takes the user to online, one of
# them must be able to: an active heartbeat (or join, an active heartbeat
# too) or set_status.  Not an inactive heartbeat, a disconnect or a leave,
# even when the transaction started before a deadline that the worker
# applied first.
my %tx_at;
foreach my $tx (@committed)
{
	foreach my $c (@{ $tx->{calls} })
	{
		foreach my $u ($c->{fn} eq 'heartbeat_many' ? @{ $c->{users} } : ($c->{user}))
		{
			push @{ $tx_at{"$u\0$tx->{now}"} }, $c;
		}
	}
}
my ($by_calls, $wrong_online) = (0, 0);
foreach my $h (@$hist)
{
	my $calls = $tx_at{"$h->{user_id}\0" . iso_us($h->{at})} or next;
	$by_calls++;
	next unless $h->{status} eq 'online' && $h->{previous} ne 'online';
	my $can = grep {
		($_->{fn} =~ /^heartbeat/ && $_->{active}) || $_->{fn} eq 'join'
		  || $_->{fn} eq 'set_status'
	} @$calls;
	next if $can;
	$wrong_online++;
	push @examples, "seq $h->{seq}: $h->{user_id} $h->{previous} -> online ($h->{reason}) "
	  . 'from ' . join(', ', map { $_->{fn} . ($_->{fn} =~ /^heartbeat/ ? ($_->{active} ? ' active' : ' inactive') : '') } @$calls);
}
is($wrong_online, 0, "no call that cannot make a user online did so ($by_calls events made by calls)")
  or diag(join("\n", grep { /-> online/ } @examples));

# Each (room, user): joins and leaves alternate.
my (%in_room, $bad_room_seq) = ();
$bad_room_seq = 0;
my %room_events;
foreach my $n (@room_notes)
{
	my $ev = $n->{ev};
	my $room = $ROOM_OF_CHANNEL{ $n->{channel} };
	$room_events{ $ev->{event} }++;
	my $key = "$room\0$ev->{user_id}";
	if ($ev->{event} eq 'join')
	{
		$bad_room_seq++ if $in_room{$key};
		$in_room{$key} = 1;
	}
	elsif ($ev->{event} eq 'leave')
	{
		$bad_room_seq++ unless $in_room{$key};
		$in_room{$key} = 0;
	}
	elsif ($ev->{event} =~ /^(update|typing|status)$/)
	{
		$bad_room_seq++ unless $in_room{$key};
	}
}
is($bad_room_seq, 0,
	'in each room, joins and leaves alternate, and updates, typing and status come in between');

my %reasons;
$reasons{"$_->{previous}>$_->{status} $_->{reason}"}++ foreach @$hist;
note sprintf('events: %d history rows, %d status notifications, %d room events (%s)',
	scalar @$hist, scalar @status_notes, scalar @room_notes,
	join(', ', map { "$_ $room_events{$_}" } sort keys %room_events));
note 'status events: ' . join(', ', map { "$_ $reasons{$_}" } sort keys %reasons);

# --- The final state against the model ------------------------------------------------
#
# The committed calls, replayed on the model at their transactions' now()
# (each call first settles its user, as the API does), then everything
# brought to the end time.
my $model = PresenceModel->new(%SETTINGS);
foreach my $tx (sort { $a->{now} <=> $b->{now} || $a->{done} <=> $b->{done} } @committed)
{
	my $now = $tx->{now};
	foreach my $c (@{ $tx->{calls} })
	{
		my $f = $c->{fn};
		if ($f eq 'heartbeat')
		{
			$model->heartbeat($c->{user}, $c->{session}, $c->{active}, $c->{meta},
				$c->{ttl}, $c->{away_after}, $now);
		}
		elsif ($f eq 'heartbeat_many')
		{
			$model->heartbeat_many($c->{users}, $c->{sessions}, $c->{active}, $now);
		}
		elsif ($f eq 'disconnect') { $model->disconnect($c->{user}, $c->{session}, $now); }
		elsif ($f eq 'set_status')
		{
			$model->set_status($c->{user}, $c->{status}, $c->{message},
				defined $c->{until} ? $now + $c->{until} : undef, $now);
		}
		elsif ($f eq 'join') { $model->join_room($c->{room}, $c->{user}, $c->{session}, $c->{meta}, $now); }
		elsif ($f eq 'leave') { $model->leave_room($c->{room}, $c->{user}, $c->{session}, $now); }
		elsif ($f eq 'set_meta') { $model->set_meta($c->{room}, $c->{user}, $c->{session}, $c->{meta}, $now); }
		elsif ($f eq 'typing') { $model->typing($c->{room}, $c->{user}, $c->{is_typing}, $now); }
	}
}
$model->sweep($end_us);

my $got = query_rows($ctl, q{SELECT user_id, status::text AS status, message, sessions
	FROM presence.statuses(?::text[])}, \@USERS);
my (%final, @diff);
foreach my $g (@$got)
{
	my $e = $model->get($g->{user_id});
	$final{ $g->{status} }++;
	foreach my $f (qw(status message sessions))
	{
		push @diff, sprintf('%s (%s, client %d): %s expected %s, got %s', $g->{user_id},
			$class{ $g->{user_id} }, $owner{ $g->{user_id} }, $f,
			$e->{$f} // 'NULL', $g->{$f} // 'NULL')
		  unless PresenceModel::same_text(defined $e->{$f} ? "$e->{$f}" : undef,
			defined $g->{$f} ? "$g->{$f}" : undef);
	}
}
is(scalar @diff, 0, 'the final status, message and sessions of all '
	  . scalar(@USERS) . ' users are what the model computes')
  or utf8_diag(join("\n", @diff[ 0 .. ($#diff < 19 ? $#diff : 19) ]));
note 'final statuses: ' . join(', ', map { "$_ $final{$_}" } sort keys %final);
is(join(',', map { $_->{user_id} } grep { $_->{status} ne 'offline' && $class{ $_->{user_id} } ne 'long' } @$got),
	'', 'every churn and shared user is offline at the end');

# Rooms: members() with their sessions' metadata, room_count(), rooms()
# and typing_users() (all typing has stopped by now).
my @room_diff;
foreach my $room (@ROOMS)
{
	my $em = $model->members_of($room);
	my %gm;
	foreach my $m (@{ query_rows($ctl, q{SELECT user_id, status::text AS status, message, metas::text AS metas
			FROM presence.members(?)}, $room) })
	{
		$gm{ $m->{user_id} } = {
			status => $m->{status}, message => $m->{message},
			metas => { map { $_->{session_id} => PresenceModel::canon_json($_->{meta}) }
				  @{ JSON::PP->new->decode(Encode::encode_utf8($m->{metas})) } },
		};
	}
	my ($es, $gs) = ($json->encode($em), $json->encode(\%gm));
	push @room_diff, "members($room): expected $es, got $gs" unless $es eq $gs;
	my $count = query_value($ctl, 'SELECT presence.room_count(?)', $room);
	push @room_diff, "room_count($room): expected " . scalar(keys %$em) . ", got $count"
	  unless $count == keys %$em;
	my $typing = query_value($ctl, 'SELECT count(*) FROM presence.typing_users(?)', $room);
	push @room_diff, "typing_users($room): $typing, expected none" if $typing;
}
foreach my $u (@USERS)
{
	my $e = join(',', $model->rooms_of($u));
	my $g = join(',', sort map { $_->[0] } @{ $ctl->selectall_arrayref('SELECT presence.rooms(?)', undef, $u) });
	push @room_diff, "rooms($u): expected [$e], got [$g]" unless $e eq $g;
}
is(scalar @room_diff, 0, 'every room has the members, metadata and typing the model computes')
  or utf8_diag(join("\n", @room_diff[ 0 .. ($#room_diff < 9 ? $#room_diff : 9) ]));
note 'members at the end: ' . join(', ', map { "$_ " . query_value($ctl, 'SELECT presence.room_count(?)', $_) } @ROOMS);

$listener->disconnect;
$_->{dbh}->disconnect foreach @clients;
$ctl->disconnect;
$node->stop('fast');
note sprintf('soak test took %.1f s', time - $started);

done_testing();
