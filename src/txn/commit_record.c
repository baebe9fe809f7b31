/*-------------------------------------------------------------------------
 *
 * commit_record.c
 *	  Commit records: the one durable fact that decides a two-phase
 *	  transaction, where it is kept, and asking for it.
 *
 * A two-phase transaction commits if and only if its commit record
 * (mycelium.commit_record: gid, participants) exists.  The record is
 * written inside the transaction whose commit decides:
 *
 *	- the coordinator's own, when the coordinator wrote locally (or the
 *	  transaction has a participant outside the mesh): every writing peer
 *	  prepares, then the local commit decides;
 *	- otherwise that of one writing peer, the keeper (the first writer by
 *	  node name): the other writers prepare, then the keeper inserts the
 *	  record with mycelium.keep_commit_record() and commits in one phase,
 *	  both in one round trip.  That commit decides.  With two writers this
 *	  makes three WAL flushes in sequence (PREPARE, the keeper's COMMIT,
 *	  COMMIT PREPARED) instead of five (two PREPAREs, the coordinator's
 *	  commit, two COMMIT PREPAREDs).
 *
 * Gids name the coordinator and its transaction, and for a keeper also the
 * keeper and the distributed transaction id (deadlock.c) its session works
 * for:
 *
 *	mycelium_<id>_<coordinator>
 *	mycelium_<id>_<coordinator>.<keeper>.<pid>.<start>
 *
 * where <id> is the coordinator's life << 32 | its xid (twophase.c) and
 * "<coordinator>:<pid>:<start>" is the distributed transaction id.  Node
 * names hold no '.'.
 *
 * Asking (mycelium.commit_outcome, run where the record is kept): the
 * answer is final only once the deciding transaction is over.  On the
 * coordinator that is its xid no longer running.  On a keeper it is no
 * session working for the distributed id any more: a COMMIT still on its
 * way (a slow network) would otherwise commit after "no record" was
 * answered.  The id is withdrawn when the keeper's session ends its
 * transaction, after its commit became visible, so once it is gone the
 * record, if any, is seen.
 *
 * IDENTIFICATION
 *	  src/txn/commit_record.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

#include "cluster/cluster.h"
#include "config/config.h"
#include "txn/txn.h"

#define GID_PREFIX "mycelium_"

PG_FUNCTION_INFO_V1(mycelium_keep_commit_record);
PG_FUNCTION_INFO_V1(mycelium_commit_outcome);

static SPIPlanPtr insert_plan = NULL;	/* of MyceliumInsertCommitRecord */

/*
 * take_name copies a node name ending at one of stops (or at the end) into
 * out (64 bytes); returns the end, or NULL if the name is empty or too long.
 */
static const char *
take_name(const char *p, const char *stops, char *out)
{
	size_t		len = strcspn(p, stops);

	if (len == 0 || len >= 64)
		return NULL;
	memcpy(out, p, len);
	out[len] = '\0';
	return p + len;
}

/*
 * MyceliumParseGid parses a gid of ours (see the file comment); false if
 * it is not one.
 */
bool
MyceliumParseGid(const char *gid, MyceliumGid *parsed)
{
	const char *p;
	char	   *end;
	long		pid;
	int64		start;

	memset(parsed, 0, sizeof(MyceliumGid));
	if (strncmp(gid, GID_PREFIX, strlen(GID_PREFIX)) != 0)
		return false;
	p = gid + strlen(GID_PREFIX);
	if (*p < '0' || *p > '9')
		return false;
	errno = 0;
	parsed->id = strtoull(p, &end, 10);
	if (errno != 0 || *end != '_')
		return false;
	p = take_name(end + 1, ".", parsed->coordinator);
	if (p == NULL)
		return false;
	if (*p == '\0')
		return true;
	p = take_name(p + 1, ".", parsed->keeper);
	if (p == NULL || *p != '.' || p[1] < '1' || p[1] > '9')
		return false;
	errno = 0;
	pid = strtol(p + 1, &end, 10);
	if (errno != 0 || *end != '.' || pid > INT_MAX || end[1] < '0' || end[1] > '9')
		return false;
	errno = 0;
	start = strtoll(end + 1, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	MyceliumFormatXactId(parsed->keeper_xact, parsed->coordinator, (int) pid, start);
	return true;
}

/*
 * MyceliumKeeperGid returns the gid of the current transaction (id: life
 * and xid) when keeper keeps its commit record.
 */
char *
MyceliumKeeperGid(uint64 id, const char *keeper)
{
	int			pid;
	int64		start;

	if (!MyceliumParseXactId(MyceliumDistributedXactId(), NULL, &pid, &start))
		elog(ERROR, "malformed distributed transaction id \"%s\"", MyceliumDistributedXactId());
	return psprintf(GID_PREFIX UINT64_FORMAT "_%s.%s.%d." INT64_FORMAT,
					id, mycelium_node_name, keeper, pid, start);
}

/*
 * MyceliumInsertCommitRecord inserts the commit record of gid (participants:
 * a text[] of the nodes that prepared it) in the current transaction, with
 * the extension owner's rights: any role may commit a write that spans
 * nodes.
 */
void
MyceliumInsertCommitRecord(const char *gid, Datum participants)
{
	Oid			types[2] = {TEXTOID, TEXTARRAYOID};
	Datum		vals[2];
	Oid			save_userid;
	int			save_sec_context;

	vals[0] = CStringGetTextDatum(gid);
	vals[1] = participants;
	/* portals are closed at PRE_COMMIT, so provide the snapshot SPI needs */
	PushActiveSnapshot(GetTransactionSnapshot());
	MyceliumBeginCatalogAccess(&save_userid, &save_sec_context);
	SPI_connect();
	/* planned once per backend (the plan cache replans if needed) */
	if (insert_plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare("INSERT INTO mycelium.commit_record (gid, participants) VALUES ($1, $2)",
									   2, types);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not plan the commit record insert");
		insert_plan = plan;
	}
	if (SPI_execute_plan(insert_plan, vals, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert commit record");
	SPI_finish();
	MyceliumEndCatalogAccess(save_userid, save_sec_context);
	PopActiveSnapshot();
}

/*
 * MyceliumCommitRecordExists says whether the commit record of gid exists,
 * read with the latest snapshot so that the caller's isolation level
 * cannot hide it.
 */
bool
MyceliumCommitRecordExists(const char *gid)
{
	Oid			types[1] = {TEXTOID};
	Datum		vals[1] = {CStringGetTextDatum(gid)};
	Oid			save_userid;
	int			save_sec_context;
	bool		found;

	MyceliumBeginCatalogAccess(&save_userid, &save_sec_context);
	SPI_connect();
	MyceliumSpiExecLatest("SELECT 1 FROM mycelium.commit_record WHERE gid = $1", 1, types, vals, true);
	found = SPI_processed > 0;
	SPI_finish();
	MyceliumEndCatalogAccess(save_userid, save_sec_context);
	return found;
}

/*
 * MyceliumKeptOutcome tells, on the node that keeps the record of gid
 * (parsed), whether it committed: 1 yes, 0 no and never, -1 not decided
 * yet (the deciding transaction may still run).
 */
int
MyceliumKeptOutcome(const char *gid, const MyceliumGid *parsed)
{
	if (parsed->keeper[0] ? MyceliumXactIdAtWork(parsed->keeper_xact)
		: MyceliumGidCoordinatorRunning(parsed->id))
		return -1;
	return MyceliumCommitRecordExists(gid) ? 1 : 0;
}

/*
 * parse_or_fail parses a gid given to one of the functions below, which
 * must be run on the node that keeps its commit record.
 */
static void
parse_or_fail(const char *gid, MyceliumGid *parsed)
{
	const char *kept_by;

	if (!MyceliumParseGid(gid, parsed))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not the gid of a Mycelium two-phase transaction", gid),
				 errhint("Mycelium gids look like mycelium_<id>_<coordinator>, optionally followed by .<keeper>.<pid>.<start>.")));
	kept_by = parsed->keeper[0] ? parsed->keeper : parsed->coordinator;
	if (strcmp(kept_by, mycelium_node_name) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the commit record of \"%s\" is kept by node \"%s\", not by this node (\"%s\")",
						gid, kept_by, mycelium_node_name),
				 errhint("Run this on node \"%s\".", kept_by)));
}

/*
 * mycelium.keep_commit_record(gid text, participants text[]) returns void:
 * the keeper's half of a commit it decides (see the file comment).  Only
 * the remote work of the gid's distributed transaction may call it, in
 * that transaction, so that the record commits if and only if that work
 * does.
 */
Datum
mycelium_keep_commit_record(PG_FUNCTION_ARGS)
{
	char	   *gid = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ArrayType  *participants = PG_GETARG_ARRAYTYPE_P(1);
	const char *working_for = MyceliumRemoteXactId();
	MyceliumGid parsed;

	parse_or_fail(gid, &parsed);
	if (parsed.keeper[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" names no keeper: its coordinator keeps its commit record", gid)));
	if (strcmp(working_for, parsed.keeper_xact) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("only the remote work of distributed transaction \"%s\" can keep the commit record of \"%s\"",
						parsed.keeper_xact, gid),
				 working_for[0] ? errdetail("This session works for distributed transaction \"%s\".", working_for)
				 : errdetail("This session is not the remote work of a distributed transaction.")));
	if (ARR_NDIM(participants) != 1 || array_contains_nulls(participants))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("participants must be a one-dimensional array of node names without NULLs")));
	MyceliumInsertCommitRecord(gid, PointerGetDatum(participants));
	PG_RETURN_VOID();
}

/*
 * mycelium.commit_outcome(gid text) returns boolean, on the node that keeps
 * the gid's commit record: true if the transaction committed, false if it
 * did not and never will, NULL while the deciding transaction may still
 * run.
 */
Datum
mycelium_commit_outcome(PG_FUNCTION_ARGS)
{
	char	   *gid = text_to_cstring(PG_GETARG_TEXT_PP(0));
	MyceliumGid parsed;

	int			outcome;

	parse_or_fail(gid, &parsed);
	outcome = MyceliumKeptOutcome(gid, &parsed);
	if (outcome < 0)
		PG_RETURN_NULL();
	PG_RETURN_BOOL(outcome == 1);
}
