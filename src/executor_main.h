/*-------------------------------------------------------------------------
 *
 * executor_main.h
 *		The executor background worker's entry point (executor_main.c);
 *		the launcher starts it by name.
 *
 * IDENTIFICATION
 *		src/executor_main.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_EXECUTOR_MAIN_H
#define PGB_EXECUTOR_MAIN_H

extern PGDLLEXPORT void pgbatch_executor_main(Datum main_arg);

#endif							/* PGB_EXECUTOR_MAIN_H */
