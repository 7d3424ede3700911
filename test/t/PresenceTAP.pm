
# PresenceTAP.pm: helpers shared by the presence TAP tests (test/t/*.pl).
#
# Not a test itself (PROVE_TESTS runs test/t/*.pl only).  A test loads it with
#   use FindBin;
#   use lib $FindBin::RealBin;
#   use PresenceTAP;
#
# What it offers:
#   presence_node(NAME, %opts)   a new cluster with the library preloaded
#   db_connect($node, DB)        a DBD::Pg handle (AutoCommit, RaiseError)
#   query_value / query_row      one value / one row of a query on a handle
#   wait_until(SECONDS, CODE)    poll CODE every 50 ms until it returns true
#                                or the time runs out; returns the seconds it
#                                took, or undef on timeout
#   presence_backends($node)     presence launcher/worker rows of
#                                pg_stat_activity
#   worker_pid($node, DB)        pid of the worker serving DB, or undef
#   log_position / log_since     read the server log from a point on
#   PresenceTAP::Listener        a LISTEN connection that collects events
#   room_channel($dbh, ROOM)     the NOTIFY channel of a room
#   timestamps_equal($dbh, A, B) whether two timestamptz texts are equal
#   wait_worker_asleep($dbh, S, TIMEOUT)
#                                wait until the worker sleeps towards a
#                                wake-up more than S seconds away
#
# Nothing here ever sleeps blindly waiting for the worker: every wait is a
# poll against a deadline.
package PresenceTAP;

use strict;
use warnings;

use DBI;
use IO::Select;
use JSON::PP;
use Time::HiRes qw(time usleep);
use Test::More;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

use Exporter 'import';
our @EXPORT = qw(presence_node db_connect query_value query_row query_rows
  wait_until presence_backends worker_pid launcher_pid log_position
  log_since epoch_of EVENT_KEYS room_channel timestamps_equal
  wait_worker_asleep);

# The keys of every event payload, sorted.
use constant EVENT_KEYS => join(',',
	sort qw(seq event user_id status previous reason message last_active at));

# presence_node(NAME, preload => 1, startup_grace => '0', conf => '...',
#               init => {...}, start => 1)
sub presence_node
{
	my ($name, %opts) = @_;
	my $preload = $opts{preload} // 1;
	my $grace = $opts{startup_grace} // '0';
	my $node = PostgreSQL::Test::Cluster->new($name);

	$node->init(%{ $opts{init} // {} });
	# Polling would flood the log with log_statement = all.
	my $conf = "log_statement = ddl\n";
	if ($preload)
	{
		$conf .= "shared_preload_libraries = 'presence'\n";
		$conf .= "presence.startup_grace = '$grace'\n";
	}
	$conf .= $opts{conf} if defined $opts{conf};
	$node->append_conf('postgresql.conf', $conf);
	$node->start if $opts{start} // 1;
	return $node;
}

# A DBD::Pg connection to a node's database.
sub db_connect
{
	my ($node, $db) = @_;
	$db //= 'postgres';
	my $dsn = sprintf('dbi:Pg:host=%s;port=%d;dbname=%s',
		$node->host, $node->port, $db);
	return DBI->connect($dsn, '', '',
		{ AutoCommit => 1, RaiseError => 1, PrintError => 0 });
}

sub query_value
{
	my ($dbh, $sql, @binds) = @_;
	my $row = $dbh->selectrow_arrayref($sql, undef, @binds);
	return $row ? $row->[0] : undef;
}

sub query_row
{
	my ($dbh, $sql, @binds) = @_;
	return $dbh->selectrow_hashref($sql, undef, @binds);
}

sub query_rows
{
	my ($dbh, $sql, @binds) = @_;
	return $dbh->selectall_arrayref($sql, { Slice => {} }, @binds);
}

# Poll $code every $interval seconds (0.05 by default) until it returns
# true or $timeout seconds have passed.  Returns the seconds waited, or
# undef when it timed out.  Errors from $code count as "not yet" (a server
# that is restarting refuses connections for a while).
sub wait_until
{
	my ($timeout, $code, $interval) = @_;
	$interval //= 0.05;
	my $start = time;
	my $deadline = $start + $timeout;
	while (1)
	{
		my $ok = eval { $code->() };
		return time - $start if $ok;
		return undef if time >= $deadline;
		usleep(int($interval * 1_000_000));
	}
}

# The presence launcher and worker rows of pg_stat_activity, as hashes
# with pid, backend_type and datname.
sub presence_backends
{
	my ($node) = @_;
	my $out = $node->safe_psql('postgres',
		q{SELECT pid, backend_type, coalesce(datname, '')
		    FROM pg_stat_activity
		   WHERE backend_type IN ('presence launcher', 'presence worker')
		   ORDER BY backend_type, datname, pid});
	my @rows;
	foreach my $line (split /\n/, $out)
	{
		my ($pid, $type, $db) = split /\|/, $line, 3;
		push @rows, { pid => $pid, backend_type => $type, datname => $db };
	}
	return @rows;
}

# The pid of the worker connected to database $db, or undef (several: the
# first).
sub worker_pid
{
	my ($node, $db) = @_;
	my ($w) = grep { $_->{backend_type} eq 'presence worker'
		  && $_->{datname} eq $db } presence_backends($node);
	return $w ? $w->{pid} : undef;
}

sub launcher_pid
{
	my ($node) = @_;
	my ($l) = grep { $_->{backend_type} eq 'presence launcher' }
	  presence_backends($node);
	return $l ? $l->{pid} : undef;
}

# Where the server log ends now; log_since returns what was written after.
sub log_position
{
	my ($node) = @_;
	return -s $node->logfile // 0;
}

sub log_since
{
	my ($node, $pos) = @_;
	return PostgreSQL::Test::Utils::slurp_file($node->logfile, $pos);
}

# A timestamptz (as text) as seconds since the epoch, computed by the
# server so that no time zone parsing happens here.
sub epoch_of
{
	my ($dbh, $ts) = @_;
	return query_value($dbh, 'SELECT extract(epoch FROM ?::timestamptz)::float8',
		$ts);
}

# The NOTIFY channel of a room, as the server names it.
sub room_channel
{
	my ($dbh, $room) = @_;
	return query_value($dbh, 'SELECT presence.room_channel(?)', $room);
}

# Whether two timestamptz texts denote the same instant, by the server.
sub timestamps_equal
{
	my ($dbh, $x, $y) = @_;
	return query_value($dbh, 'SELECT ?::timestamptz = ?::timestamptz', $x, $y);
}

# Wait (polling every 20 ms, up to $timeout seconds) until the worker has
# gone to sleep towards a wake-up more than $min_left seconds away.  Returns
# { wake => epoch of next_wake, left => seconds left }, or undef on timeout.
sub wait_worker_asleep
{
	my ($dbh, $min_left, $timeout) = @_;
	my $row;
	my $ok = wait_until(
		$timeout,
		sub {
			$row = query_row($dbh,
				q{SELECT extract(epoch FROM next_wake)::float8 AS wake,
						 extract(epoch FROM next_wake - clock_timestamp())::float8
						   AS left
					FROM presence.worker_status()});
			return $row && defined $row->{left} && $row->{left} > $min_left;
		},
		0.02);
	return defined $ok ? $row : undef;
}

package PresenceTAP::Listener;

use strict;
use warnings;

use IO::Select;
use JSON::PP;
use Time::HiRes qw(time);

# PresenceTAP::Listener->new($node, $db, @channels): a connection that
# LISTENs on @channels (default: presence) and collects what arrives.
# Every notification becomes a hash:
#   channel, pid (of the notifying backend), payload (text), received
#   (local time, float seconds), ev (the decoded payload, or undef when it
#   is not JSON), json_error
sub new
{
	my ($class, $node, $db, @channels) = @_;
	@channels = ('presence') unless @channels;
	my $dbh = PresenceTAP::db_connect($node, $db);
	$dbh->do('LISTEN ' . $dbh->quote_identifier($_)) foreach @channels;
	my $self = {
		dbh => $dbh,
		select => IO::Select->new($dbh->{pg_socket}),
		notes => [],
		json => JSON::PP->new,
	};
	return bless $self, $class;
}

sub dbh { return $_[0]->{dbh}; }

# All notifications received so far.
sub all { return @{ $_[0]->{notes} }; }

# Wait up to $timeout seconds for the socket to become readable, then take
# every notification that has arrived.  Returns the number taken.
sub pump
{
	my ($self, $timeout) = @_;
	my $n = 0;
	$self->{select}->can_read($timeout) if $timeout > 0;
	while (my $note = $self->{dbh}->pg_notifies)
	{
		my ($channel, $pid, $payload) = @$note;
		my $rec = {
			channel => $channel,
			pid => $pid,
			payload => $payload,
			received => time,
		};
		$rec->{ev} = eval { $self->{json}->decode($payload) };
		$rec->{json_error} = $@ unless defined $rec->{ev};
		push @{ $self->{notes} }, $rec;
		$n++;
	}
	return $n;
}

# The notifications received so far for which $filter returns true.
sub matching
{
	my ($self, $filter) = @_;
	return grep { $filter->($_) } @{ $self->{notes} };
}

# The notifications received so far about one user, in arrival order.
sub for_user
{
	my ($self, $user) = @_;
	return $self->matching(
		sub { defined $_[0]->{ev} && ($_[0]->{ev}{user_id} // '') eq $user });
}

# Collect until $filter matches at least $count notifications (default 1)
# or $timeout seconds pass.  Returns the matching notifications (possibly
# fewer than $count on timeout).
sub wait_for
{
	my ($self, $filter, $timeout, $count) = @_;
	$count //= 1;
	my $deadline = time + $timeout;
	while (1)
	{
		$self->pump(0);
		my @m = $self->matching($filter);
		return @m if @m >= $count;
		my $left = $deadline - time;
		return @m if $left <= 0;
		$self->pump($left < 0.2 ? $left : 0.2);
	}
}

# The notifications received so far on one channel, in arrival order.
sub on_channel
{
	my ($self, $channel) = @_;
	return $self->matching(sub { $_[0]->{channel} eq $channel });
}

# Wait for $count events of $user with status $status.
sub wait_for_user_status
{
	my ($self, $user, $status, $timeout, $count) = @_;
	return $self->wait_for(
		sub {
			my $ev = $_[0]->{ev};
			defined $ev
			  && ($ev->{user_id} // '') eq $user
			  && ($ev->{status} // '') eq $status;
		},
		$timeout, $count);
}

# Keep collecting for $seconds (to catch late duplicates).
sub drain
{
	my ($self, $seconds) = @_;
	my $deadline = time + $seconds;
	while ((my $left = $deadline - time) > 0)
	{
		$self->pump($left < 0.2 ? $left : 0.2);
	}
	$self->pump(0);
	return;
}

sub disconnect
{
	my ($self) = @_;
	$self->{dbh}->disconnect if $self->{dbh};
	$self->{dbh} = undef;
	return;
}

1;

# ---------------------------------------------------------------------------
# Helpers for the fault tests (008-010): psql clients that run in the
# background, and consistency checks of the tables.
# ---------------------------------------------------------------------------
#
#   start_psql_client($node, DB, SQL, NAME)
#                                a psql running the script SQL in the
#                                background (application_name NAME, query
#                                output discarded, errors do not stop it
#                                unless the script sets ON_ERROR_STOP)
#   client_stderr($client)       what it printed on stderr so far
#   stop_psql_client($client, SIGNAL)
#                                send it SIGNAL (if given) and wait, up to
#                                60 s, for it to end; returns its exit
#                                status (-1: killed after the 60 s)
#   table_violations($dbh)       named counts of rows that break an
#                                invariant of the tables (all 0 when
#                                consistent)
#   history_seqs($dbh)           every seq in presence.history, in order
package PresenceTAP;

use IPC::Run;

push @PresenceTAP::EXPORT, qw(start_psql_client stop_psql_client client_stderr
  table_violations history_seqs);

my $client_seq = 0;

sub start_psql_client
{
	my ($node, $db, $sql, $name) = @_;
	$client_seq++;
	$name //= "client$client_seq";
	my $file = "$PostgreSQL::Test::Utils::tmp_check/psql_${name}_$client_seq.sql";
	open(my $fh, '>', $file) or die "could not write $file: $!";
	print $fh $sql;
	close $fh;
	# Output goes to files, not pipes: a client nobody pumps must never
	# block on a full pipe.
	my $h = IPC::Run::start(
		[
			'psql', '-X', '-q', '-o', '/dev/null', '-f', $file, '-d',
			$node->connstr($db) . " application_name=$name"
		],
		'<', '/dev/null', '>', "$file.out", '2>', "$file.err");
	return { h => $h, name => $name, err_file => "$file.err" };
}

# What a client printed on stderr so far.
sub client_stderr
{
	my ($client) = @_;
	return -e $client->{err_file}
	  ? PostgreSQL::Test::Utils::slurp_file($client->{err_file})
	  : '';
}

sub stop_psql_client
{
	my ($client, $signal) = @_;
	my $h = $client->{h};
	if (defined $signal)
	{
		eval { $h->signal($signal) } if $h->pumpable;
	}
	my $done = wait_until(60, sub { !$h->pumpable });
	if (!defined $done)
	{
		$h->kill_kill;
		return -1;
	}
	$h->finish;
	return ($h->full_results)[0];
}

sub table_violations
{
	my ($dbh) = @_;
	my %checks = (
		members_without_session => q{
			SELECT count(*) FROM presence.members m
			 WHERE NOT EXISTS (SELECT FROM presence.sessions s
								WHERE s.user_id = m.user_id
								  AND s.session_id = m.session_id)},
		sessions_without_user => q{
			SELECT count(*) FROM presence.sessions s
			 WHERE NOT EXISTS (SELECT FROM presence.users u
								WHERE u.user_id = s.user_id)},
		typing_outside_room => q{
			SELECT count(*) FROM presence.typing t
			 WHERE NOT EXISTS (SELECT FROM presence.members m
								WHERE m.room = t.room AND m.user_id = t.user_id)},
		present_without_session => q{
			SELECT count(*) FROM presence.users u
			 WHERE u.status <> 'offline'
			   AND NOT EXISTS (SELECT FROM presence.sessions s
								WHERE s.user_id = u.user_id)},
		offline_with_session => q{
			SELECT count(*) FROM presence.users u
			 WHERE u.status = 'offline'
			   AND u.manual IS DISTINCT FROM 'invisible'
			   AND EXISTS (SELECT FROM presence.sessions s
							WHERE s.user_id = u.user_id)},
		duplicate_seqs => q{
			SELECT count(*) - count(DISTINCT seq) FROM presence.history},
		seqs_beyond_sequence => q{
			SELECT count(*) FROM presence.history
			 WHERE seq > (SELECT last_value FROM presence.seq)},
		broken_history_chains => q{
			SELECT count(*) FROM (
				SELECT previous, lag(status) OVER (PARTITION BY user_id
												   ORDER BY seq) AS before
				  FROM presence.history) h
			 WHERE before IS NOT NULL AND before <> previous},
		status_not_last_announced => q{
			SELECT count(*) FROM presence.users u
			 WHERE u.status <> coalesce(
					(SELECT h.status FROM presence.history h
					  WHERE h.user_id = u.user_id
					  ORDER BY h.seq DESC LIMIT 1), 'offline')},
	);
	my %v;
	$v{$_} = query_value($dbh, $checks{$_}) foreach keys %checks;
	return \%v;
}

sub history_seqs
{
	my ($dbh) = @_;
	return $dbh->selectcol_arrayref('SELECT seq FROM presence.history ORDER BY seq');
}

1;
