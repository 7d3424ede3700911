# 013_watch.pl: presence_watch, the live terminal viewer, as scripts and
# people see it.
#
# It runs the presence_watch installed in PostgreSQL's bindir (make
# installcheck puts the bindir first in PATH) against a cluster with the
# worker and short timers, and checks:
#  1. --json: the events it prints (heartbeats, status changes, the worker's
#     idle and timeout transitions) are exactly presence.changes(), field by
#     field, each once, in seq order, with the payload's keys;
#  2. a server restart while it runs: it says it is disconnected, retries
#     (the role it uses cannot log in for a while, so events happen while it
#     is out, the worker's among them), reconnects, and catches up through
#     changes(): the whole stream is still exactly the history, no gap, no
#     duplicate, the recovered events marked "caught_up"; then its backend
#     is terminated while a writer commits events without pause (during the
#     backoff, the catch-up, between LISTEN and the snapshot): the stream is
#     still exactly the history; --since 0 replays the history; plain line
#     output when stdout is not a terminal;
#  3. each startup error: one line on stderr, nothing on stdout, its exit
#     code (bad arguments 2, bad connection string 3, unreachable 4, no
#     extension 5, permission denied 6); a room nobody is in yet is no
#     error: rooms exist as soon as someone joins, and its first join shows;
#     a reconnection to a server that accepts and then says nothing: it
#     gives up after PGCONNECT_TIMEOUT and says so, 'q' still quits at once,
#     and it connects again once the server answers;
#  4. under tmux, what a person sees: users in order (online, busy, away,
#     offline) with the right coloured dots, status, message, "ago" and
#     session count; a silent heartbeat and an activity heartbeat updating
#     the row; away after the idle timer; the room view with a member's
#     metadata and who is typing (and no colour with NO_COLOR); the
#     "disconnected, retrying" header during the restart; and 'q' quitting
#     with the terminal restored (main screen back, cursor shown, the tty's
#     modes as before).
# Every wait polls with a deadline.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use IO::Select;
use IO::Socket::INET;
use IO::Socket::UNIX;
use POSIX ();
use JSON::PP;
use PresenceTAP;

my $DOT = "\xe2\x97\x8f";    # ● in UTF-8
$ENV{LC_ALL} = $ENV{LANG} = 'C.UTF-8';
my $json = JSON::PP->new;

# --- The program: installed in the bindir, found first in PATH --------------

my $bindir = `pg_config --bindir`;
chomp $bindir;
my ($WATCH) = grep { -x "$_/presence_watch" } split /:/, $ENV{PATH};
$WATCH = "$WATCH/presence_watch" if defined $WATCH;
ok(defined $WATCH && $WATCH eq "$bindir/presence_watch",
	'presence_watch is installed in the bindir and found there in PATH')
  or BAIL_OUT("presence_watch not found in $bindir (make install installs it)");
like(`$WATCH --version`, qr/^presence_watch \(presence\) \d/, '--version');
like(`$WATCH --help`, qr/Exit status:.*6\s+permission denied/s,
	'--help documents the exit codes');

# --- The cluster ---------------------------------------------------------------

my $node = presence_node('watch');
$node->safe_psql('postgres', q{
	CREATE EXTENSION presence;
	CREATE ROLE watcher LOGIN;
	GRANT USAGE ON SCHEMA presence TO watcher;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA presence TO watcher;
	CREATE ROLE nogrants LOGIN;
});
$node->safe_psql('postgres', 'CREATE DATABASE noext');
ok(defined wait_until(30, sub { defined worker_pid($node, 'postgres') }),
	'the worker runs');
my $dbh = db_connect($node);
my $tmp = $PostgreSQL::Test::Utils::tmp_check;
my $conn = $node->connstr('postgres');

sub sql { return $dbh->do($_[0]); }

# --- Watchers run in the background, output in files ---------------------------

my $nwatch = 0;

sub start_watch
{
	my (@args) = @_;
	$nwatch++;
	my $w = { out => "$tmp/watch$nwatch.out", err => "$tmp/watch$nwatch.err" };
	$w->{h} = IPC::Run::start([ $WATCH, @args ],
		'<', '/dev/null', '>', $w->{out}, '2>', $w->{err});
	return $w;
}

sub wout { return -e $_[0]->{out} ? slurp_file($_[0]->{out}) : ''; }
sub werr { return -e $_[0]->{err} ? slurp_file($_[0]->{err}) : ''; }

# The complete JSON lines printed so far, decoded.
sub events_of
{
	my ($w) = @_;
	my $text = wout($w);
	$text =~ s/[^\n]*\z//;    # a line still being written
	return map { $json->decode($_) } split /\n/, $text;
}

sub wait_events
{
	my ($w, $timeout, $cond) = @_;
	return wait_until($timeout, sub { $cond->(events_of($w)) }, 0.05);
}

# SIGTERM, then its exit status (0 when it left cleanly).
sub stop_watch
{
	my ($w) = @_;
	my $h = $w->{h};
	eval { $h->signal('TERM') };
	if (!defined wait_until(10, sub { !$h->pumpable }))
	{
		$h->kill_kill;
		return -1;
	}
	$h->finish;
	return $h->full_result(0);
}

# The history after $since, as the JSON stream must carry it.
sub history_after
{
	my ($since) = @_;
	return query_rows($dbh, q{
		SELECT seq, user_id, status::text AS status, previous::text AS previous,
			   reason, message, last_active::text AS last_active, at::text AS at
		  FROM presence.changes(?, 100000)}, $since);
}

# Check that the events are exactly the history after $since.
sub check_stream
{
	my ($name, $since, @events) = @_;
	my $rows = history_after($since);
	is_deeply([ map { $_->{seq} } @events ], [ map { $_->{seq} } @$rows ],
		"$name: every event once, in seq order, none missing")
	  or return;
	my @bad;
	for my $i (0 .. $#events)
	{
		my ($e, $r) = ($events[$i], $rows->[$i]);
		my @keys = sort keys %$e;
		my @want = split /,/, EVENT_KEYS;
		push @want, 'caught_up' if $e->{caught_up};
		my $want_keys = join(',', sort @want);
		push @bad, "seq $r->{seq}: keys " . join(',', @keys)
		  unless join(',', @keys) eq $want_keys;
		for my $f (qw(user_id status previous reason message))
		{
			push @bad, "seq $r->{seq}: $f"
			  unless ($e->{$f} // "\0") eq ($r->{$f} // "\0");
		}
		push @bad, "seq $r->{seq}: at"
		  unless $e->{event} eq 'status' && timestamps_equal($dbh, $e->{at}, $r->{at});
		push @bad, "seq $r->{seq}: last_active"
		  unless defined $e->{last_active} == defined $r->{last_active}
		  && (!defined $r->{last_active}
			|| timestamps_equal($dbh, $e->{last_active}, $r->{last_active}));
	}
	is(join('; ', @bad), '', "$name: each event equals its history row, with the payload's keys");
}

# --- tmux: a private server, panes of 120 x 30 ----------------------------------

delete $ENV{TMUX};
delete $ENV{NO_COLOR};
$ENV{TMUX_TMPDIR} = PostgreSQL::Test::Utils::tempdir_short();
my $TMUX_SOCKET = "presence-watch-$$";
my $have_tmux = system('sh', '-c', 'command -v tmux >/dev/null') == 0;
ok($have_tmux, 'tmux is installed (scripts/setup.sh installs it)');
my $tmux_conf = "$ENV{TMUX_TMPDIR}/tmux.conf";
append_to_file($tmux_conf, "set -g status off\n");

sub tmux
{
	my @cmd = ('tmux', '-L', $TMUX_SOCKET, '-f', $tmux_conf, @_);
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '<', '/dev/null', '>', \$out, '2>', \$err);
	return $out;
}

END
{
	local $?;
	system('tmux', '-L', $TMUX_SOCKET, 'kill-server') if $have_tmux;
}

sub shell_quote { my $s = shift; $s =~ s/'/'\\''/g; return "'$s'"; }

# A tmux session running presence_watch in a UTF-8 locale; afterwards the
# pane says how it ended and whether the tty's modes are as before, and
# stays open (cat waits for input) until the tmux server is killed.
sub tmux_watch
{
	my ($name, $env, @args) = @_;
	my $cmd = 'echo before-watch; s=$(stty -g); '
	  . "env LANG=C.UTF-8 LC_ALL=C.UTF-8 $env "
	  . join(' ', map { shell_quote($_) } $WATCH, @args)
	  . '; rc=$?; if [ "$(stty -g)" = "$s" ]; then m=restored; else m=CHANGED; fi; '
	  . 'echo "watch exited $rc, terminal modes $m"; exec cat >/dev/null';
	tmux('new-session', '-d', '-s', $name, '-x', '120', '-y', '30', $cmd);
	return $name;
}

sub screen { return tmux('capture-pane', '-p', '-t', $_[0]); }
sub screen_colors { return tmux('capture-pane', '-e', '-p', '-t', $_[0]); }

# Poll the pane until $check->(text) is true; the last capture either way.
my $last_screen = '';

sub wait_screen
{
	my ($name, $timeout, $check) = @_;
	my $ok = wait_until($timeout,
		sub { $last_screen = screen($name); $check->($last_screen) }, 0.1);
	diag("screen of $name:\n$last_screen") unless defined $ok;
	return defined $ok;
}

# The line of the table that shows $user.
sub row_of
{
	my ($text, $user) = @_;
	my ($line) = grep { /^ \S+ \Q$user\E\s/ } split /\n/, $text;
	return $line // '';
}

sub row_index
{
	my ($text, $user) = @_;
	my @lines = split /\n/, $text;
	my ($i) = grep { $lines[$_] =~ /^ \S+ \Q$user\E\s/ } 0 .. $#lines;
	return $i // -1;
}

# =============================================================================
# 1. --json, and the users view starting at the same time
# =============================================================================

my $jw = start_watch("$conn user=watcher application_name=watch_json", '--json');
ok(defined wait_until(15, sub { werr($jw) =~ /listening on "presence" after seq (\d+)/ }),
	'--json: connected and listening (said on stderr)')
  or diag(werr($jw));
my ($start_seq) = werr($jw) =~ /after seq (\d+)/;
$start_seq //= 0;

my $T1;
if ($have_tmux)
{
	$T1 = tmux_watch('users', '', "$conn user=watcher");
	ok(wait_screen($T1, 15, sub { $_[0] =~ /connected/ && $_[0] =~ /USER\s+STATUS/ }),
		'users view: the table is up');
}

sql(q{SELECT presence.heartbeat('alice', 't1', ttl => '1h', away_after => '1h')});
sql(q{SELECT presence.heartbeat('alice', 't2', ttl => '1h', away_after => '1h')});
sql(q{SELECT presence.heartbeat('carol', 'laptop', ttl => '1h', away_after => '0')});
sql(q{SELECT presence.heartbeat('bob', 'phone', ttl => '1h', away_after => '1h')});
sql(q{SELECT presence.set_status('bob', 'busy', 'In a meeting')});
sql(q{SELECT presence.heartbeat('dave', 'desktop', ttl => '1h', away_after => '1h')});
sql(q{SELECT presence.disconnect('dave')});
sql(q{SELECT presence.heartbeat('frank', 'tab', ttl => '1h', away_after => '1s')});
sql(q{SELECT presence.heartbeat('gina', 'tab', ttl => '1500ms', away_after => '1h')});

my $got = wait_events($jw, 20, sub {
	(grep { $_->{user_id} eq 'frank' && $_->{reason} eq 'idle' } @_)
	  && (grep { $_->{user_id} eq 'gina' && $_->{reason} eq 'timeout' } @_)
});
ok(defined $got, '--json: the worker\'s idle and timeout transitions arrive');
my @events = events_of($jw);
note scalar(@events) . ' events on the JSON stream';
check_stream('--json', $start_seq, @events);
my %reasons = map { $_->{reason} => 1 } @events;
ok($reasons{$_}, "--json: an event with reason $_")
  foreach qw(connect manual disconnect idle timeout);
ok(!(grep { $_->{caught_up} } @events), '--json: live events are not marked caught_up');
like((split /\n/, wout($jw))[0], qr/^\{"seq":\d+,"event":"status","user_id":"alice"/,
	'--json: the NOTIFY payload as it is');

# =============================================================================
# 4. What a person sees: the users view
# =============================================================================

SKIP:
{
	skip 'tmux is missing', 1 unless $have_tmux;

	my $ok = wait_screen($T1, 10, sub {
		row_of($_[0], 'gina') =~ /offline/ && row_of($_[0], 'frank') =~ /away/
	});
	ok($ok, 'users view: the events show up');
	my $s = $last_screen;
	like((split /\n/, $s)[0],
		qr/presence_watch · postgres · 1 online · 1 busy · 2 away · connected/,
		'users view: header with the database, the counts and "connected"');
	like(row_of($s, 'alice'), qr/^ $DOT alice\s+online\s+(just now|\d+ s ago)\s+2$/,
		'alice: online, two sessions');
	like(row_of($s, 'bob'), qr/^ $DOT bob\s+busy\s+In a meeting\s+(just now|\d+ s ago)\s+1$/,
		'bob: busy, his message, one session');
	like(row_of($s, 'carol'), qr/^ $DOT carol\s+away\s+(just now|\d+ s ago)\s+1$/,
		'carol: away');
	like(row_of($s, 'frank'), qr/^ $DOT frank\s+away\s+(just now|\d+ s ago)\s+1$/,
		'frank: away after his idle timer');
	like(row_of($s, 'dave'), qr/^ $DOT dave\s+offline\s+(just now|\d+ s ago)\s+0$/,
		'dave: offline, recently seen, no session');
	like(row_of($s, 'gina'), qr/^ $DOT gina\s+offline\s+(just now|\d+ s ago)\s+0$/,
		'gina: offline after her ttl');
	my @order = map { row_index($s, $_) } qw(alice bob carol frank gina dave);
	is_deeply([ sort { $a <=> $b } @order ], \@order,
		'order: online, busy, away (by id), offline (most recently seen first)')
	  or diag("rows at @order");
	ok(!(grep { $_ < 0 } @order), 'every user has a row');
	like($s, qr/recent events\n(?:.*\n)*.*#\d+  gina online → offline \(timeout\)/,
		'recent events: the timeout, with its seq');

	my $c = screen_colors($T1);
	my %colour = (alice => 32, bob => 31, carol => 33, frank => 33, dave => 90, gina => 90);
	for my $u (sort keys %colour)
	{
		my ($line) = grep { /\Q$DOT\E\S*\s+\Q$u\E\s/ } split /\n/, $c;
		like($line // '', qr/\e\[$colour{$u}m$DOT/,
			"$u\'s dot is " . { 32 => 'green', 31 => 'red', 33 => 'yellow', 90 => 'grey' }->{$colour{$u}});
	}

	# "ago" moves on; a heartbeat brings it back.
	ok(wait_screen($T1, 15, sub { row_of($_[0], 'carol') =~ /\d+ s ago/ }),
		'carol\'s last activity turns into "N s ago"');
	like(row_of($last_screen, 'alice'), qr/\d+ s ago/, 'so does alice\'s');
	sql(q{SELECT presence.heartbeat('carol', 'laptop')});
	ok(wait_screen($T1, 10, sub { row_of($_[0], 'carol') =~ /online\s+just now\s+1$/ }),
		'an activity heartbeat: carol online, "just now" (an event)');
	{
		# a heartbeat that changes no status announces nothing: the view
		# finds the new last activity when it re-reads the rows
		local $dbh->{AutoCommit} = 1;
		sql(q{SET presence.granularity = 0});
		sql(q{SELECT presence.heartbeat('alice', 't1', ttl => '1h', away_after => '1h')});
		sql(q{RESET presence.granularity});
	}
	ok(wait_screen($T1, 10, sub { row_of($_[0], 'alice') =~ /online\s+just now\s+2$/ }),
		'a silent heartbeat: alice "just now" after the periodic re-read');

	sql(q{SELECT presence.heartbeat('henry', 'tab', ttl => '1h', away_after => '2s')});
	ok(wait_screen($T1, 10, sub { row_of($_[0], 'henry') =~ /online/ }),
		'henry appears online');
	ok(wait_screen($T1, 10, sub { row_of($_[0], 'henry') =~ /away/ }),
		'and turns away after his idle timer');
}

# =============================================================================
# 4. What a person sees: the room view (and NO_COLOR)
# =============================================================================

sql(q{SELECT presence.join('doc:1', 'alice', 't1', '{"cursor": 12}')});
sql(q{SELECT presence.join('doc:1', 'bob', 'phone')});
SKIP:
{
	skip 'tmux is missing', 1 unless $have_tmux;

	my $T2 = tmux_watch('room', 'NO_COLOR=1', $conn, '--room', 'doc:1');
	ok(wait_screen($T2, 15, sub { $_[0] =~ /room doc:1 · 2 members · 0 typing · connected/ }),
		'room view: header with the room, members, typing and "connected"');
	like(row_of($last_screen, 'alice'), qr/^ $DOT alice\s+online\s+.*\{"cursor": 12\}$/,
		'room view: alice with her metadata');
	sql(q{SELECT presence.typing('doc:1', 'bob')});
	ok(wait_screen($T2, 10, sub { row_of($_[0], 'bob') =~ /busy\s+\S.*typing…\s+In a meeting/ }),
		'room view: bob busy, typing, with his message');
	like($last_screen, qr/^   bob is typing…$/m, 'room view: "bob is typing…"');
	sql(q{SELECT presence.set_meta('doc:1', 'alice', 't1', '{"cursor": 99}')});
	ok(wait_screen($T2, 10, sub { row_of($_[0], 'alice') =~ /\{"cursor": 99\}$/ }),
		'room view: the new metadata');
	sql(q{SELECT presence.typing('doc:1', 'bob', false)});
	ok(wait_screen($T2, 10, sub { $_[0] !~ /typing…/ && $_[0] =~ /bob stopped typing/ }),
		'room view: typing stops, and the event is listed');
	unlike(screen_colors($T2), qr/\e\[(?:[0-9;]*;)?(?:3[0-7]|9[0-7])m/, 'NO_COLOR: no colours');
	tmux('send-keys', '-t', $T2, 'q');
	ok(wait_screen($T2, 10, sub { $_[0] =~ /watch exited 0, terminal modes restored/ }),
		'room view: q quits, exit status 0, terminal restored');
}

# =============================================================================
# 2. A server restart: disconnected, retrying, reconnected, caught up
# =============================================================================

# The JSON stream has everything so far.
my $pre = query_value($dbh, 'SELECT max(seq) FROM presence.changes(0, 100000)');
ok(defined wait_events($jw, 10, sub { @_ && $_[-1]{seq} == $pre }),
	'--json: up to date before the restart');
@events = events_of($jw);

sql(q{ALTER ROLE watcher NOLOGIN});    # it stays out until we let it in
$dbh->disconnect;
$node->stop('fast');
ok(defined wait_until(10, sub { werr($jw) =~ /disconnected \(.*\), retrying in 1 s/ }),
	'--json: says it is disconnected, and when it retries (stderr)')
  or diag(werr($jw));
SKIP:
{
	skip 'tmux is missing', 2 unless $have_tmux;
	ok(wait_screen($T1, 10, sub { (split /\n/, $_[0])[0] =~ /disconnected, retrying in \d+ s/ }),
		'users view: "disconnected, retrying in N s" in the header');
	like((split /\n/, $last_screen)[1],
		qr/^ lost: (terminating connection due to administrator command|connection to server .* failed)/,
		'users view: and why');
}
$node->start;
$dbh = db_connect($node);

# Events while the watcher is out, the worker's among them.
sql(q{SELECT presence.heartbeat('ivan', 'tab', ttl => '1h', away_after => '1h')});
sql(q{SELECT presence.set_status('alice', 'away', 'lunch')});
sql(q{SELECT presence.heartbeat('judy', 'tab', ttl => '1s', away_after => '1h')});
ok(defined wait_until(15, sub {
	query_value($dbh, q{SELECT count(*) FROM presence.changes(0, 100000)
						 WHERE user_id = 'judy' AND reason = 'timeout'}) == 1 }),
	'the worker ends judy\'s session while the watcher is out');
is(scalar(grep { $_->{seq} > $pre } events_of($jw)), 0,
	'--json: nothing printed while disconnected');
sql(q{ALTER ROLE watcher LOGIN});

ok(defined wait_until(30, sub { werr($jw) =~ /reconnected, caught up \d+ events?/ }),
	'--json: reconnects and catches up')
  or diag(werr($jw));
my ($caught) = werr($jw) =~ /reconnected, caught up (\d+) events?/;
sql(q{SELECT presence.heartbeat('kate', 'tab', ttl => '1h', away_after => '1h')});
ok(defined wait_events($jw, 10, sub { grep { $_->{user_id} eq 'kate' } @_ }),
	'--json: live again after the catch-up');
@events = events_of($jw);
check_stream('--json across the restart', $start_seq, @events);
my ($kate) = grep { $_->{user_id} eq 'kate' } @events;
my @outage = grep { $_->{seq} > $pre && $_->{seq} < $kate->{seq} } @{ history_after($pre) };
my @caught = grep { $_->{caught_up} } @events;
ok(@outage >= 4, scalar(@outage) . ' events happened while it was out');
is_deeply([ map { $_->{seq} } @caught ], [ map { $_->{seq} } @outage ],
	'--json: exactly the outage\'s events came through changes(), marked caught_up');
is($caught, scalar(@outage), '--json: and it says how many (stderr)');
ok(!$kate->{caught_up}, '--json: the next event is live again');
ok((grep { $_->{user_id} eq 'judy' && $_->{reason} eq 'timeout' } @caught),
	'--json: the worker\'s transition during the outage is among them');

SKIP:
{
	skip 'tmux is missing', 1 unless $have_tmux;
	ok(wait_screen($T1, 20, sub {
		(split /\n/, $_[0])[0] =~ /connected/
		  && (split /\n/, $_[0])[0] !~ /disconnected/
		  && row_of($_[0], 'ivan') =~ /online/
		  && row_of($_[0], 'alice') =~ /away\s+lunch/
		  && row_of($_[0], 'kate') =~ /online/ }),
		'users view: reconnected, with what happened meanwhile');
	like($last_screen, qr/#\d+  judy online → offline \(timeout\) \(caught up\)\n.*#\d+  kate offline → online \(connect\)\n/,
		'users view: the caught-up events are listed as such, then the live one');
	is(tmux('display-message', '-p', '-t', $T1, '#{alternate_on}'), "1\n",
		'users view: on the alternate screen while it runs');
	tmux('send-keys', '-t', $T1, 'q');
	ok(wait_screen($T1, 10, sub { $_[0] =~ /watch exited 0, terminal modes restored/ }),
		'users view: q quits with exit status 0, the tty\'s modes restored');
	like($last_screen, qr/\Abefore-watch\n/, 'the main screen is back as it was');
	is(tmux('display-message', '-p', '-t', $T1, '#{alternate_on} #{cursor_flag}'), "0 1\n",
		'the alternate screen is left and the cursor shown again');
}

# A lost connection under a steady stream of events: its backend is
# terminated while a client keeps connecting and disconnecting users, so
# events commit during the backoff, during the catch-up and between LISTEN
# and the snapshot.  The stream must still be exactly the history.
my $producer_sql = join('', map {
	my $u = 'p' . ($_ % 10);
	"SELECT presence.heartbeat('$u', 's', ttl => '1h', away_after => '1h');\n"
	  . "SELECT presence.disconnect('$u');\n" } 1 .. 5000);
my $producer = start_psql_client($node, 'postgres', $producer_sql, 'producer');
ok(defined wait_events($jw, 15, sub { (grep { $_->{user_id} =~ /^p\d$/ } @_) >= 50 }),
	'under load: the writer\'s events stream in');
is(query_value($dbh, q{SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
						WHERE application_name = 'watch_json'}), 1,
	'under load: the watcher\'s backend is terminated');
ok(defined wait_until(20, sub { (() = werr($jw) =~ /reconnected, caught up/g) == 2 }),
	'under load: it reconnects')
  or diag(werr($jw));
my ($caught2) = werr($jw) =~ /.*reconnected, caught up (\d+) events?/s;
my $after = query_value($dbh, 'SELECT max(seq) FROM presence.changes(0, 100000)');
ok(defined wait_events($jw, 15, sub { $_[-1]{seq} > $after + 100 }),
	'under load: live events again, 100 more');
stop_psql_client($producer, 'TERM');
ok(defined wait_until(15, sub {
	!query_value($dbh, q{SELECT count(*) FROM pg_stat_activity WHERE application_name = 'producer'})
	  && (events_of($jw))[-1]{seq}
		 == query_value($dbh, 'SELECT max(seq) FROM presence.changes(0, 100000)') }),
	'under load: the writer is gone and the stream has its last event');
@events = events_of($jw);
check_stream('--json under load', $start_seq, @events);
ok($caught2 > 0, "under load: $caught2 events came through changes() after the reconnect");
note scalar(@events) . ' events on the JSON stream in all';
is(stop_watch($jw), 0, '--json: SIGTERM ends it with exit status 0');

# --since 0 replays the history, then follows.
my $sw = start_watch($conn, '--json', '--since', '0');
my $total = query_value($dbh, 'SELECT count(*) FROM presence.changes(0, 100000)');
ok(defined wait_events($sw, 15, sub { @_ >= $total }), "--since 0: the $total history events");
is(stop_watch($sw), 0, '--since 0: SIGTERM, exit status 0');
my @replay = events_of($sw);
check_stream('--since 0', 0, @replay);
is(scalar(grep { !$_->{caught_up} } @replay), 0, '--since 0: all marked caught_up');

# Plain lines when stdout is not a terminal.
my $lw = start_watch($conn);
ok(defined wait_until(10, sub { wout($lw) =~ /present: .*kate \(online\)/ }),
	'line output: connected, and who is present');
sql(q{SELECT presence.disconnect('kate')});
ok(defined wait_until(10, sub { wout($lw) =~ /^\d\d:\d\d:\d\d  #\d+  kate online → offline \(disconnect\)$/m }),
	'line output: one readable line per event');
is(stop_watch($lw), 0, 'line output: SIGTERM, exit status 0');
unlike(wout($lw), qr/\e/, 'line output: no escape sequences');

# A reconnection that hangs (a server that accepts TCP connections and
# then says nothing): keys keep working while it tries, and the attempt
# gives up after PGCONNECT_TIMEOUT.  The watchers connect through a small
# proxy to the server's socket that, while $hang exists, holds every new
# connection without a word.
SKIP:
{
	skip 'tmux is missing', 6 unless $have_tmux;
	my $hang = "$tmp/hang";
	my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
		Listen => 16, ReuseAddr => 1) or die "proxy: $!";
	my $upstream = $node->host . '/.s.PGSQL.' . $node->port;
	my $proxy = fork // die "fork: $!";
	if ($proxy == 0)
	{
		setpgrp(0, 0);
		$SIG{CHLD} = 'IGNORE';
		while (my $c = $listen->accept)
		{
			if (fork) { close $c; next; }
			if (-e $hang) { sleep 600; POSIX::_exit(0); }
			my $u = IO::Socket::UNIX->new(Peer => $upstream) or POSIX::_exit(0);
			my $sel = IO::Select->new($c, $u);
			while (my @ready = $sel->can_read)
			{
				for my $h (@ready)
				{
					my $n = sysread($h, my $buf, 65536);
					POSIX::_exit(0) unless $n;
					syswrite($h == $c ? $u : $c, $buf);
				}
			}
			POSIX::_exit(0);
		}
		POSIX::_exit(0);
	}
	my $tcp = 'host=127.0.0.1 port=' . $listen->sockport . ' dbname=postgres user=watcher';
	close $listen;
	my $T3 = tmux_watch('hang-short', 'NO_COLOR=1 PGCONNECT_TIMEOUT=2', $tcp);
	my $T4 = tmux_watch('hang-long', 'NO_COLOR=1 PGCONNECT_TIMEOUT=60', $tcp);
	ok(wait_screen($T3, 15, sub { (split /\n/, $_[0])[0] =~ /· connected/ })
		  && wait_screen($T4, 15, sub { (split /\n/, $_[0])[0] =~ /· connected/ }),
		'hanging reconnection: both watchers connected through the proxy');
	append_to_file($hang, '');
	$dbh->disconnect;
	$node->restart;
	$dbh = db_connect($node);
	ok(wait_screen($T3, 20, sub { (split /\n/, $_[0])[1] =~ /^ lost: timeout expired$/ }),
		'hanging reconnection: the attempt gives up after PGCONNECT_TIMEOUT, and says so');
	ok(wait_screen($T4, 20, sub { (split /\n/, $_[0])[0] =~ /reconnecting…/ }),
		'hanging reconnection: "reconnecting…" while the attempt hangs');
	tmux('send-keys', '-t', $T4, 'q');
	ok(wait_screen($T4, 5, sub { $_[0] =~ /watch exited 0, terminal modes restored/ }),
		'hanging reconnection: q quits at once, 60 s before the attempt would give up');
	unlink $hang;
	ok(wait_screen($T3, 20, sub { (split /\n/, $_[0])[0] =~ /· connected/ }),
		'hanging reconnection: connected again once the server answers');
	tmux('send-keys', '-t', $T3, 'q');
	ok(wait_screen($T3, 10, sub { $_[0] =~ /watch exited 0, terminal modes restored/ }),
		'hanging reconnection: q quits, exit status 0');
	kill 'KILL', -$proxy;
	waitpid($proxy, 0);
}

# =============================================================================
# 3. Errors: one line on stderr, nothing on stdout, distinct exit codes
# =============================================================================

my $host = $node->host;
my $port = $node->port;
my @cases = (
	[ 'bad arguments', 2, qr/^presence_watch: unknown option "--bogus" \(try "presence_watch --help"\)$/,
		'--bogus' ],
	[ 'bad arguments (--since)', 2, qr/^presence_watch: invalid --since value "x"/,
		'--since', 'x' ],
	[ 'bad connection string', 3,
		qr/^presence_watch: invalid connection string: invalid connection option "nonsense"$/,
		'nonsense=1' ],
	[ 'server unreachable', 4, qr/^presence_watch: could not connect: .*No such file or directory/,
		'host=/nonexistent/presence-watch port=5432 dbname=postgres' ],
	[ 'database missing', 4, qr/^presence_watch: could not connect: .*database "nosuch" does not exist/,
		"host=$host port=$port dbname=nosuch" ],
	[ 'extension not installed', 5,
		qr/^presence_watch: the presence extension is not installed in database "noext" \(CREATE EXTENSION presence\)$/,
		"host=$host port=$port dbname=noext" ],
	[ 'permission denied', 6,
		qr/^presence_watch: permission denied: role "nogrants" has no USAGE on schema presence/,
		"host=$host port=$port dbname=postgres user=nogrants" ],
);
# A room nobody is in yet: rooms exist as soon as someone joins.
my $ew = start_watch('--json', "host=$host port=$port dbname=postgres", '--room', 'empty:1');
ok(defined wait_until(15, sub { werr($ew) =~ /listening on "presence:empty:1"/ }),
	'a room nobody is in: watching starts')
  or diag werr($ew);
sql(q{SELECT presence.join('empty:1', 'zed', 's1')});
ok(defined wait_events($ew, 10, sub { grep { $_->{event} eq 'join' && $_->{user_id} eq 'zed' } @_ }),
	'a room nobody is in: its first join shows');
is(stop_watch($ew), 0, 'a room nobody is in: SIGTERM, exit status 0');

for my $case (@cases)
{
	my ($name, $code, $re, @args) = @$case;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $WATCH, @args ], '<', '/dev/null', '>', \$out, '2>', \$err,
		IPC::Run::timeout(30));
	my $status = $? >> 8;
	is($status, $code, "$name: exit status $code");
	like($err, qr/\A[^\n]*\n\z/, "$name: one line on stderr");
	like($err, $re, "$name: the message");
	is($out, '', "$name: nothing on stdout");
}

done_testing();
