/*-------------------------------------------------------------------------
 *
 * participants.c
 *	  A durable note of the participants of a two-phase transaction that
 *	  are not (or will not stay) members of the mesh.
 *
 * Recovery visits the members of the mesh.  A membership change also has
 * a participant outside that set: the node being added (not a member if
 * the change rolls back) or the node being removed (no longer a member if
 * it commits).  Before such a transaction prepares anything, its outside
 * participants are written to $PGDATA/pg_mycelium/<gid> and fsync'd, the
 * way PostgreSQL keeps its own two-phase state files; recovery reads these
 * files, visits those nodes too, and removes a file once its transaction
 * is finished everywhere.  Ordinary transactions, whose participants are
 * all members, write no file.
 *
 * IDENTIFICATION
 *	  src/txn/participants.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "access/xact.h"
#include "common/file_perm.h"
#include "storage/fd.h"
#include "utils/memutils.h"

#include "cluster/cluster.h"
#include "txn/txn.h"

#define PARTICIPANT_DIR "pg_mycelium"

/* outside participants of the current transaction (TopTransactionContext) */
static List *outside = NIL;

/*
 * MyceliumAddOutsideParticipant notes a participant of the current
 * transaction that recovery would not find among the members.
 */
void
MyceliumAddOutsideParticipant(const char *node_name, const char *host, int port)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	MyceliumNode *n = palloc0(sizeof(MyceliumNode));

	strlcpy(n->node_name, node_name, sizeof(n->node_name));
	strlcpy(n->host, host, sizeof(n->host));
	n->port = port;
	outside = lappend(outside, n);
	MemoryContextSwitchTo(old);
}

/*
 * MyceliumForgetOutsideParticipants ends the current transaction's list
 * (its memory goes with TopTransactionContext).
 */
void
MyceliumForgetOutsideParticipants(void)
{
	outside = NIL;
}

/*
 * MyceliumHasOutsideParticipants says whether the current transaction has
 * a participant outside the mesh.
 */
bool
MyceliumHasOutsideParticipants(void)
{
	return outside != NIL;
}

/*
 * MyceliumLogOutsideParticipants writes and fsyncs the note for gid, if
 * the transaction has outside participants.  Called before PREPARE.
 */
void
MyceliumLogOutsideParticipants(const char *gid)
{
	char		path[MAXPGPATH];
	StringInfoData buf;
	ListCell   *lc;
	int			fd;

	if (outside == NIL)
		return;
	if (MakePGDirectory(PARTICIPANT_DIR) < 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", PARTICIPANT_DIR)));
	initStringInfo(&buf);
	foreach(lc, outside)
	{
		MyceliumNode *n = lfirst(lc);

		appendStringInfo(&buf, "%s\t%s\t%d\n", n->node_name, n->host, n->port);
	}
	snprintf(path, sizeof(path), PARTICIPANT_DIR "/%s", gid);
	fd = OpenTransientFile(path, O_CREAT | O_TRUNC | O_WRONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", path)));
	if (write(fd, buf.data, buf.len) != buf.len || pg_fsync(fd) != 0)
	{
		int			save_errno = errno;

		CloseTransientFile(fd);
		errno = save_errno ? save_errno : ENOSPC;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", path)));
	}
	CloseTransientFile(fd);
	fsync_fname(PARTICIPANT_DIR, true);
}

/*
 * read_note parses one note file into a List of MyceliumNode.
 */
static List *
read_note(const char *path)
{
	List	   *nodes = NIL;
	FILE	   *f = AllocateFile(path, "r");
	char		line[512];

	if (f == NULL)
		return NIL;
	while (fgets(line, sizeof(line), f))
	{
		MyceliumNode *n = palloc0(sizeof(MyceliumNode));
		char	   *name = strtok(line, "\t\n");
		char	   *host = strtok(NULL, "\t\n");
		char	   *port = strtok(NULL, "\t\n");

		if (name == NULL || host == NULL || port == NULL)
			continue;
		strlcpy(n->node_name, name, sizeof(n->node_name));
		strlcpy(n->host, host, sizeof(n->host));
		n->port = atoi(port);
		nodes = lappend(nodes, n);
	}
	FreeFile(f);
	return nodes;
}

/*
 * MyceliumReadOutsideParticipants returns every note as a List of
 * MyceliumOutsideNote (gid and its nodes).
 */
List *
MyceliumReadOutsideParticipants(void)
{
	List	   *notes = NIL;
	DIR		   *dir;
	struct dirent *de;

	dir = AllocateDir(PARTICIPANT_DIR);
	if (dir == NULL)
		return NIL;				/* no note was ever written */
	while ((de = ReadDir(dir, PARTICIPANT_DIR)) != NULL)
	{
		MyceliumOutsideNote *note;
		char		path[MAXPGPATH];

		if (strncmp(de->d_name, "mycelium_", 9) != 0)
			continue;
		snprintf(path, sizeof(path), PARTICIPANT_DIR "/%s", de->d_name);
		note = palloc0(sizeof(MyceliumOutsideNote));
		note->gid = pstrdup(de->d_name);
		note->nodes = read_note(path);
		notes = lappend(notes, note);
	}
	FreeDir(dir);
	return notes;
}

/*
 * MyceliumRemoveOutsideNote deletes the note of a finished transaction.
 */
void
MyceliumRemoveOutsideNote(const char *gid)
{
	char		path[MAXPGPATH];

	snprintf(path, sizeof(path), PARTICIPANT_DIR "/%s", gid);
	if (unlink(path) != 0 && errno != ENOENT)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not remove file \"%s\": %m", path)));
}
