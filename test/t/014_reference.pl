
# 014_reference.pl: docs/reference.md agrees with the code, both ways, and
# the release metadata (META.json, presence.control, Makefile, CHANGELOG.md)
# agrees with itself.
#
# With the library preloaded it reads docs/reference.md and checks that:
#  - every function of the extension (pg_proc through pg_depend) has a
#    "### presence.NAME" entry whose signature (pg_get_function_arguments
#    and pg_get_function_result, timestamptz for "timestamp with time zone",
#    casts of defaults left out) and attributes (language, volatility, NULL
#    handling, security, SET options) are the catalog's, and that no entry
#    names a function that does not exist;
#  - each entry's "Errors:" SQLSTATEs are exactly those of the error-table
#    rows that name the function (internal errors, XX000, aside);
#  - the result columns of every function with OUT or TABLE columns, the
#    values of the extension's enum and the columns of its tables are
#    documented, with their types, and nothing else is;
#  - every presence.* setting of pg_settings is in the settings table with
#    its type, default (converted to the setting's unit), range, unit and
#    context, and nothing else is;
#  - every (level, SQLSTATE, message) of an ereport() or elog() in src/*.c
#    and of a RAISE in presence--1.0.sql is in an error table, with the
#    condition name PostgreSQL's errcodes.txt gives, and no documented
#    error is missing from the code; every GUC_check_errdetail() text is
#    quoted;
#  - the events a LISTEN client receives while each kind of change is made
#    (status, message only, join, update joined/meta/left, typing start,
#    stop and timeout, broadcast, leave) carry exactly the documented keys
#    per kind and channel, each value of a documented JSON type, every
#    documented field seen at least once, and only documented reasons;
#  - META.json is valid PGXN meta-spec 1.0.0 with the required keys, and
#    its versions agree with presence.control's default_version, the
#    Makefile's EXTVERSION and DISTVERSION, and CHANGELOG.md.
#
# Every failure names what drifted.  Sources are found relative to this
# file, so the test works from any copy of the tree.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use File::Spec;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PresenceTAP;

my $ROOT = File::Spec->rel2abs("$FindBin::RealBin/../..");
my $DOC = "$ROOT/docs/reference.md";

sub read_file
{
	my ($path) = @_;
	open(my $fh, '<', $path) or die "could not read $path: $!";
	local $/;
	my $text = <$fh>;
	close $fh;
	return $text;
}

# Sorted list differences: what is in $a but not $b, and the reverse.
sub diff_sets
{
	my ($a, $b) = @_;
	my %a = map { $_ => 1 } @$a;
	my %b = map { $_ => 1 } @$b;
	return ([ sort grep { !$b{$_} } keys %a ], [ sort grep { !$a{$_} } keys %b ]);
}

# Check two sets, with one test per direction naming each stray element.
sub same_set
{
	my ($what, $code, $doc, $code_name, $doc_name) = @_;
	$code_name //= 'the code';
	$doc_name //= 'docs/reference.md';
	my ($undocumented, $stale) = diff_sets($code, $doc);
	ok(!@$undocumented, "every $what in $code_name is in $doc_name")
	  or diag(join("\n", map { "in $code_name but not in $doc_name: $_" } @$undocumented));
	ok(!@$stale, "every $what in $doc_name exists in $code_name")
	  or diag(join("\n", map { "in $doc_name but not in $code_name: $_" } @$stale));
	return;
}

sub code_spans
{
	my ($text) = @_;
	return ($text =~ /`([^`]*)`/g);
}

# --- Parse docs/reference.md ------------------------------------------------
#
# Headings (## and ###) and the tables under them.  $doc{tables}{HEADING} is
# a list of rows, each a list of cells (trimmed); HEADING is the heading's
# text.  Functions are "### presence.NAME" entries with a signature line,
# an Attributes line and an Errors line.

my %doc = (tables => {}, functions => {}, headings => []);
{
	my $heading = '';
	my $fn;
	my $in_table = 0;
	my $lineno = 0;
	foreach my $line (split /\n/, read_file($DOC))
	{
		$lineno++;
		if ($line =~ /^#{2,3}\s+(.*?)\s*$/)
		{
			$heading = $1;
			push @{ $doc{headings} }, $heading;
			$in_table = 0;
			$fn = undef;
			if ($heading =~ /^presence\.(\w+)$/)
			{
				die "docs/reference.md:$lineno: a second entry for $1\n"
				  if $doc{functions}{$1};
				$fn = $doc{functions}{$1} = { line => $lineno };
			}
			next;
		}
		if ($line =~ /^\|/)
		{
			# The header and the separator line start a table.
			if (!$in_table)
			{
				$in_table = 1;
				die "docs/reference.md:$lineno: two tables under \"$heading\"\n"
				  if $doc{tables}{$heading};
				$doc{tables}{$heading} = [];
				next;
			}
			next if $line =~ /^\|[-|\s:]+\|\s*$/;
			my @cells = split /\|/, $line;
			shift @cells;
			s/^\s+|\s+$//g foreach @cells;
			push @{ $doc{tables}{$heading} }, \@cells;
			next;
		}
		$in_table = 0;
		next unless $fn;
		if (!defined $fn->{signature} && $line =~ /^`(.*)`\s*$/)
		{
			$fn->{signature} = $1;
		}
		elsif ($line =~ /^- Attributes:(.*)$/)
		{
			$fn->{attributes} = [ code_spans($1) ];
		}
		elsif ($line =~ /^- Errors:(.*)$/)
		{
			$fn->{errors} = [ grep { /^[0-9A-Z]{5}$/ } code_spans($1) ];
		}
	}
}

# The rows of the table under a heading; fails the test if there is none.
sub doc_table
{
	my ($heading) = @_;
	my $rows = $doc{tables}{$heading};
	ok($rows && @$rows, "docs/reference.md has a table under \"$heading\"");
	return @{ $rows // [] };
}

# The one code span of a cell (or the cell itself when it has none).
sub cell_value
{
	my ($cell) = @_;
	my @spans = code_spans($cell);
	return @spans ? $spans[0] : $cell;
}

# --- The server -----------------------------------------------------------

my $node = presence_node('reference');
$node->safe_psql('postgres', 'CREATE EXTENSION presence');
my $dbh = db_connect($node);

# Normalize a type or signature as the catalog prints it to how the
# reference writes it.
sub norm_sql
{
	my ($s) = @_;
	$s =~ s/timestamp with time zone/timestamptz/g;
	$s =~ s/::[\w.]+(?:\[\])?//g;
	$s =~ s/\s+/ /g;
	return $s;
}

# --- Functions --------------------------------------------------------------

my $EXT_MEMBER = q{
	JOIN pg_depend d ON d.objid = x.oid AND d.classid = '%s'::regclass
	 AND d.deptype = 'e'
	JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'presence'};

my $procs = query_rows($dbh,
	q{SELECT x.proname, pg_get_function_arguments(x.oid) AS args,
			 pg_get_function_result(x.oid) AS result, l.lanname,
			 x.provolatile, x.proisstrict, x.prosecdef,
			 coalesce(x.proconfig, '{}') AS config
		FROM pg_proc x JOIN pg_language l ON l.oid = x.prolang}
	  . sprintf($EXT_MEMBER, 'pg_proc') . q{ ORDER BY x.proname});
ok(@$procs > 0, 'the extension has functions');

my %proc;
foreach my $p (@$procs)
{
	die "presence.$p->{proname} is overloaded; key the reference by signature\n"
	  if $proc{ $p->{proname} };
	$proc{ $p->{proname} } = $p;
}

same_set('function', [ keys %proc ], [ keys %{ $doc{functions} } ],
	'the catalog');

my %VOLATILITY = (i => 'IMMUTABLE', s => 'STABLE', v => 'VOLATILE');
foreach my $name (sort keys %proc)
{
	my $p = $proc{$name};
	my $entry = $doc{functions}{$name} or next;
	my $sig = norm_sql("presence.$name($p->{args}) RETURNS $p->{result}");
	is($entry->{signature} // '(no signature line)', $sig,
		"presence.$name: documented signature is the catalog's");

	my @attrs = ("LANGUAGE $p->{lanname}", $VOLATILITY{ $p->{provolatile} },
		$p->{proisstrict} ? 'STRICT' : 'CALLED ON NULL INPUT',
		$p->{prosecdef} ? 'SECURITY DEFINER' : 'SECURITY INVOKER');
	foreach my $opt (@{ $p->{config} })
	{
		my ($k, $v) = split /=/, $opt, 2;
		push @attrs, "SET $k = $v";
	}
	is(join(' | ', @{ $entry->{attributes} // [] }), join(' | ', @attrs),
		"presence.$name: documented attributes are the catalog's");
	ok(defined $entry->{errors}, "presence.$name: has an Errors line");
}

# --- Result columns, the enum, the tables -------------------------------------

my $outcols = query_rows($dbh,
	q{SELECT x.proname, a.name, format_type(a.type, NULL) AS type
		FROM pg_proc x
		CROSS JOIN LATERAL unnest(x.proallargtypes, x.proargmodes, x.proargnames)
			 WITH ORDINALITY AS a(type, mode, name, ord)}
	  . sprintf($EXT_MEMBER, 'pg_proc')
	  . q{ WHERE a.mode IN ('o', 't', 'b') ORDER BY x.proname, a.ord});
my %cols_of;
push @{ $cols_of{ $_->{proname} } }, "$_->{name} " . norm_sql($_->{type})
  foreach @$outcols;

my %doc_cols_of;
foreach my $heading (grep { /^Columns of / } @{ $doc{headings} })
{
	my @fns = map { /^(\w+)\(\)$/ ? $1 : () } code_spans($heading);
	my @cols = map { cell_value($_->[0]) . " $_->[1]" } doc_table($heading);
	foreach my $fn (@fns)
	{
		ok(!$doc_cols_of{$fn}, "columns of $fn() are documented once");
		$doc_cols_of{$fn} = \@cols;
	}
}
same_set('function with result columns', [ keys %cols_of ],
	[ keys %doc_cols_of ], 'the catalog');
foreach my $fn (sort keys %cols_of)
{
	next unless $doc_cols_of{$fn};
	is(join(', ', @{ $doc_cols_of{$fn} }), join(', ', @{ $cols_of{$fn} }),
		"result columns of $fn() (name type, in order)");
}

my $types = query_rows($dbh,
	q{SELECT x.oid, format_type(x.oid, NULL) AS name FROM pg_type x}
	  . sprintf($EXT_MEMBER, 'pg_type'));
same_set('type', [ map { $_->{name} } @$types ],
	[ map { /^Type `(.*)`$/ ? $1 : () } @{ $doc{headings} } ], 'the catalog');
foreach my $t (@$types)
{
	my $labels = query_rows($dbh,
		q{SELECT enumlabel FROM pg_enum WHERE enumtypid = ? ORDER BY enumsortorder},
		$t->{oid});
	is(join(', ', map { cell_value($_->[0]) } doc_table("Type `$t->{name}`")),
		join(', ', map { $_->{enumlabel} } @$labels),
		"values of $t->{name}, in order");
}

my $rels = query_rows($dbh,
	q{SELECT x.oid, x.relkind, format('%I.%I', n.nspname, x.relname) AS name
		FROM pg_class x JOIN pg_namespace n ON n.oid = x.relnamespace}
	  . sprintf($EXT_MEMBER, 'pg_class') . q{ ORDER BY 3});
my %KIND = (r => 'Table', S => 'Sequence', v => 'View', m => 'View');
same_set('table, view and sequence',
	[ map { ($KIND{ $_->{relkind} } // "relkind $_->{relkind}") . " $_->{name}" } @$rels ],
	[ map { /^(Table|Sequence|View) `(.*)`$/ ? "$1 $2" : () } @{ $doc{headings} } ],
	'the catalog');
foreach my $r (grep { $_->{relkind} =~ /^[rvm]$/ } @$rels)
{
	my $atts = query_rows($dbh,
		q{SELECT attname, format_type(atttypid, atttypmod) AS type
			FROM pg_attribute
		   WHERE attrelid = ? AND attnum > 0 AND NOT attisdropped ORDER BY attnum},
		$r->{oid});
	my $heading = "$KIND{ $r->{relkind} } `$r->{name}`";
	next unless $doc{tables}{$heading};
	is(join(', ', map { cell_value($_->[0]) . " $_->[1]" } doc_table($heading)),
		join(', ', map { "$_->{attname} " . norm_sql($_->{type}) } @$atts),
		"columns of $r->{name} (name type, in order)");
}

# --- Settings ---------------------------------------------------------------

my $gucs = query_rows($dbh,
	q{SELECT name, vartype, boot_val, coalesce(unit, '') AS unit, min_val,
			 max_val, context
		FROM pg_settings WHERE name LIKE 'presence.%' ORDER BY name});
my %guc = map { $_->{name} => $_ } @$gucs;
my %doc_guc;
foreach my $row (doc_table('Settings'))
{
	my ($name, $type, $default, $range, $context) = @$row;
	$name = cell_value($name);
	$doc_guc{$name} = {
		type => $type,
		default => cell_value($default),
		range => scalar(code_spans($range)) ? cell_value($range) : '',
		context => cell_value($context),
	};
}
same_set('setting', [ keys %guc ], [ keys %doc_guc ], 'pg_settings');

my %MS = (ms => 1, s => 1000, min => 60_000, h => 3_600_000, d => 86_400_000);

# A documented default in the setting's own unit, as pg_settings.boot_val
# gives it, or undef when it cannot be read.
sub default_in_unit
{
	my ($text, $g) = @_;
	if ($g->{vartype} eq 'string')
	{
		return $text eq "''" ? '' : $text;
	}
	return $text if $g->{vartype} ne 'integer' || $g->{unit} eq '';
	return undef unless $text =~ /^(\d+)\s*(ms|s|min|h|d)?$/;
	my $ms = $1 * $MS{ $2 // $g->{unit} };
	my $base = $MS{ $g->{unit} } or return undef;
	return $ms % $base ? undef : $ms / $base;
}

foreach my $name (sort keys %guc)
{
	my ($g, $d) = ($guc{$name}, $doc_guc{$name});
	next unless $d;
	is($d->{type}, $g->{vartype}, "$name: type");
	is(default_in_unit($d->{default}, $g) // "unreadable '$d->{default}'",
		$g->{boot_val}, "$name: default ('$d->{default}')");
	my $range = defined $g->{min_val}
	  ? "$g->{min_val} .. $g->{max_val}" . ($g->{unit} ne '' ? " $g->{unit}" : '')
	  : '';
	is($d->{range}, $range, "$name: range and unit");
	is($d->{context}, $g->{context}, "$name: context");
}

# --- Errors -----------------------------------------------------------------

# errcodes.txt: SQLSTATE, macro and condition name of every error code.
my ($sharedir) = $node->config_data('--sharedir');
my $errcodes_file = "$sharedir/errcodes.txt";
ok(-r $errcodes_file, "PostgreSQL's errcodes.txt is at $errcodes_file")
  or BAIL_OUT("cannot map error codes without $errcodes_file");
my (%state_of_macro, %state_of_condition, %condition_of_state);
foreach (split /\n/, read_file($errcodes_file))
{
	next unless /^([0-9A-Z]{5})\s+[EWS]\s+(ERRCODE_\w+)(?:\s+(\w+))?/;
	$state_of_macro{$2} = $1;
	if (defined $3)
	{
		# A name given twice (null_value_not_allowed: 22004 and 39004)
		# means its first code, as in PL/pgSQL.
		$state_of_condition{$3} //= $1;
		$condition_of_state{$1} //= $3;
	}
}

# C source with comments blanked out (string and character literals kept).
sub strip_c_comments
{
	my ($src) = @_;
	$src =~ s{
		( "(?:[^"\\\n]|\\.)*" | '(?:[^'\\\n]|\\.)*' )
	  | ( /\*.*?\*/ | //[^\n]* )
	}{ defined $1 ? $1 : ("\n" x ($2 =~ tr/\n//)) }gsex;
	return $src;
}

# The text of the parenthesized arguments starting at pos() of $$src just
# after "(": up to the matching ")", skipping parentheses in literals.
sub balanced_args
{
	my ($src, $start) = @_;
	my $depth = 1;
	my $i = $start;
	my $len = length $$src;
	while ($i < $len)
	{
		my $c = substr($$src, $i, 1);
		if ($c eq '"' || $c eq "'")
		{
			$i++;
			while ($i < $len && substr($$src, $i, 1) ne $c)
			{
				$i++ if substr($$src, $i, 1) eq '\\';
				$i++;
			}
		}
		elsif ($c eq '(') { $depth++; }
		elsif ($c eq ')')
		{
			return substr($$src, $start, $i - $start) if --$depth == 0;
		}
		$i++;
	}
	return undef;
}

# Adjacent C string literals at the start of $text, joined and unescaped.
sub c_string
{
	my ($text) = @_;
	my $s = '';
	my $found = 0;
	while ($text =~ /\G\s*"((?:[^"\\]|\\.)*)"/gc)
	{
		$s .= $1;
		$found = 1;
	}
	return undef unless $found;
	my %esc = (n => "\n", t => "\t", '"' => '"', '\\' => '\\', "'" => "'");
	$s =~ s{\\(.)}{$esc{$1} // $1}ge;
	return $s;
}

my $DEFAULT_STATE = sub {
	my ($level) = @_;
	return 'XX000' if $level =~ /^(ERROR|FATAL|PANIC)$/;
	return '01000' if $level eq 'WARNING';
	return '00000';
};

my (@code_errors, @guc_details);
foreach my $file (sort glob("$ROOT/src/*.c"))
{
	(my $short = $file) =~ s{^\Q$ROOT\E/}{};
	my $src = strip_c_comments(read_file($file));
	while ($src =~ /\b(ereport|elog)\s*\(/g)
	{
		my ($call, $at) = ($1, pos($src));
		my $line = 1 + (substr($src, 0, $at) =~ tr/\n//);
		my $args = balanced_args(\$src, $at);
		my ($level, $rest) = defined $args ? ($args =~ /^\s*(\w+)\s*,(.*)$/s) : ();
		if (!defined $rest)
		{
			fail("$short:$line: could not parse this $call() call");
			next;
		}
		my ($state, $msg);
		if ($call eq 'elog')
		{
			$msg = c_string($rest);
			$state = $DEFAULT_STATE->($level);
		}
		else
		{
			my ($macro) = $rest =~ /\berrcode\s*\(\s*(\w+)\s*\)/;
			$state = defined $macro ? $state_of_macro{$macro} : $DEFAULT_STATE->($level);
			if (!defined $state)
			{
				fail("$short:$line: $macro is not in errcodes.txt");
				next;
			}
			$msg = c_string($1) if $rest =~ /\berrmsg\s*\((.*)$/s;
		}
		if (!defined $msg)
		{
			fail("$short:$line: could not read the message of this $call() call"
				  . " (the test reads errmsg() and elog() string literals)");
			next;
		}
		push @code_errors, "$level | $state | $msg";
	}
	while ($src =~ /\bGUC_check_errdetail\s*\(/g)
	{
		my $args = balanced_args(\$src, pos($src));
		my $text = defined $args ? c_string($args) : undef;
		push @guc_details, $text // "unreadable GUC_check_errdetail in $short";
	}
}

# RAISE in the extension's SQL (plpgsql functions).
{
	my $sql = read_file("$ROOT/presence--1.0.sql");
	while ($sql =~ /\bRAISE\s+(EXCEPTION|WARNING|NOTICE|INFO|LOG|DEBUG)\s+'((?:[^']|'')*)'([^;]*);/gs)
	{
		my ($level, $msg, $using) = ($1, $2, $3);
		$msg =~ s/''/'/g;
		$level = 'ERROR' if $level eq 'EXCEPTION';
		my ($cond) = $using =~ /ERRCODE\s*=\s*'(\w+)'/;
		my $state = defined $cond
		  ? ($cond =~ /^[0-9A-Z]{5}$/ ? $cond : $state_of_condition{$cond})
		  : ($level eq 'ERROR' ? 'P0001' : '00000');
		if (!defined $state)
		{
			fail("presence--1.0.sql: unknown condition $cond in RAISE '$msg'");
			next;
		}
		push @code_errors, "$level | $state | $msg";
	}
}
ok(@code_errors > 0, 'found the error reports in the source');

my (@doc_errors, %doc_error_fns);
foreach my $heading (sort keys %{ $doc{tables} })
{
	my $rows = $doc{tables}{$heading};
	next unless @$rows && @{ $rows->[0] } == 6 && $rows->[0][0] =~ /^`[0-9A-Z]{5}`$/;
	foreach my $row (@$rows)
	{
		my ($state, $cond, $level, $msg, $by) = @$row;
		($state, $cond, $msg) = map { cell_value($_) } ($state, $cond, $msg);
		is($cond, $condition_of_state{$state} // "(no condition for $state)",
			"error \"$msg\": condition name of $state");
		my $key = "$level | $state | $msg";
		ok(!grep({ $_ eq $key } @doc_errors), "error listed once: $key");
		push @doc_errors, $key;
		foreach my $fn (map { /^(\w+)\(\)$/ ? $1 : () } code_spans($by))
		{
			ok($proc{$fn}, "error \"$msg\" is raised by $fn(), which exists");
			$doc_error_fns{$fn}{$state} = 1 unless $state eq 'XX000';
		}
	}
}
same_set('error (level | SQLSTATE | message)', \@code_errors, \@doc_errors,
	'src/*.c and presence--1.0.sql');

foreach my $name (sort keys %{ $doc{functions} })
{
	my $listed = $doc{functions}{$name}{errors} or next;
	is(join(' ', sort @$listed),
		join(' ', sort keys %{ $doc_error_fns{$name} // {} }),
		"presence.$name: its Errors line matches the error rows naming $name()");
}

my %doc_spans = map { $_ => 1 } code_spans(read_file($DOC));
foreach my $detail (@guc_details)
{
	ok($doc_spans{$detail}, "GUC check detail is quoted: \"$detail\"");
}

# --- Events -----------------------------------------------------------------
#
# Every kind of change, seen by a listener on the status channel and on the
# room's channel.  The session announces metadata updates at once
# (meta_interval 0); a typing flag with a 200 ms timeout is left to run out,
# stopped by the worker or by sweep().

my $room = 'ref:room';
my $room_ch = room_channel($dbh, $room);
my $listener = PresenceTAP::Listener->new($node, 'postgres', 'presence', $room_ch);
my $user = 'ref_alice';
$dbh->do(q{SET presence.meta_interval = 0});
$dbh->do(q{SELECT presence.heartbeat(?, 's1')}, undef, $user);
$dbh->do(q{SELECT presence.join(?, ?, 's1', '{"cursor": 1}')}, undef, $room, $user);
$dbh->do(q{SELECT presence.join(?, ?, 's2')}, undef, $room, $user);
$dbh->do(q{SELECT presence.set_meta(?, ?, 's1', '{"cursor": 2}')}, undef, $room, $user);
$dbh->do(q{SELECT presence.set_status(?, 'busy', 'In a meeting')}, undef, $user);
$dbh->do(q{SELECT presence.set_status(?, 'busy', 'Still in a meeting')}, undef, $user);
$dbh->do(q{SELECT presence.typing(?, ?)}, undef, $room, $user);
$dbh->do(q{SELECT presence.typing(?, ?, false)}, undef, $room, $user);
$dbh->do(q{SET presence.typing_timeout = '200ms'});
$dbh->do(q{SELECT presence.typing(?, ?)}, undef, $room, $user);
my $timed_out = wait_until(
	30,
	sub {
		$dbh->do(q{SELECT presence.sweep()});
		$listener->pump(0.1);
		return scalar $listener->matching(
			sub {
				my $ev = $_[0]->{ev};
				defined $ev && ($ev->{event} // '') eq 'typing'
				  && defined $ev->{reason};
			});
	});
ok(defined $timed_out, 'a typing flag ran out and its stop was announced');
$dbh->do(q{SELECT presence.broadcast(?, '{"x": [1, 2]}')}, undef, $room);
$dbh->do(q{SELECT presence.leave(?, ?, 's2')}, undef, $room, $user);
$dbh->do(q{SELECT presence.leave(?, ?)}, undef, $room, $user);
$dbh->do(q{SELECT presence.disconnect(?)}, undef, $user);
my @last = $listener->wait_for(
	sub {
		my $ev = $_[0]->{ev};
		defined $ev && $_[0]->{channel} eq 'presence'
		  && ($ev->{event} // '') eq 'status'
		  && ($ev->{reason} // '') eq 'disconnect';
	},
	30);
ok(@last, 'the last event (disconnect) arrived');

my @notes = $listener->all;
my @not_json = grep { !defined $_->{ev} } @notes;
ok(!@not_json, 'every payload is JSON')
  or diag(join("\n", map { "not JSON: $_->{payload}" } @not_json));
@notes = grep { defined $_->{ev} } @notes;

# JSON types of every value, by the server.
my $typed = query_rows($dbh,
	q{SELECT p.ord, k.key, jsonb_typeof(k.value) AS type
		FROM unnest(?::text[]) WITH ORDINALITY AS p(payload, ord),
			 jsonb_each(p.payload::jsonb) AS k},
	[ map { $_->{payload} } @notes ]);
$notes[ $_->{ord} - 1 ]{types}{ $_->{key} } = $_->{type} foreach @$typed;

# Documented fields per kind of event and channel: "status@status",
# "status@room", "join@room", ...
my %doc_fields;
foreach my $heading (@{ $doc{headings} })
{
	next unless $heading =~ /^`(\w+)` events(?: on (the status channel|a room channel))?$/;
	my $key = $1 . '@' . (($2 // 'a room channel') eq 'the status channel' ? 'status' : 'room');
	foreach my $row (doc_table($heading))
	{
		my ($field, $type, $present) = @$row;
		$doc_fields{$key}{ cell_value($field) } = {
			types => { map { $_ => 1 } split /\s+or\s+/, $type },
			always => $present eq 'always',
		};
	}
}

my %seen_fields;
foreach my $n (@notes)
{
	my $key = $n->{ev}{event} . '@' . ($n->{channel} eq 'presence' ? 'status' : 'room');
	my $fields = $doc_fields{$key};
	$seen_fields{$key} //= {};
	next unless $fields;
	my @keys = sort keys %{ $n->{ev} };
	$seen_fields{$key}{$_} = 1 foreach @keys;
	my @missing = grep { $fields->{$_}{always} && !exists $n->{ev}{$_} } sort keys %$fields;
	my @extra = grep { !$fields->{$_} } @keys;
	my @badtype = grep {
		$fields->{$_} && !$fields->{$_}{types}{any}
		  && !$fields->{$_}{types}{ $n->{types}{$_} }
	} @keys;
	ok(!@missing && !@extra && !@badtype, "$key event seq $n->{ev}{seq} has the documented fields")
	  or diag("$key: payload $n->{payload}\n  missing: @missing\n"
		  . "  undocumented: @extra\n  of an undocumented JSON type: "
		  . join(', ', map { "$_ ($n->{types}{$_})" } @badtype));
}
same_set('kind of event (kind@channel)', [ keys %seen_fields ], [ keys %doc_fields ],
	'the events received');
foreach my $key (sort keys %doc_fields)
{
	next unless $seen_fields{$key};
	my ($unseen) = diff_sets([ keys %{ $doc_fields{$key} } ], [ keys %{ $seen_fields{$key} } ]);
	ok(!@$unseen, "every documented field of $key events was seen")
	  or diag("$key: documented but never sent: @$unseen");
}

my %doc_reasons = map { cell_value($_->[0]) => 1 } doc_table('Reasons of status events');
my %seen_reasons = map { ($_->{ev}{reason} // 'null') => 1 }
  grep { ($_->{ev}{event} // '') eq 'status' } @notes;
foreach my $reason (sort keys %seen_reasons)
{
	ok($doc_reasons{$reason}, "status reason \"$reason\" is documented");
}

# --- Release metadata ---------------------------------------------------------

my $meta = eval { JSON::PP->new->decode(read_file("$ROOT/META.json")) };
ok($meta, 'META.json is valid JSON') or diag($@);
$meta //= {};
foreach my $key (qw(name abstract version maintainer license provides meta-spec))
{
	ok(defined $meta->{$key}, "META.json has $key");
}
is($meta->{'meta-spec'}{version}, '1.0.0', 'META.json: meta-spec 1.0.0');
is($meta->{name}, 'presence', 'META.json: name');
like($meta->{version} // '', qr/^\d+\.\d+\.\d+$/, 'META.json: version is semantic');
like($meta->{release_status} // 'stable', qr/^(stable|testing|unstable)$/,
	'META.json: release_status');
ok(defined $meta->{prereqs}{runtime}{requires}{PostgreSQL},
	'META.json: requires a PostgreSQL version');

my ($control_version) = read_file("$ROOT/presence.control") =~ /^default_version\s*=\s*'([^']+)'/m;
my $makefile = read_file("$ROOT/Makefile");
my ($extversion) = $makefile =~ /^EXTVERSION\s*=\s*(\S+)/m;
my ($distversion) = $makefile =~ /^DISTVERSION\s*=\s*(\S+)/m;
is($extversion, $control_version, "Makefile EXTVERSION is presence.control's default_version");
my @parts = split /\./, $control_version // '';
push @parts, 0 while @parts < 3;
my $semver = join('.', @parts);
is($meta->{version}, $semver, "META.json version is default_version $control_version as x.y.z");
is($meta->{provides}{presence}{version}, $meta->{version},
	'META.json: provides.presence.version is the version');
my $file = $meta->{provides}{presence}{file} // '';
is($file, "presence--$control_version.sql", 'META.json: provides.presence.file');
ok(-f "$ROOT/$file", "META.json: $file exists");
is($distversion, $meta->{version}, 'Makefile DISTVERSION is the META.json version');
like(read_file("$ROOT/CHANGELOG.md"), qr/^## \[\Q$semver\E\]/m,
	"CHANGELOG.md has an entry for $semver");

$listener->disconnect;
$dbh->disconnect;
$node->stop;
done_testing();
