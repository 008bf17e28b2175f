/*-------------------------------------------------------------------------
 *
 * launcher.h
 *		The launcher background worker (launcher.c).
 *
 * IDENTIFICATION
 *		src/launcher.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_LAUNCHER_H
#define PGB_LAUNCHER_H

extern void pgb_register_launcher(void);
extern PGDLLEXPORT void pgbatch_launcher_main(Datum main_arg);

#endif							/* PGB_LAUNCHER_H */
