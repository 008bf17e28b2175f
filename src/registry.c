/*-------------------------------------------------------------------------
 *
 * registry.c
 *		The launcher's registry: the databases that have the extension, kept
 *		in a small file of the data directory so that the launcher knows
 *		them after a restart without starting an executor in every database
 *		to look.  A database is registered in shared memory at the commit of
 *		its CREATE EXTENSION (or ALTER EXTENSION UPDATE, a submit, a look at
 *		batch.health) and unregistered when an executor finds the extension
 *		gone or the database is dropped (shmem.c, executor_main.c,
 *		launcher.c); the launcher alone reads the file, when it starts, and
 *		writes it, when the set has changed.  The file is written to a
 *		temporary name and renamed over the old one, durably.
 *
 *		It is not the source of truth: a database missing from it (copied
 *		from a template) is registered by its first call of pgbatch, and one
 *		listed wrongly costs one executor start, which finds no extension
 *		and unregisters it.  Where there is no file yet (a new data
 *		directory, one pg_upgrade made, the first start of a library that
 *		keeps one), the launcher looks into every database once, with one
 *		executor each (launcher.c), and writes the file once all have been
 *		looked into.
 *
 * IDENTIFICATION
 *		src/registry.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "common/string.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/lwlock.h"

#include "pgbatch.h"
#include "registry.h"
#include "shmem.h"

#define REGISTRY_FILE		"pgbatch_databases"
#define REGISTRY_TMP_FILE	"pgbatch_databases.tmp"
#define REGISTRY_HEADER		"# pgbatch: the databases that have the extension, written by its launcher"

/* what the file holds now, as the launcher last read or wrote it */
static Oid	saved[PGB_MAX_DBS];
static int	nsaved = -1;		/* -1: not known yet */

/*
 * oid_cmp
 *		qsort comparator for Oids.
 */
static int
oid_cmp(const void *a, const void *b)
{
	Oid			x = *(const Oid *) a;
	Oid			y = *(const Oid *) b;

	return (x > y) - (x < y);
}

/*
 * pgb_registry_load
 *		Registers, in shared memory, the databases the file lists; called by
 *		the launcher when it starts.  False if there is no file.
 */
bool
pgb_registry_load(void)
{
	FILE	   *file;
	char		line[64];

	nsaved = 0;
	file = AllocateFile(REGISTRY_FILE, "r");
	if (file == NULL)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("pgbatch: could not read file \"%s\": %m", REGISTRY_FILE)));
		nsaved = -1;
		return false;
	}
	while (fgets(line, sizeof(line), file) != NULL)
	{
		char	   *end;
		unsigned long value;
		PgbDbFlags *f;

		if (line[0] == '#' || line[0] == '\n')
			continue;
		errno = 0;
		value = strtoul(line, &end, 10);
		if (errno != 0 || end == line || (*end != '\n' && *end != '\0') ||
			value == 0 || value > PG_UINT32_MAX)
		{
			(void) pg_strip_crlf(line);
			ereport(LOG,
					(errmsg("pgbatch: line \"%s\" of file \"%s\" is not a database oid; it is left out",
							line, REGISTRY_FILE)));
			continue;
		}
		LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
		f = pgb_db_flags_find((Oid) value, true);
		if (f)
			f->registered = true;
		LWLockRelease(pgb_shared->lock);
		if (nsaved < PGB_MAX_DBS)
			saved[nsaved++] = (Oid) value;
	}
	FreeFile(file);
	qsort(saved, nsaved, sizeof(Oid), oid_cmp);
	return true;
}

/*
 * write_registry
 *		Writes the file anew with 'n' oids; false (and a LOG line) if it
 *		could not.
 */
static bool
write_registry(const Oid *oids, int n)
{
	FILE	   *file;
	int			i;

	file = AllocateFile(REGISTRY_TMP_FILE, "w");
	if (file == NULL)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("pgbatch: could not create file \"%s\": %m", REGISTRY_TMP_FILE)));
		return false;
	}
	fprintf(file, "%s\n", REGISTRY_HEADER);
	for (i = 0; i < n; i++)
		fprintf(file, "%u\n", oids[i]);
	if (ferror(file) || FreeFile(file) != 0)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("pgbatch: could not write file \"%s\": %m", REGISTRY_TMP_FILE)));
		unlink(REGISTRY_TMP_FILE);
		return false;
	}
	/* fsyncs the file and the directory */
	return durable_rename(REGISTRY_TMP_FILE, REGISTRY_FILE, LOG) == 0;
}

/*
 * pgb_registry_save
 *		Writes the registered databases to the file if they are not what it
 *		holds; called by the launcher after each look at the databases.  Not
 *		while a database is registered tentatively: then the file would
 *		say what is not known yet.
 */
void
pgb_registry_save(void)
{
	Oid			now[PGB_MAX_DBS];
	int			n = 0;
	int			i;

	LWLockAcquire(pgb_shared->lock, LW_SHARED);
	for (i = 0; i < PGB_MAX_DBS; i++)
	{
		PgbDbFlags *f = &pgb_shared->dbs[i];

		if (f->dboid != InvalidOid && f->tentative)
		{
			LWLockRelease(pgb_shared->lock);
			return;
		}
		if (f->dboid != InvalidOid && f->registered)
			now[n++] = f->dboid;
	}
	LWLockRelease(pgb_shared->lock);
	qsort(now, n, sizeof(Oid), oid_cmp);
	if (nsaved >= 0 && n == nsaved && memcmp(now, saved, n * sizeof(Oid)) == 0)
		return;
	if (write_registry(now, n))
	{
		memcpy(saved, now, n * sizeof(Oid));
		nsaved = n;
	}
}
