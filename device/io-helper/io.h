/*
 * cm4prov-io: the device client's data path in one process (see README.md here). The shell
 * client stays the orchestrator: it runs curl and reports to the server; this moves the bytes.
 */
#ifndef CM4PROV_IO_H
#define CM4PROV_IO_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define IO_VERSION "1"
#define SHA256_HEX 65 /* 64 hex digits and the NUL */

/* Exit statuses the client tells apart (README.md). */
enum {
	EXIT_DONE = 0,
	EXIT_IO_ERROR = 1,
	EXIT_USAGE = 2,
	EXIT_SHORT_STREAM = 3,
	EXIT_MISMATCH = 4,
	EXIT_OUTPUT_CLOSED = 5,
};

/* Every message names the tool, as busybox applets do; then exits with STATUS. */
_Noreturn void fail(int status, const char *format, ...) __attribute__((format(printf, 2, 3)));
void note(const char *format, ...) __attribute__((format(printf, 1, 2)));

void *aligned_buffer(size_t bytes);
int parse_count(const char *text, uint64_t *value);
void sha256_hex(const void *data, size_t length, char hex[SHA256_HEX]);

/* Incremental sha256 over a stream of pieces. */
struct sha256_stream;
struct sha256_stream *sha256_begin(void);
void sha256_add(struct sha256_stream *stream, const void *data, size_t length);
void sha256_end(struct sha256_stream *stream, char hex[SHA256_HEX]);

/*
 * The status file the client's watch loop reads: "WRITTEN VERIFIED PHASE" on one line, replaced
 * by rename(2) so that a reader never sees half of an update.
 */
struct status_file {
	const char *path;
	char *scratch;
};
void status_open(struct status_file *status, const char *path);
void status_write(struct status_file *status, uint64_t first, uint64_t second, const char *phase);

/*
 * Reads a target back from the device, not from the page cache: O_DIRECT where the target
 * takes it (eMMC, a file on ext4). Where it does not (tmpfs), the range is synced and dropped
 * from the page cache first (posix_fadvise DONTNEED), then read; `direct` says which.
 */
struct read_back {
	int fd;
	int buffered_fd;
	int direct;
};
void read_back_open(struct read_back *reader, const char *path);
/* Reads LENGTH bytes at OFFSET into BUFFER (from aligned_buffer, room for LENGTH rounded up to
 * 4 KiB); returns the bytes read, fewer only at the end of the target. */
size_t read_back_range(struct read_back *reader, void *buffer, size_t length, uint64_t offset);
uint64_t target_bytes(int fd);

#define IO_ALIGN 4096
#define ROUND_UP(n) (((n) + IO_ALIGN - 1) / IO_ALIGN * IO_ALIGN)

/*
 * A bounded ring between one producer and up to two consumers, each going through the slots in
 * order. A stage that fails calls ring_abort; everyone waiting returns.
 */
struct ring {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	size_t slots;
	int consumers;
	uint64_t produced;
	uint64_t consumed[2];
	int closed;
	int aborted;
};
void ring_init(struct ring *ring, size_t slots, int consumers);
/* Producer: waits for a free slot; returns its sequence number, or -1 once aborted. */
int64_t ring_claim(struct ring *ring);
void ring_publish(struct ring *ring);
void ring_close(struct ring *ring);
/* Consumer C: waits for the next slot; its sequence number, or -1 at the end or when aborted. */
int64_t ring_next(struct ring *ring, int consumer);
void ring_done(struct ring *ring, int consumer);
void ring_abort(struct ring *ring);
int ring_aborted(struct ring *ring);

int command_write(int argc, char **argv);
int command_hash(int argc, char **argv);
int command_backup(int argc, char **argv);

#endif
