/*-------------------------------------------------------------------------
 *
 * tls.h
 *	  Certificate management: what other subsystems may call.
 *
 * The SQL functions (generate_ca, generate_certificate, certificate_info,
 * verify_certificate, local_certificate_status) need no wiring; the only
 * entry point for the rest of Mycelium is the daily expiry check that the
 * maintenance worker runs.
 *
 * IDENTIFICATION
 *	  src/tls/tls.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_TLS_H
#define MYCELIUM_TLS_H

/* in tls/status.c */
extern void MyceliumTlsCheckExpiry(void);

#endif							/* MYCELIUM_TLS_H */
