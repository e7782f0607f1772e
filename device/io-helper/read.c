/*
 * cm4prov-io hash and backup: one pass over the target that reads (direct I/O, holes of a file
 * target not read at all), hashes and, for a backup, compresses and writes out, each stage on
 * its own thread so that the eMMC read, the sha256 and zstd overlap.
 */
#define _GNU_SOURCE
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#define BLOCK (4u << 20)
#define SLOTS 6

enum { HASHER, WRITER };

struct slot {
	char *data;
	size_t length;
	int zero; /* a hole of a file target: zeros, not read */
};

struct pass {
	const char *target;
	uint64_t bytes;
	int fd;
	int sparse; /* a regular file: SEEK_DATA finds its holes */
	struct read_back reader;
	struct ring ring;
	struct slot slots[SLOTS];
	char *zeros;
	struct status_file status;
	pthread_mutex_t status_lock;
	uint64_t read;
	uint64_t sent; /* backup: bytes written to the output (after compression) */
	struct timespec reported_at;
	char sha256[SHA256_HEX];
	/* backup: where the bytes go */
	ZSTD_CCtx *compressor;
	char *compressed;
	size_t compressed_room;
};

/* True when [offset, offset+length) of a file target holds no data (a hole). */
static int is_hole(struct pass *pass, uint64_t offset, size_t length)
{
	if (!pass->sparse)
		return 0;
	off_t data = lseek(pass->fd, (off_t)offset, SEEK_DATA);
	if (data < 0)
		return errno == ENXIO; /* no data from here to the end */
	return (uint64_t)data >= offset + length;
}

/* The status file: bytes read, and bytes written out (a backup's, compressed: the sign that the
 * upload drains). Either thread may call it; the file is rewritten at most every 100 ms. */
static void report(struct pass *pass, uint64_t read, uint64_t sent, const char *phase)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&pass->status_lock);
	pass->read += read;
	pass->sent += sent;
	long elapsed_ms = (now.tv_sec - pass->reported_at.tv_sec) * 1000 + (now.tv_nsec - pass->reported_at.tv_nsec) / 1000000;
	if (elapsed_ms >= 100 || strcmp(phase, "reading") != 0) {
		status_write(&pass->status, pass->read, pass->sent, phase);
		pass->reported_at = now;
	}
	pthread_mutex_unlock(&pass->status_lock);
}

static void *read_target(void *argument)
{
	struct pass *pass = argument;
	for (uint64_t offset = 0; offset < pass->bytes;) {
		int64_t sequence = ring_claim(&pass->ring);
		if (sequence < 0)
			break;
		struct slot *slot = &pass->slots[sequence % SLOTS];
		size_t length = pass->bytes - offset < BLOCK ? (size_t)(pass->bytes - offset) : BLOCK;
		slot->zero = is_hole(pass, offset, length);
		slot->length = slot->zero ? length : read_back_range(&pass->reader, slot->data, length, offset);
		if (slot->length < length)
			fail(EXIT_IO_ERROR, "%s ended at %llu bytes, before the %llu asked for", pass->target,
			     (unsigned long long)(offset + slot->length), (unsigned long long)pass->bytes);
		offset += length;
		report(pass, length, 0, "reading");
		ring_publish(&pass->ring);
	}
	ring_close(&pass->ring);
	return NULL;
}

static const char *slot_bytes(struct pass *pass, const struct slot *slot) { return slot->zero ? pass->zeros : slot->data; }

static void *hash_slots(void *argument)
{
	struct pass *pass = argument;
	struct sha256_stream *stream = sha256_begin();
	int64_t sequence;
	while ((sequence = ring_next(&pass->ring, HASHER)) >= 0) {
		const struct slot *slot = &pass->slots[sequence % SLOTS];
		sha256_add(stream, slot_bytes(pass, slot), slot->length);
		ring_done(&pass->ring, HASHER);
	}
	sha256_end(stream, pass->sha256);
	return NULL;
}

static void write_out(struct pass *pass, const char *data, size_t length)
{
	while (length > 0) {
		ssize_t wrote = write(STDOUT_FILENO, data, length);
		if (wrote < 0 && errno == EINTR)
			continue;
		if (wrote < 0 && errno == EPIPE)
			fail(EXIT_OUTPUT_CLOSED, "the output was closed before the end (the upload stopped)");
		if (wrote <= 0)
			fail(EXIT_IO_ERROR, "writing the output failed: %s", strerror(errno));
		data += wrote;
		length -= (size_t)wrote;
		report(pass, 0, (uint64_t)wrote, "reading");
	}
}

static void compress_out(struct pass *pass, const char *data, size_t length, ZSTD_EndDirective mode)
{
	ZSTD_inBuffer input = { data, length, 0 };
	size_t remaining;
	do {
		ZSTD_outBuffer output = { pass->compressed, pass->compressed_room, 0 };
		remaining = ZSTD_compressStream2(pass->compressor, &output, &input, mode);
		if (ZSTD_isError(remaining))
			fail(EXIT_IO_ERROR, "zstd failed: %s", ZSTD_getErrorName(remaining));
		write_out(pass, pass->compressed, output.pos);
	} while (mode == ZSTD_e_end ? remaining != 0 : input.pos < input.size);
}

/* The backup's output stage, on the calling thread: each slot plain or through zstd. */
static void write_slots(struct pass *pass)
{
	int64_t sequence;
	while ((sequence = ring_next(&pass->ring, WRITER)) >= 0) {
		const struct slot *slot = &pass->slots[sequence % SLOTS];
		if (pass->compressor)
			compress_out(pass, slot_bytes(pass, slot), slot->length, ZSTD_e_continue);
		else
			write_out(pass, slot_bytes(pass, slot), slot->length);
		ring_done(&pass->ring, WRITER);
	}
	if (pass->compressor)
		compress_out(pass, NULL, 0, ZSTD_e_end);
}

static void pass_open(struct pass *pass, const char *target, uint64_t bytes, const char *status_path, int consumers)
{
	memset(pass, 0, sizeof *pass);
	pass->target = target;
	pass->fd = open(target, O_RDONLY | O_CLOEXEC);
	if (pass->fd < 0)
		fail(EXIT_IO_ERROR, "cannot open %s: %s", target, strerror(errno));
	struct stat info;
	pass->sparse = fstat(pass->fd, &info) == 0 && S_ISREG(info.st_mode);
	pass->bytes = bytes ? bytes : target_bytes(pass->fd);
	read_back_open(&pass->reader, target);
	ring_init(&pass->ring, SLOTS, consumers);
	for (int i = 0; i < SLOTS; i++)
		pass->slots[i].data = aligned_buffer(BLOCK);
	pass->zeros = aligned_buffer(BLOCK);
	memset(pass->zeros, 0, BLOCK);
	status_open(&pass->status, status_path);
	pthread_mutex_init(&pass->status_lock, NULL);
	report(pass, 0, 0, "reading");
}

/* Runs the reader and the hasher on threads of their own; the caller may be a third stage. */
static void pass_run(struct pass *pass, void (*third_stage)(struct pass *))
{
	pthread_t reader, hasher;
	if (pthread_create(&reader, NULL, read_target, pass) != 0 || pthread_create(&hasher, NULL, hash_slots, pass) != 0)
		fail(EXIT_IO_ERROR, "cannot start a thread");
	if (third_stage)
		third_stage(pass);
	pthread_join(reader, NULL);
	pthread_join(hasher, NULL);
	report(pass, 0, 0, "done");
}

struct read_options {
	const char *target, *status, *sha_out;
	uint64_t bytes; /* 0: the whole target */
	int level; /* 0: plain */
};

static void parse_read_options(int argc, char **argv, struct read_options *options, const char *usage)
{
	memset(options, 0, sizeof *options);
	for (int i = 1; i < argc; i++) {
		const char *value = i + 1 < argc ? argv[i + 1] : NULL;
		uint64_t level;
		if (!value)
			fail(EXIT_USAGE, "%s needs a value\n%s", argv[i], usage);
		else if (!strcmp(argv[i], "--target"))
			options->target = value;
		else if (!strcmp(argv[i], "--bytes") && parse_count(value, &options->bytes) == 0 && options->bytes > 0)
			;
		else if (!strcmp(argv[i], "--status"))
			options->status = value;
		else if (!strcmp(argv[i], "--sha256-to"))
			options->sha_out = value;
		else if (!strcmp(argv[i], "--zstd") && parse_count(value, &level) == 0 && level >= 1 && level <= 19)
			options->level = (int)level;
		else
			fail(EXIT_USAGE, "unknown or bad argument '%s'\n%s", argv[i], usage);
		i++;
	}
	if (!options->target)
		fail(EXIT_USAGE, "%s", usage);
}

int command_hash(int argc, char **argv)
{
	static const char usage[] = "usage: cm4prov-io hash --target PATH [--bytes N] [--status FILE]";
	struct read_options options;
	struct pass pass;
	parse_read_options(argc, argv, &options, usage);
	pass_open(&pass, options.target, options.bytes, options.status, 1);
	pass_run(&pass, NULL);
	printf("%s\n", pass.sha256);
	return EXIT_DONE;
}

int command_backup(int argc, char **argv)
{
	static const char usage[] =
		"usage: cm4prov-io backup --target PATH --sha256-to FILE [--bytes N] [--status FILE] [--zstd LEVEL] > STREAM";
	struct read_options options;
	struct pass pass;
	parse_read_options(argc, argv, &options, usage);
	if (!options.sha_out)
		fail(EXIT_USAGE, "%s", usage);
	signal(SIGPIPE, SIG_IGN);
	pass_open(&pass, options.target, options.bytes, options.status, 2);
	if (options.level) {
		pass.compressor = ZSTD_createCCtx();
		pass.compressed_room = ZSTD_CStreamOutSize();
		pass.compressed = malloc(pass.compressed_room);
		if (!pass.compressor || !pass.compressed)
			fail(EXIT_IO_ERROR, "out of memory for zstd");
		ZSTD_CCtx_setParameter(pass.compressor, ZSTD_c_compressionLevel, options.level);
		/* zstd's own worker threads where the library has them (Debian's has); else it runs here. */
		long cores = sysconf(_SC_NPROCESSORS_ONLN);
		ZSTD_CCtx_setParameter(pass.compressor, ZSTD_c_nbWorkers, cores > 1 ? (int)cores : 0);
	}
	pass_run(&pass, write_slots);
	FILE *sha = fopen(options.sha_out, "w");
	if (!sha || fprintf(sha, "%s\n", pass.sha256) < 0 || fclose(sha) != 0)
		fail(EXIT_IO_ERROR, "cannot write %s: %s", options.sha_out, strerror(errno));
	return EXIT_DONE;
}
