/*-------------------------------------------------------------------------
 *
 * ids.h
 *	  Mesh-wide unique ids (mycelium.next_id) and order-independent table
 *	  checksums (mycelium.table_checksum).
 *
 * IDENTIFICATION
 *	  src/ids/ids.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_IDS_H
#define MYCELIUM_IDS_H

/*
 * Layout of an id (a positive bigint, most significant bit first):
 *
 *	 1 bit	 always 0 (ids are positive)
 *	41 bits	 milliseconds since MYCELIUM_ID_EPOCH (good until 2094-09-07)
 *	10 bits	 node_id of the generating node (0..1023)
 *	12 bits	 sequence within that millisecond (0..4095)
 */
#define MYCELIUM_ID_TIME_BITS		41
#define MYCELIUM_ID_NODE_BITS		10
#define MYCELIUM_ID_SEQUENCE_BITS	12
#define MYCELIUM_ID_MAX_NODE		((1 << MYCELIUM_ID_NODE_BITS) - 1)

/* 2025-01-01 00:00:00 UTC as a TimestampTz (microseconds since 2000-01-01) */
#define MYCELIUM_ID_EPOCH	INT64CONST(789004800000000)

/* in ids/next_id.c */
extern void MyceliumIdsShmemRequest(void);
extern void MyceliumIdsShmemStartup(void);

#endif							/* MYCELIUM_IDS_H */
