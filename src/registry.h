/*-------------------------------------------------------------------------
 *
 * registry.h
 *		The launcher's registry of the databases that have the extension
 *		(registry.c).
 *
 * IDENTIFICATION
 *		src/registry.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_REGISTRY_H
#define PGB_REGISTRY_H

extern bool pgb_registry_load(void);
extern void pgb_registry_save(void);

#endif							/* PGB_REGISTRY_H */
