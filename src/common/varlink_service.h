/* SPDX-License-Identifier: MIT */
/* varlink_service.h — the part of a varlink server that does not depend on
 * what the service does: org.varlink.service (GetInfo,
 * GetInterfaceDescription), the call flags "oneway", "more" and "upgrade",
 * and the errors for methods that are not there. The server parses a call
 * (varlink_call_parse()), looks its method up in its own table and hands
 * both to varlink_service_dispatch(), which either answers the call itself
 * or tells the server to run its method. docs/CONTROL.md describes the
 * behaviour for p2p-peerd.
 *
 * The interface definitions (IDL) a server returns are compiled in from
 * their files at build time (src/common/Makemodule.am), so that the text
 * GetInterfaceDescription returns is the file, byte for byte:
 * docs/io.p2p.Peer.varlink and src/common/org.varlink.service.varlink.
 */
#ifndef P2P_VARLINK_SERVICE_H
#define P2P_VARLINK_SERVICE_H

#include <stddef.h>

#include "varlink.h"

/* The interface definitions, NUL-terminated (generated varlink_idl.c). */
extern const unsigned char varlink_idl_org_varlink_service[];
extern const unsigned char varlink_idl_io_p2p_peer[];
#define VARLINK_IDL_ORG_VARLINK_SERVICE ((const char *)varlink_idl_org_varlink_service)
#define VARLINK_IDL_IO_P2P_PEER ((const char *)varlink_idl_io_p2p_peer)

#define VARLINK_SERVICE_INTERFACE "org.varlink.service"
#define VARLINK_ERROR_INTERFACE_NOT_FOUND "org.varlink.service.InterfaceNotFound"
#define VARLINK_ERROR_METHOD_NOT_FOUND "org.varlink.service.MethodNotFound"
#define VARLINK_ERROR_METHOD_NOT_IMPLEMENTED "org.varlink.service.MethodNotImplemented"
#define VARLINK_ERROR_INVALID_PARAMETER "org.varlink.service.InvalidParameter"
#define VARLINK_ERROR_PERMISSION_DENIED "org.varlink.service.PermissionDenied"
#define VARLINK_ERROR_EXPECTED_MORE "org.varlink.service.ExpectedMore"

/* An interface the service implements, besides org.varlink.service. */
struct varlink_interface {
	const char *name;        /* "io.p2p.Peer" */
	const char *description; /* its IDL text, starting the interface */
};

struct varlink_service {
	const char *vendor;      /* GetInfo */
	const char *product;
	const char *version;
	const char *url;
	const struct varlink_interface *interfaces;
	size_t n_interfaces;
};

/* method_flags for varlink_service_dispatch(). */
#define VARLINK_METHOD_UNKNOWN (-1)       /* not in the server's table */
#define VARLINK_METHOD_REQUIRES_MORE 0x1  /* a call without "more" gets ExpectedMore */

/* Decide what to do with a parsed call whose method the server looked up in
 * its table (method_flags: its flags, or VARLINK_METHOD_UNKNOWN).
 *
 * Returns 1 when the server must run its method with call->parameters; for
 * a oneway call the method runs but nothing it answers may be sent. Returns
 * 0 when the call is answered here: *answer (malloc'd, NUL included,
 * *answer_len bytes) is the message to send, or NULL for a oneway call,
 * which is never answered, not even with an error. Returns -ENOMEM.
 *
 * Answered here: org.varlink.service.GetInfo and GetInterfaceDescription
 * (InterfaceNotFound for an interface not in svc); InvalidParameter naming
 * the parameter when the call's parameters do not match the method's input
 * in its interface's IDL (varlink_idl_check_parameters()), so that the file
 * and the server cannot disagree on them; MethodNotImplemented for
 * a method an interface's IDL declares but the table lacks, MethodNotFound
 * for any other unknown method; InvalidParameter "upgrade" for a call asking
 * to upgrade the connection (no method here supports it); ExpectedMore for a
 * method that requires "more" called without it. "more" on a method that
 * does not stream is allowed: it gets its one reply without "continues". */
int varlink_service_dispatch(const struct varlink_service *svc, const struct varlink_call *call,
			     int method_flags, char **answer, size_t *answer_len);

/* True if the IDL text declares "method NAME(" (member alone: "Status"). */
bool varlink_idl_declares_method(const char *idl, const char *member);

/* Check a call's parameters against the input of method member in the IDL
 * text, as systemd does: every declared field has its type (a nullable one
 * may be absent or null; int is a JSON integer, float any number, string
 * without NUL, an enum one of its names), nested structs, arrays, maps and
 * named types alike, and no field is there that the method does not declare.
 * Returns 0; -EINVAL with bad (bad_size bytes) naming the first wrong
 * top-level parameter; -ENOENT when the IDL does not declare the method;
 * -EBADMSG when its input cannot be read. */
int varlink_idl_check_parameters(const char *idl, const char *member, struct json_object *params,
				 char *bad, size_t bad_size);

#endif
