/* SPDX-License-Identifier: MIT */
/* reflection.c — the answers of gRPC server reflection
 * (grpc.reflection.v1 and v1alpha ServerReflectionInfo, same messages on the
 * wire) from the FileDescriptorSet protoc wrote at build time
 * (proto/descriptors.pb, embedded as p2p_descriptors): list_services,
 * file_by_filename, file_containing_symbol (each file with its transitive
 * dependencies), and errors for what is not there. The calls themselves
 * are rpc.c's. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/reflection/v1/reflection.pb-c.h"
#include "log.h"
#include "reflection.h"
#include "wire.h"

extern const unsigned char p2p_descriptors[];
extern const size_t p2p_descriptors_len;

#define MAX_FILES 16
#define MAX_DEPS 16
#define MAX_SYMBOLS 256
#define NAME_MAX_LEN 256

struct rfile {
	const uint8_t *data; /* a serialized FileDescriptorProto */
	size_t len;
	char name[NAME_MAX_LEN];
	char deps[MAX_DEPS][NAME_MAX_LEN];
	int ndeps;
};

static struct {
	struct rfile files[MAX_FILES];
	int nfiles;
	struct { char name[NAME_MAX_LEN]; int file; bool service; } syms[MAX_SYMBOLS];
	int nsyms;
} db;

static void copy_name(char *dst, const struct wire_field *f)
{
	size_t n = f->len < NAME_MAX_LEN - 1 ? f->len : NAME_MAX_LEN - 1;

	memcpy(dst, f->data, n);
	dst[n] = '\0';
}

static int add_symbol(const char *scope, const struct wire_field *name, int file, bool service, char *out)
{
	char local[NAME_MAX_LEN];

	if (db.nsyms == MAX_SYMBOLS)
		return -ENOSPC;
	copy_name(local, name);
	if (strlen(scope) + 1 + strlen(local) >= NAME_MAX_LEN)
		return -ENAMETOOLONG;
	strcpy(db.syms[db.nsyms].name, scope);
	if (*scope)
		strcat(db.syms[db.nsyms].name, ".");
	strcat(db.syms[db.nsyms].name, local);
	db.syms[db.nsyms].file = file;
	db.syms[db.nsyms].service = service;
	if (out)
		memcpy(out, db.syms[db.nsyms].name, NAME_MAX_LEN);
	db.nsyms++;
	return 0;
}

/* The name (field 1) of a message, an enum, a service or a method. */
static bool name_of(const uint8_t *data, size_t len, struct wire_field *name)
{
	const uint8_t *p = data, *end = data + len;
	struct wire_field f;
	bool found = false;

	while (wire_next(&p, end, &f))
		if (f.number == 1 && f.type == 2) {
			*name = f;
			found = true;
		}
	return found;
}

/* A DescriptorProto: itself, its nested messages (3) and enums (4). */
static int add_message(const char *scope, const uint8_t *data, size_t len, int file)
{
	const uint8_t *p = data, *end = data + len;
	struct wire_field f, name;
	char full[NAME_MAX_LEN];

	if (!name_of(data, len, &name) || add_symbol(scope, &name, file, false, full) < 0)
		return -EINVAL;
	while (wire_next(&p, end, &f)) {
		if (f.type != 2)
			continue;
		if (f.number == 3 && add_message(full, f.data, f.len, file) < 0)
			return -EINVAL;
		if (f.number == 4 && (!name_of(f.data, f.len, &name) || add_symbol(full, &name, file, false, NULL) < 0))
			return -EINVAL;
	}
	return 0;
}

/* A ServiceDescriptorProto: itself and its methods (2). */
static int add_service(const char *scope, const uint8_t *data, size_t len, int file)
{
	const uint8_t *p = data, *end = data + len;
	struct wire_field f, name;
	char full[NAME_MAX_LEN];

	if (!name_of(data, len, &name) || add_symbol(scope, &name, file, true, full) < 0)
		return -EINVAL;
	while (wire_next(&p, end, &f))
		if (f.number == 2 && f.type == 2 &&
		    (!name_of(f.data, f.len, &name) || add_symbol(full, &name, file, false, NULL) < 0))
			return -EINVAL;
	return 0;
}

static int add_file(const uint8_t *data, size_t len)
{
	struct rfile *rf = &db.files[db.nfiles];
	const uint8_t *p = data, *end = data + len;
	struct wire_field f;
	char pkg[NAME_MAX_LEN] = "";
	int idx = db.nfiles;

	if (db.nfiles == MAX_FILES)
		return -ENOSPC;
	memset(rf, 0, sizeof(*rf));
	rf->data = data;
	rf->len = len;
	while (wire_next(&p, end, &f)) /* name and package come first, but need not */
		if (f.type == 2 && f.number == 1)
			copy_name(rf->name, &f);
		else if (f.type == 2 && f.number == 2)
			copy_name(pkg, &f);
		else if (f.type == 2 && f.number == 3 && rf->ndeps < MAX_DEPS)
			copy_name(rf->deps[rf->ndeps++], &f);
	if (p != end || !rf->name[0])
		return -EINVAL;
	db.nfiles++;
	for (p = data; wire_next(&p, end, &f);) {
		if (f.type != 2)
			continue;
		if ((f.number == 4 && add_message(pkg, f.data, f.len, idx) < 0) ||
		    (f.number == 6 && add_service(pkg, f.data, f.len, idx) < 0))
			return -EINVAL;
		if (f.number == 5) {
			struct wire_field name;

			if (!name_of(f.data, f.len, &name) || add_symbol(pkg, &name, idx, false, NULL) < 0)
				return -EINVAL;
		}
	}
	return 0;
}

int reflection_init(void)
{
	const uint8_t *p = p2p_descriptors, *end = p2p_descriptors + p2p_descriptors_len;
	struct wire_field f;

	if (db.nfiles)
		return 0;
	while (p < end) {
		if (!wire_next(&p, end, &f) || f.number != 1 || f.type != 2 || add_file(f.data, f.len) < 0) {
			log_err("the embedded FileDescriptorSet is malformed");
			db.nfiles = db.nsyms = 0;
			return -EINVAL;
		}
	}
	return 0;
}

static int file_index(const char *name)
{
	for (int i = 0; i < db.nfiles; i++)
		if (strcmp(db.files[i].name, name) == 0)
			return i;
	return -1;
}

/* Mark file i and what it imports, transitively. */
static void with_deps(int i, bool *want)
{
	if (i < 0 || want[i])
		return;
	want[i] = true;
	for (int d = 0; d < db.files[i].ndeps; d++)
		with_deps(file_index(db.files[i].deps[d]), want);
}

/* Answer one request; the reply is packed into a new byte buffer *out. */
grpc_byte_buffer *reflection_answer(const uint8_t *req, size_t len)
{
	Grpc__Reflection__V1__ServerReflectionRequest *m =
		grpc__reflection__v1__server_reflection_request__unpack(NULL, len, req);
	Grpc__Reflection__V1__ServerReflectionResponse resp = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
	Grpc__Reflection__V1__FileDescriptorResponse fdr = GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
	Grpc__Reflection__V1__ListServiceResponse lsr = GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
	Grpc__Reflection__V1__ErrorResponse err = GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
	Grpc__Reflection__V1__ServiceResponse svc[MAX_SYMBOLS], *svcp[MAX_SYMBOLS];
	ProtobufCBinaryData blobs[MAX_FILES];
	bool want[MAX_FILES] = { false };
	char msg[NAME_MAX_LEN + 64];
	grpc_byte_buffer *b;
	grpc_slice s;
	size_t n = 0;
	int i = -1;

	resp.message_response_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
	resp.error_response = &err;
	err.error_code = 3; /* INVALID_ARGUMENT */
	err.error_message = "malformed ServerReflectionRequest";
	if (m) {
		resp.valid_host = m->host;
		resp.original_request = m;
		switch (m->message_request_case) {
		case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
			for (int k = 0; k < db.nsyms; k++)
				if (db.syms[k].service) {
					grpc__reflection__v1__service_response__init(&svc[n]);
					svc[n].name = db.syms[k].name;
					svcp[n] = &svc[n];
					n++;
				}
			lsr.n_service = n;
			lsr.service = svcp;
			resp.message_response_case =
				GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
			resp.list_services_response = &lsr;
			break;
		case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
			i = file_index(m->file_by_filename);
			snprintf(msg, sizeof(msg), "no file \"%.*s\"", NAME_MAX_LEN, m->file_by_filename);
			break;
		case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
			for (int k = 0; k < db.nsyms; k++)
				if (strcmp(db.syms[k].name, m->file_containing_symbol) == 0)
					i = db.syms[k].file;
			snprintf(msg, sizeof(msg), "no symbol \"%.*s\"", NAME_MAX_LEN, m->file_containing_symbol);
			break;
		case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
			snprintf(msg, sizeof(msg), "no extensions are defined");
			break;
		case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
			snprintf(msg, sizeof(msg), "no extensions of \"%.*s\"", NAME_MAX_LEN,
				 m->all_extension_numbers_of_type);
			break;
		default:
			snprintf(msg, sizeof(msg), "no request given");
			err.error_code = 3;
			break;
		}
		if (resp.message_response_case ==
		    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE) {
			if (m->message_request_case != GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST__NOT_SET)
				err.error_code = 5; /* NOT_FOUND */
			err.error_message = msg;
		}
		if (i >= 0) {
			with_deps(i, want);
			for (int k = 0; k < db.nfiles; k++)
				if (want[k])
					blobs[fdr.n_file_descriptor_proto++] =
						(ProtobufCBinaryData){ db.files[k].len, (uint8_t *)db.files[k].data };
			fdr.file_descriptor_proto = blobs;
			resp.message_response_case =
				GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
			resp.file_descriptor_response = &fdr;
		}
	}
	s = grpc_slice_malloc(protobuf_c_message_get_packed_size(&resp.base));
	protobuf_c_message_pack(&resp.base, GRPC_SLICE_START_PTR(s));
	b = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	if (m)
		grpc__reflection__v1__server_reflection_request__free_unpacked(m, NULL);
	return b;
}
