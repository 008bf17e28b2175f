/*-------------------------------------------------------------------------
 *
 * reclaim.h
 *		Taking back running items whose executor is gone or whose lease
 *		ran out (reclaim.c).
 *
 * IDENTIFICATION
 *		src/reclaim.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_RECLAIM_H
#define PGB_RECLAIM_H

extern int64 pgb_reclaim(Oid actor);

#endif							/* PGB_RECLAIM_H */
