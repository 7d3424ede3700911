#!/usr/bin/perl
# listen.pl: a small LISTEN client that prints each presence event the
# moment it arrives, with a timestamp.  Used by scripts/demo.sh.
#
#   perl scripts/listen.pl 'host=/tmp/sock;port=5432;dbname=app' [channel] [seconds]
#
# It exits when the server goes away, or after `seconds` (default 600).
use strict;
use warnings;
use DBI;
use IO::Select;
use JSON::PP;
use POSIX qw(strftime);
use Time::HiRes qw(time);

my ($conninfo, $channel, $seconds) = @ARGV;
die "usage: $0 CONNINFO [CHANNEL] [SECONDS]\n" unless defined $conninfo;
$channel //= 'presence';
$seconds //= 600;
$| = 1;

sub stamp {
	my $t = time;
	return strftime('%H:%M:%S', localtime $t) . sprintf('.%03d', ($t - int $t) * 1000);
}

my $dbh = DBI->connect("dbi:Pg:$conninfo", '', '',
					   { RaiseError => 1, PrintError => 0, PrintWarn => 0,
						 AutoCommit => 1 });
$dbh->do('LISTEN ' . $dbh->quote_identifier($channel));
my $json = JSON::PP->new;
my $select = IO::Select->new($dbh->{pg_socket});
my $deadline = time + $seconds;

while (time < $deadline) {
	my $readable = $select->can_read(0.5);
	my $got = 0;
	while (my $n = $dbh->pg_notifies) {
		my (undef, undef, $payload) = @$n;
		$got = 1;
		my $ev = eval { $json->decode($payload) };
		if (ref $ev eq 'HASH' && defined $ev->{user_id}) {
			my $msg = defined $ev->{message} ? qq{  "$ev->{message}"} : '';
			printf "%s  event #%s  %-6s %s -> %s (%s)%s\n", stamp(),
				$ev->{seq} // '?', $ev->{user_id}, $ev->{previous} // '?',
				$ev->{status} // '?', $ev->{reason} // '?', $msg;
		} else {
			printf "%s  event  %s\n", stamp(), $payload;
		}
	}
	# Readable but nothing to print: the server may have gone away.
	last if $readable && !$got && !$dbh->ping;
}
