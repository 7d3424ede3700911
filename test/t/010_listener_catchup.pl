
# 010_listener_catchup.pl: a listener that loses its connection catches up
# through changes(since) with no gap and no duplicate.
#
# Three psql clients make a seeded random mix of API calls (heartbeats with
# sub-second to 1.5 s ttls and a 0.5 s idle timer, disconnects, busy with an
# `until`, auto, invisible, away, rolled-back heartbeats) while the worker
# ends sessions, makes users idle and expires statuses: a steady stream of
# status events from both.  Meanwhile a client follows the stream the way
# the README says: it keeps the highest seq it has applied; on each
# (re)connection it LISTENs first and then reads changes(last_seq) page by
# page (25 rows a page), and it skips any notification whose seq it has
# already applied.  It loses its connection again and again, mid-stream:
#   - it disconnects with notifications still unread;
#   - its backend is ended by pg_terminate_backend();
#   - it disconnects again after the first page of a catch-up;
#   - and it stays away long enough once that the catch-up takes pages.
# At the end, with the producers done and everything settled:
#   - the seqs it applied strictly increase, and are exactly the seqs in
#     presence.history: each one once, none missing, none extra;
#   - each applied event (from a notification or from changes()) equals its
#     history row: user, status, previous, reason, message and time;
#   - notifications arrived in increasing seq order on every connection;
#   - the disconnections did lose notifications (some events came only
#     through changes()), so the catch-up was put to work.
# The figures (events, from each source, duplicates skipped, pages, the
# catch-up times) are printed with note().
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IO::Select;
use JSON::PP;
use Time::HiRes qw(time);
use Time::Local qw(timegm);
use List::Util qw(max sum);
use PresenceTAP;

my $PAGE = 25;         # rows per changes() call
my $SEED = 20261122;

my $node = presence_node('catchup');
$node->safe_psql('postgres', 'CREATE EXTENSION presence');
ok(defined wait_until(30, sub { defined worker_pid($node, 'postgres') }),
	'the worker runs');
my $admin = db_connect($node);

# --- The producers ------------------------------------------------------------

sub producer_script
{
	my ($c) = @_;
	srand($SEED + $c);
	my $sql = '';
	for my $i (1 .. 600)
	{
		my $u = 'u' . int(rand(30));
		my $s = 's' . int(rand(2));
		my $r = rand();
		if ($r < 0.55)
		{
			my $active = rand() < 0.8 ? 'true' : 'false';
			my $ttl = sprintf('%.1f s', 0.3 + rand(1.2));
			$sql .= "SELECT presence.heartbeat('$u', '$s', active => $active, "
			  . "ttl => '$ttl', away_after => '0.5 s');\n";
		}
		elsif ($r < 0.70)
		{
			$sql .= rand() < 0.5
			  ? "SELECT presence.disconnect('$u', '$s');\n"
			  : "SELECT presence.disconnect('$u');\n";
		}
		elsif ($r < 0.80)
		{
			$sql .= "SELECT presence.set_status('$u', 'busy', 'meeting $i', "
			  . "now() + interval '0.4 s');\n";
		}
		elsif ($r < 0.88)
		{
			$sql .= "SELECT presence.set_status('$u', 'auto');\n";
		}
		elsif ($r < 0.93)
		{
			$sql .= "SELECT presence.set_status('$u', 'invisible');\n";
		}
		elsif ($r < 0.96)
		{
			$sql .= "SELECT presence.set_status('$u', 'away', 'brb');\n";
		}
		else
		{
			$sql .= "BEGIN; SELECT presence.heartbeat('$u', '$s'); ROLLBACK;\n";
		}
		$sql .= "SELECT pg_sleep(0.01);\n";
	}
	return $sql;
}

# --- The client that catches up -------------------------------------------------

my $json = JSON::PP->new;
my %client = (
	dbh => undef,
	select => undef,
	last_seq => 0,
	applied => [],        # in the order applied
	from_notify => 0,
	from_changes => 0,
	skipped => 0,         # notifications already applied through changes()
	pages => 0,
	connections => 0,
	out_of_order => 0,    # notifications not in increasing seq order
	last_note_seq => 0,   # per connection
	catchups => [],       # [seconds, events] of each catch-up
);

# A notification's "at" (ISO 8601 with an offset) as seconds since the epoch.
sub iso_epoch
{
	my ($ts) = @_;
	my ($y, $mo, $d, $h, $mi, $s, $frac, $tz) =
	  $ts =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d(?::?\d\d)?)$/
	  or return undef;
	my $epoch = timegm($s, $mi, $h, $d, $mo - 1, $y) + ($frac // 0);
	if ($tz ne 'Z')
	{
		my ($sign, $th, $tm) = $tz =~ /^([+-])(\d\d):?(\d\d)?$/;
		my $off = $th * 3600 + ($tm // 0) * 60;
		$epoch -= $sign eq '+' ? $off : -$off;
	}
	return $epoch;
}

sub apply_event
{
	my ($ev, $src) = @_;
	if ($ev->{seq} <= $client{last_seq})
	{
		$client{skipped}++;
		return;
	}
	$ev->{src} = $src;
	push @{ $client{applied} }, $ev;
	$client{last_seq} = $ev->{seq};
	$client{ $src eq 'notify' ? 'from_notify' : 'from_changes' }++;
	return;
}

# Take the notifications that have arrived, waiting up to $timeout seconds.
sub pump
{
	my ($timeout) = @_;
	my $dbh = $client{dbh} or return;
	$client{select}->can_read($timeout) if $timeout > 0;
	while (my $n = $dbh->pg_notifies)
	{
		my $p = $json->decode($n->[2]);
		$client{out_of_order}++ if $p->{seq} <= $client{last_note_seq};
		$client{last_note_seq} = $p->{seq};
		apply_event(
			{
				seq => $p->{seq},
				user_id => $p->{user_id},
				status => $p->{status},
				previous => $p->{previous},
				reason => $p->{reason},
				message => $p->{message},
				at => iso_epoch($p->{at}),
			},
			'notify');
	}
	return;
}

# Connect, LISTEN, then catch up through changes(); with $stop_after_page,
# stop after that many pages (the connection is then dropped by the caller).
sub connect_and_catch_up
{
	my ($stop_after_page) = @_;
	my $t0 = time;
	my $before = scalar @{ $client{applied} };
	my $dbh = db_connect($node);
	$client{dbh} = $dbh;
	$client{select} = IO::Select->new($dbh->{pg_socket});
	$client{connections}++;
	$client{last_note_seq} = 0;
	$dbh->do('LISTEN presence');
	my $pages = 0;
	while (1)
	{
		my $rows = query_rows($dbh,
			q{SELECT seq, user_id, status::text AS status, previous::text AS previous,
					 reason, message, extract(epoch FROM at)::float8 AS at
				FROM presence.changes(?, ?)}, $client{last_seq}, $PAGE);
		$pages++;
		apply_event($_, 'changes') foreach @$rows;
		last if @$rows < $PAGE;
		last if defined $stop_after_page && $pages >= $stop_after_page;
	}
	$client{pages} += $pages;
	# Notifications that came during the catch-up are skipped or applied,
	# but only once it is complete: before that they may be ahead of events
	# still to be read from changes().
	pump(0) unless defined $stop_after_page;
	push @{ $client{catchups} },
	  [ time - $t0, scalar(@{ $client{applied} }) - $before, $pages ];
	return;
}

sub drop_connection
{
	my ($how) = @_;
	my $dbh = $client{dbh};
	if ($how eq 'terminate')
	{
		my $pid = $dbh->{pg_pid};
		$admin->do('SELECT pg_terminate_backend(?, 5000)', undef, $pid);
	}
	eval { $dbh->disconnect };
	$client{dbh} = undef;
	return;
}

# --- The run --------------------------------------------------------------------

my @producers = map { start_psql_client($node, 'postgres', producer_script($_), "p$_") } 1 .. 3;
my $t_start = time;
connect_and_catch_up();

my @ways = ('unread', 'terminate', 'mid-catch-up', 'long');
my %done_ways;
my $cycle = 0;
my $next_drop = time + 0.5;
while (grep { $_->{h}->pumpable } @producers)
{
	pump(0.05);
	next if time < $next_drop;

	my $how = $ways[ $cycle++ % @ways ];
	$done_ways{$how}++;
	my $away = $how eq 'long' ? 2.0 : 0.3 + 0.4 * ($cycle % 3);
	if ($how eq 'unread')
	{
		# let notifications pile up unread, then leave
		wait_until(1, sub { $client{select}->can_read(0) }, 0.01);
	}
	drop_connection($how eq 'terminate' ? 'terminate' : 'disconnect');
	my $back = time + $away;
	wait_until($away + 1, sub { time >= $back }, 0.02);    # away, while events go on
	if ($how eq 'mid-catch-up')
	{
		connect_and_catch_up(1);
		drop_connection('disconnect');
		my $again = time + 0.3;
		wait_until(2, sub { time >= $again }, 0.02);
	}
	connect_and_catch_up();
	$next_drop = time + 0.5 + 0.2 * ($cycle % 3);
}
my $t_producers = time - $t_start;

my @status = map { stop_psql_client($_) } @producers;
is_deeply(\@status, [ 0, 0, 0 ], 'the producers ran to the end');
my @perr = map { client_stderr($_) =~ /^.*(?:ERROR|FATAL|PANIC):.*$/mg } @producers;
is_deeply(\@perr, [], 'without errors');

# Everything settles: no session left, no status waiting to expire.
ok( defined wait_until(30,
		sub {
			pump(0);
			query_value($admin, q{SELECT (SELECT count(*) FROM presence.sessions)
										+ (SELECT count(*) FROM presence.users
											WHERE manual_until IS NOT NULL)}) == 0;
		},
		0.05),
	'the worker settles everything the producers left');
my $settle = time + 1.0;
while (time < $settle) { pump(0.1); }
pump(0);

# --- What the client assembled --------------------------------------------------

my $history = query_rows($admin,
	q{SELECT seq, user_id, status::text AS status, previous::text AS previous,
			 reason, message, extract(epoch FROM at)::float8 AS at
		FROM presence.history ORDER BY seq});
my @applied = @{ $client{applied} };

cmp_ok(scalar @$history, '>', 500, 'the producers and the worker made many events')
  or diag scalar @$history;
is(scalar(grep { $applied[$_]{seq} <= $applied[ $_ - 1 ]{seq} } 1 .. $#applied),
	0, 'the seqs applied strictly increase (no duplicate)');
my %hseq = map { $_->{seq} => $_ } @$history;
my %aseq = map { $_->{seq} => $_ } @applied;
my @missing = grep { !$aseq{$_} } map { $_->{seq} } @$history;
my @extra = grep { !$hseq{$_} } map { $_->{seq} } @applied;
is_deeply(\@missing, [], 'every seq in history was applied (no gap)')
  or diag 'applied around the first gap: ' . join(' ',
	map { "$_->{seq}/$_->{src}" }
	  grep { abs($_->{seq} - $missing[0]) < 30 } @applied);
is_deeply(\@extra, [], 'nothing was applied that is not in history');
is(scalar @applied, scalar @$history, 'as many events applied as history rows');

my @differ;
foreach my $a (@applied)
{
	my $h = $hseq{ $a->{seq} } or next;
	my @d = grep { ($a->{$_} // '<null>') ne ($h->{$_} // '<null>') }
	  qw(user_id status previous reason message);
	push @d, 'at' unless defined $a->{at} && abs($a->{at} - $h->{at}) < 1e-5;
	push @differ, "seq $a->{seq} ($a->{src}): " . join(', ', @d) if @d;
}
is_deeply(\@differ, [], 'each applied event equals its history row');
is($client{out_of_order}, 0, 'notifications arrived in increasing seq order');
cmp_ok($client{from_changes}, '>', 0,
	'some events came only through changes() (the disconnections lost them)');
cmp_ok($client{from_notify}, '>', 0, 'and most through notifications');
is_deeply([ sort keys %done_ways ], [ sort @ways ],
	'every way of losing the connection was tried');
my ($long) = grep { $_->[2] > 1 } @{ $client{catchups} };
ok(defined $long, 'a catch-up took several pages');

my @c = @{ $client{catchups} };
note sprintf('%.1f s of producers, %d events in history (%.0f/s); %d connections',
	$t_producers, scalar @$history, @$history / $t_producers, $client{connections});
note sprintf('applied %d: %d from notifications, %d from changes() in %d pages; '
	  . '%d notifications skipped as already applied',
	scalar @applied, $client{from_notify}, $client{from_changes}, $client{pages},
	$client{skipped});
note sprintf('catch-ups: %d, up to %d events and %.3f s each (mean %.3f s); '
	  . 'disconnections: %s',
	scalar @c, max(map { $_->[1] } @c), max(map { $_->[0] } @c),
	sum(map { $_->[0] } @c) / @c,
	join(', ', map { "$done_ways{$_} $_" } sort keys %done_ways));
my %by_reason;
$by_reason{ $_->{reason} }++ foreach @$history;
note 'events by reason: ' . join(', ', map { "$_ $by_reason{$_}" } sort keys %by_reason);

my $v = table_violations($admin);
is_deeply($v, { map { $_ => 0 } keys %$v }, 'the tables are consistent')
  or diag explain $v;

drop_connection('disconnect');
$admin->disconnect;
$node->stop('fast');
done_testing();
