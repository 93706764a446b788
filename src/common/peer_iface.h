/* SPDX-License-Identifier: MIT */
/* peer_iface.h — the vocabulary of the peer's control interface
 * (io.p2p.Peer, docs/CONTROL.md): method and error names, the error enum
 * and the limits p2pctl, p2p-peerd and (where they meet the directory's
 * own bounds) p2p-dird share. One place, so the two sides cannot drift. */
#ifndef P2P_PEER_IFACE_H
#define P2P_PEER_IFACE_H

#define PEER_IFACE "io.p2p.Peer"

#define PEER_M_REGISTER PEER_IFACE ".Register"
#define PEER_M_LOGIN PEER_IFACE ".Login"
#define PEER_M_LOGOUT PEER_IFACE ".Logout"
#define PEER_M_INDEX PEER_IFACE ".Index"
#define PEER_M_SEARCH PEER_IFACE ".Search"
#define PEER_M_DOWNLOAD PEER_IFACE ".Download"
#define PEER_M_STATUS PEER_IFACE ".Status"
#define PEER_M_LIST_SHARED PEER_IFACE ".ListShared"
#define PEER_M_TRANSFERS PEER_IFACE ".Transfers"
#define PEER_M_CANCEL PEER_IFACE ".Cancel"
#define PEER_M_PAUSE PEER_IFACE ".Pause"
#define PEER_M_RESUME PEER_IFACE ".Resume"
#define PEER_M_SET_RATES PEER_IFACE ".SetRates"

/* SetRates and the upload_rate / download_rate keys: bytes/s, 0 unlimited. */
#define PEER_RATE_MAX (1LL << 40)

#define VARLINK_E_INVALID_PARAMETER "org.varlink.service.InvalidParameter"
#define VARLINK_E_METHOD_NOT_FOUND "org.varlink.service.MethodNotFound"

/* The interface's own errors (io.p2p.Peer.NAME). */
enum peer_error {
	PEER_E_NOT_LOGGED_IN,
	PEER_E_AUTHENTICATION_FAILED,
	PEER_E_USER_EXISTS,
	PEER_E_REGISTRATION_CLOSED,
	PEER_E_RATE_LIMITED,
	PEER_E_DIRECTORY_UNREACHABLE,
	PEER_E_NOT_FOUND,
	PEER_E_VERIFICATION_FAILED,
	PEER_E_TRANSFER_FAILED,
	PEER_E_CANCELLED,
	PEER_E_PERMISSION_DENIED,
	PEER_E_BUSY,
	PEER_E_FILE_EXISTS,
	PEER_E_COUNT
};

/* The full name of e ("io.p2p.Peer.NotLoggedIn"). */
static inline const char *peer_error_name(enum peer_error e)
{
	static const char *const names[PEER_E_COUNT] = {
		[PEER_E_NOT_LOGGED_IN] = PEER_IFACE ".NotLoggedIn",
		[PEER_E_AUTHENTICATION_FAILED] = PEER_IFACE ".AuthenticationFailed",
		[PEER_E_USER_EXISTS] = PEER_IFACE ".UserExists",
		[PEER_E_REGISTRATION_CLOSED] = PEER_IFACE ".RegistrationClosed",
		[PEER_E_RATE_LIMITED] = PEER_IFACE ".RateLimited",
		[PEER_E_DIRECTORY_UNREACHABLE] = PEER_IFACE ".DirectoryUnreachable",
		[PEER_E_NOT_FOUND] = PEER_IFACE ".NotFound",
		[PEER_E_VERIFICATION_FAILED] = PEER_IFACE ".VerificationFailed",
		[PEER_E_TRANSFER_FAILED] = PEER_IFACE ".TransferFailed",
		[PEER_E_CANCELLED] = PEER_IFACE ".Cancelled",
		[PEER_E_PERMISSION_DENIED] = PEER_IFACE ".PermissionDenied",
		[PEER_E_BUSY] = PEER_IFACE ".Busy",
		[PEER_E_FILE_EXISTS] = PEER_IFACE ".FileExists",
	};

	return (unsigned)e < PEER_E_COUNT ? names[e] : PEER_IFACE ".TransferFailed";
}

/* Search: results per call (p2p-dird's /search limit has the same bound). */
#define PEER_SEARCH_LIMIT_DEFAULT 50
#define PEER_SEARCH_LIMIT_MAX 1000
/* A substring query, bytes. */
#define PEER_QUERY_MAX 255
/* Passwords, bytes (p2p-dird refuses longer ones). */
#define PEER_PASSWORD_MAX 1024

/* Control connections served at once; more wait in the kernel's backlog
 * (p2p-peerd(8), "Bounds"). */
#define PEER_CONTROL_CLIENTS_MAX 64

#endif
