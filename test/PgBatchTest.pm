
# PgBatchTest.pm
#
# Helpers shared by the pgbatch TAP tests (test/t/*.pl):
#   new_node($name)          a started PostgreSQL::Test::Cluster
#   run_together($node, $gate, @scripts)
#                            runs each psql script in its own session, all
#                            released at the same moment through an advisory
#                            lock "gate", and returns their outputs
#
# Every psql call is bounded by $PgBatchTest::TIMEOUT seconds.

package PgBatchTest;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use Test::More;
use Time::HiRes qw(time usleep);

our @EXPORT_OK = qw(new_node run_together);
our $TIMEOUT = 60;

# The first key of the advisory locks the gates use (the second is $gate).
my $GATE_CLASS = 4242;

# new_node($name): initialises and starts a cluster (loopback only, stopped
# by the test framework when the test ends).
sub new_node
{
	my ($name) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->start;
	return $node;
}

# run_together($node, $gate, @scripts): starts one background psql session
# per script.  Each waits on the shared advisory lock ($GATE_CLASS, $gate)
# that this function holds exclusively; once all are queued behind it, the
# gate opens and they run at once.  Returns a list of { out, err } hashes in
# script order.
sub run_together
{
	my ($node, $gate, @scripts) = @_;
	my $key = "$GATE_CLASS, $gate";

	my $opener = $node->background_psql('postgres', timeout => $TIMEOUT);
	$opener->query_safe("SELECT pg_advisory_lock($key)");

	my @sessions;
	for my $script (@scripts)
	{
		my $s = $node->background_psql('postgres', timeout => $TIMEOUT);
		$s->query_until(qr/waiting/, qq{
\\echo waiting
SELECT pg_advisory_lock_shared($key);
$script
SELECT pg_advisory_unlock_shared($key);
\\echo finished
});
		push @sessions, $s;
	}

	my $waiting = 0;
	my $deadline = time() + $TIMEOUT;
	while (time() < $deadline)
	{
		$waiting = $node->safe_psql('postgres', qq{
			SELECT count(*) FROM pg_locks
			WHERE locktype = 'advisory' AND NOT granted
			AND classid = $GATE_CLASS AND objid = $gate AND objsubid = 2},
			timeout => $TIMEOUT);
		last if $waiting == scalar(@scripts);
		usleep(100_000);
	}
	is($waiting, scalar(@scripts), 'all sessions wait at the gate');
	$opener->query_safe("SELECT pg_advisory_unlock($key)");

	my @results;
	for my $s (@sessions)
	{
		my $out = $s->query_until(qr/finished/, '');
		push @results, { out => $out, err => $s->{stderr} };
		$s->quit;
	}
	$opener->quit;
	return @results;
}

1;
