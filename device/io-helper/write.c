/*
 * cm4prov-io write: the mapped chunks of an image, from stdin onto the target, each read back
 * and checked against its sha256 while the next ones are written (bmap semantics, overlapped).
 */
#define _GNU_SOURCE
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

/* Chunks written but not yet read back: bounds the dirty pages ahead of the verifier. */
#define WRITE_AHEAD 8

struct chunk {
	uint64_t index;
	uint64_t offset;
	uint64_t length;
	char sha256[SHA256_HEX];
};

struct chunk_list {
	struct chunk *chunks;
	size_t count;
	uint64_t longest;
};

/* Lines "INDEX OFFSET LENGTH SHA256 [ZOFFSET ZLENGTH]" (the client's copy of the chunk list),
 * from chunk FROM on. */
static void load_chunks(const char *path, uint64_t from, struct chunk_list *list)
{
	FILE *file = fopen(path, "r");
	if (!file)
		fail(EXIT_USAGE, "cannot open the chunk list %s: %s", path, strerror(errno));
	size_t room = 0;
	char line[512];
	memset(list, 0, sizeof *list);
	while (fgets(line, sizeof line, file)) {
		struct chunk chunk;
		unsigned long long index, offset, length;
		char sha[SHA256_HEX + 1];
		if (sscanf(line, "%llu %llu %llu %65s", &index, &offset, &length, sha) != 4 || strlen(sha) != 64 || length == 0)
			fail(EXIT_USAGE, "the chunk list %s has a line that is not INDEX OFFSET LENGTH SHA256: %s", path, line);
		if (index < from)
			continue;
		chunk.index = index, chunk.offset = offset, chunk.length = length;
		memcpy(chunk.sha256, sha, SHA256_HEX);
		if (list->count == room) {
			room = room ? 2 * room : 256;
			list->chunks = realloc(list->chunks, room * sizeof *list->chunks);
			if (!list->chunks)
				fail(EXIT_IO_ERROR, "out of memory for the chunk list");
		}
		list->chunks[list->count++] = chunk;
		if (length > list->longest)
			list->longest = length;
	}
	fclose(file);
}

/* stdin: the chunks' bytes in order, plain or as zstd frames. */
struct source {
	ZSTD_DCtx *decoder;
	ZSTD_inBuffer input;
	char *input_buffer;
	size_t input_room;
	int ended;
	const char *error;
};

static void source_open(struct source *source, int zstd)
{
	memset(source, 0, sizeof *source);
	if (!zstd)
		return;
	source->decoder = ZSTD_createDCtx();
	source->input_room = ZSTD_DStreamInSize();
	source->input_buffer = malloc(source->input_room);
	if (!source->decoder || !source->input_buffer)
		fail(EXIT_IO_ERROR, "out of memory for the zstd decoder");
	source->input.src = source->input_buffer;
}

static size_t read_stdin(struct source *source, char *into, size_t room)
{
	for (;;) {
		ssize_t got = read(STDIN_FILENO, into, room);
		if (got >= 0) {
			source->ended = got == 0;
			return (size_t)got;
		}
		if (errno != EINTR) {
			source->error = strerror(errno);
			source->ended = 1;
			return 0;
		}
	}
}

/* Fills BUFFER with LENGTH bytes of the stream; fewer when it ends (or breaks) first. */
static size_t source_fill(struct source *source, char *buffer, size_t length)
{
	size_t filled = 0;
	if (!source->decoder) {
		while (filled < length && !source->ended)
			filled += read_stdin(source, buffer + filled, length - filled);
		return filled;
	}
	ZSTD_outBuffer output = { buffer, length, 0 };
	while (output.pos < length) {
		if (source->input.pos == source->input.size) {
			if (source->ended)
				break;
			source->input.size = read_stdin(source, source->input_buffer, source->input_room);
			source->input.pos = 0;
			if (source->input.size == 0)
				break;
		}
		size_t result = ZSTD_decompressStream(source->decoder, &output, &source->input);
		if (ZSTD_isError(result)) {
			source->error = ZSTD_getErrorName(result);
			source->ended = 1;
			break;
		}
	}
	return output.pos;
}

struct deploy {
	struct chunk_list list;
	struct ring ring;
	struct read_back reader;
	struct status_file status;
	pthread_mutex_t progress_lock;
	uint64_t written;
	uint64_t verified;
	const char *phase;
	int verified_fd;
	/* The first chunk that read back wrong, and what it read as. */
	const struct chunk *mismatch;
	char mismatch_sha256[SHA256_HEX];
};

static void report(struct deploy *deploy, uint64_t written, uint64_t verified, const char *phase)
{
	pthread_mutex_lock(&deploy->progress_lock);
	deploy->written += written;
	deploy->verified += verified;
	if (phase)
		deploy->phase = phase;
	status_write(&deploy->status, deploy->written, deploy->verified, deploy->phase);
	pthread_mutex_unlock(&deploy->progress_lock);
}

/* The verifier: reads each written chunk back from the target and checks its sha256. */
static void *verify_chunks(void *argument)
{
	struct deploy *deploy = argument;
	char *buffer = aligned_buffer(deploy->list.longest);
	int64_t sequence;
	while ((sequence = ring_next(&deploy->ring, 0)) >= 0) {
		const struct chunk *chunk = &deploy->list.chunks[sequence];
		char got[SHA256_HEX];
		size_t read = read_back_range(&deploy->reader, buffer, chunk->length, chunk->offset);
		sha256_hex(buffer, read, got);
		if (read != chunk->length || strcmp(got, chunk->sha256) != 0) {
			deploy->mismatch = chunk;
			memcpy(deploy->mismatch_sha256, got, SHA256_HEX);
			ring_abort(&deploy->ring);
			break;
		}
		char line[SHA256_HEX + 1];
		memcpy(line, chunk->sha256, 64);
		line[64] = '\n';
		if (write(deploy->verified_fd, line, 65) != 65)
			fail(EXIT_IO_ERROR, "could not note a verified chunk: %s", strerror(errno));
		report(deploy, 0, chunk->length, NULL);
		ring_done(&deploy->ring, 0);
	}
	free(buffer);
	return NULL;
}

static void write_fully(int fd, const char *buffer, size_t length, uint64_t offset, const char *target)
{
	size_t done = 0;
	while (done < length) {
		ssize_t wrote = pwrite(fd, buffer + done, length - done, (off_t)(offset + done));
		if (wrote < 0 && errno == EINTR)
			continue;
		if (wrote <= 0)
			fail(EXIT_IO_ERROR, "writing %s at offset %llu failed: %s", target, (unsigned long long)(offset + done),
			     wrote < 0 ? strerror(errno) : "nothing written");
		done += (size_t)wrote;
	}
}

static const char usage[] =
	"usage: cm4prov-io write --chunks FILE --from INDEX --target PATH --verified FILE [--status FILE] [--zstd] < STREAM";

int command_write(int argc, char **argv)
{
	const char *chunks_path = NULL, *target = NULL, *verified_path = NULL, *status_path = NULL;
	uint64_t from = 0;
	int zstd = 0;
	for (int i = 1; i < argc; i++) {
		const char *value = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(argv[i], "--zstd"))
			zstd = 1;
		else if (!value)
			fail(EXIT_USAGE, "%s needs a value\n%s", argv[i], usage);
		else if (!strcmp(argv[i], "--chunks"))
			chunks_path = value, i++;
		else if (!strcmp(argv[i], "--target"))
			target = value, i++;
		else if (!strcmp(argv[i], "--verified"))
			verified_path = value, i++;
		else if (!strcmp(argv[i], "--status"))
			status_path = value, i++;
		else if (!strcmp(argv[i], "--from") && parse_count(value, &from) == 0)
			i++;
		else
			fail(EXIT_USAGE, "unknown or bad argument '%s'\n%s", argv[i], usage);
	}
	if (!chunks_path || !target || !verified_path)
		fail(EXIT_USAGE, "%s", usage);

	struct deploy deploy;
	memset(&deploy, 0, sizeof deploy);
	load_chunks(chunks_path, from, &deploy.list);
	pthread_mutex_init(&deploy.progress_lock, NULL);
	status_open(&deploy.status, status_path);
	deploy.phase = "writing";
	deploy.verified_fd = open(verified_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (deploy.verified_fd < 0)
		fail(EXIT_IO_ERROR, "cannot open %s: %s", verified_path, strerror(errno));
	int fd = open(target, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		fail(EXIT_IO_ERROR, "cannot open %s for writing: %s", target, strerror(errno));
	read_back_open(&deploy.reader, target);
	report(&deploy, 0, 0, NULL);

	struct source source;
	source_open(&source, zstd);
	ring_init(&deploy.ring, WRITE_AHEAD, 1);
	pthread_t verifier;
	if (pthread_create(&verifier, NULL, verify_chunks, &deploy) != 0)
		fail(EXIT_IO_ERROR, "cannot start the verifier thread");

	char *buffer = aligned_buffer(deploy.list.longest);
	const struct chunk *short_at = NULL;
	for (size_t i = 0; i < deploy.list.count; i++) {
		const struct chunk *chunk = &deploy.list.chunks[i];
		if (ring_claim(&deploy.ring) < 0)
			break; /* a chunk read back wrong: the verifier stopped */
		if (source_fill(&source, buffer, chunk->length) < chunk->length) {
			short_at = chunk;
			break;
		}
		write_fully(fd, buffer, chunk->length, chunk->offset, target);
		report(&deploy, chunk->length, 0, NULL);
		ring_publish(&deploy.ring);
	}
	free(buffer);
	report(&deploy, 0, 0, "verifying");
	ring_close(&deploy.ring);
	pthread_join(verifier, NULL);

	if (deploy.mismatch) {
		const struct chunk *bad = deploy.mismatch;
		printf("mismatch %llu %llu %llu %s %s\n", (unsigned long long)bad->index, (unsigned long long)bad->offset,
		       (unsigned long long)bad->length, deploy.mismatch_sha256, bad->sha256);
		return EXIT_MISMATCH;
	}
	/* Every chunk read back already went through the device; this flushes its own cache. */
	report(&deploy, 0, 0, "syncing");
	if (fsync(fd) != 0)
		fail(EXIT_IO_ERROR, "syncing %s failed: %s", target, strerror(errno));
	close(fd);
	if (short_at) {
		if (source.error)
			note("the stream broke: %s", source.error);
		printf("short %llu\n", (unsigned long long)short_at->index);
		return EXIT_SHORT_STREAM;
	}
	report(&deploy, 0, 0, "done");
	printf("complete\n");
	return EXIT_DONE;
}
