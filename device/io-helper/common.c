#define _GNU_SOURCE
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

void fail(int status, const char *format, ...)
{
	va_list args;
	va_start(args, format);
	fputs("cm4prov-io: ", stderr);
	vfprintf(stderr, format, args);
	fputc('\n', stderr);
	va_end(args);
	fflush(NULL);
	/* Other threads may still be hashing: exit()'s handlers (OpenSSL frees its state at exit)
	 * would pull that from under them. Nothing else needs cleaning up at this point. */
	_exit(status);
}

void note(const char *format, ...)
{
	va_list args;
	va_start(args, format);
	fputs("cm4prov-io: ", stderr);
	vfprintf(stderr, format, args);
	fputc('\n', stderr);
	va_end(args);
}

void *aligned_buffer(size_t bytes)
{
	void *buffer = NULL;
	if (posix_memalign(&buffer, IO_ALIGN, ROUND_UP(bytes ? bytes : 1)) != 0)
		fail(EXIT_IO_ERROR, "out of memory for a %zu-byte buffer", bytes);
	return buffer;
}

int parse_count(const char *text, uint64_t *value)
{
	char *end;
	if (!text || !*text || *text == '-')
		return -1;
	errno = 0;
	unsigned long long parsed = strtoull(text, &end, 10);
	if (errno || *end)
		return -1;
	*value = parsed;
	return 0;
}

static void to_hex(const unsigned char *digest, char hex[SHA256_HEX])
{
	static const char digits[] = "0123456789abcdef";
	for (int i = 0; i < 32; i++) {
		hex[2 * i] = digits[digest[i] >> 4];
		hex[2 * i + 1] = digits[digest[i] & 15];
	}
	hex[64] = '\0';
}

/* OpenSSL's sha256 uses the CPU's own instructions where there are any (x86 SHA-NI, ARMv8 crypto
 * extensions) and hand-written assembly elsewhere: the CM4's A72 has no SHA instructions. */
void sha256_hex(const void *data, size_t length, char hex[SHA256_HEX])
{
	unsigned char digest[32];
	if (!EVP_Digest(data, length, digest, NULL, EVP_sha256(), NULL))
		fail(EXIT_IO_ERROR, "sha256 failed");
	to_hex(digest, hex);
}

struct sha256_stream {
	EVP_MD_CTX *context;
};

struct sha256_stream *sha256_begin(void)
{
	struct sha256_stream *stream = malloc(sizeof *stream);
	if (!stream || !(stream->context = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(stream->context, EVP_sha256(), NULL))
		fail(EXIT_IO_ERROR, "sha256 could not start");
	return stream;
}

void sha256_add(struct sha256_stream *stream, const void *data, size_t length)
{
	if (!EVP_DigestUpdate(stream->context, data, length))
		fail(EXIT_IO_ERROR, "sha256 failed");
}

void sha256_end(struct sha256_stream *stream, char hex[SHA256_HEX])
{
	unsigned char digest[32];
	if (!EVP_DigestFinal_ex(stream->context, digest, NULL))
		fail(EXIT_IO_ERROR, "sha256 failed");
	EVP_MD_CTX_free(stream->context);
	free(stream);
	to_hex(digest, hex);
}

void status_open(struct status_file *status, const char *path)
{
	status->path = path;
	status->scratch = NULL;
	if (path && asprintf(&status->scratch, "%s.new", path) < 0)
		fail(EXIT_IO_ERROR, "out of memory");
}

void status_write(struct status_file *status, uint64_t first, uint64_t second, const char *phase)
{
	if (!status->path)
		return;
	char line[96];
	int length = snprintf(line, sizeof line, "%llu %llu %s\n", (unsigned long long)first, (unsigned long long)second, phase);
	int fd = open(status->scratch, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, line, (size_t)length) != length || close(fd) != 0 || rename(status->scratch, status->path) != 0)
		fail(EXIT_IO_ERROR, "could not write the status file %s: %s", status->path, strerror(errno));
}

uint64_t target_bytes(int fd)
{
	struct stat info;
	if (fstat(fd, &info) != 0)
		fail(EXIT_IO_ERROR, "cannot stat the target: %s", strerror(errno));
	if (S_ISBLK(info.st_mode)) {
		uint64_t bytes = 0;
		if (ioctl(fd, BLKGETSIZE64, &bytes) != 0)
			fail(EXIT_IO_ERROR, "cannot read the block device's size: %s", strerror(errno));
		return bytes;
	}
	return (uint64_t)info.st_size;
}

void read_back_open(struct read_back *reader, const char *path)
{
	reader->buffered_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (reader->buffered_fd < 0)
		fail(EXIT_IO_ERROR, "cannot open %s to read it back: %s", path, strerror(errno));
	reader->fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	reader->direct = reader->fd >= 0;
	if (!reader->direct)
		reader->fd = reader->buffered_fd;
}

/* The page cache's copy of the range is written out and dropped, so the read that follows comes
 * from the target itself (what a file system without O_DIRECT, e.g. tmpfs, allows). */
static void drop_cached_range(int fd, uint64_t offset, size_t length)
{
	fdatasync(fd);
	posix_fadvise(fd, (off_t)offset, (off_t)length, POSIX_FADV_DONTNEED);
}

static size_t read_fully(int fd, char *buffer, size_t length, uint64_t offset, int *error)
{
	size_t done = 0;
	*error = 0;
	while (done < length) {
		ssize_t got = pread(fd, buffer + done, length - done, (off_t)(offset + done));
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			*error = errno;
			break;
		}
		if (got == 0)
			break;
		done += (size_t)got;
	}
	return done;
}

size_t read_back_range(struct read_back *reader, void *buffer, size_t length, uint64_t offset)
{
	int error;
	if (reader->direct && offset % IO_ALIGN == 0) {
		/* Direct I/O takes whole blocks: read the range rounded up, keep what was asked. A
		 * direct read first writes out this range's dirty pages (the kernel does that), so it
		 * sees what reached the device. */
		size_t got = read_fully(reader->fd, buffer, ROUND_UP(length), offset, &error);
		if (!error)
			return got < length ? got : length;
		if (error != EINVAL)
			fail(EXIT_IO_ERROR, "reading back at offset %llu failed: %s", (unsigned long long)offset, strerror(error));
		note("the target takes no direct I/O here; reading back after dropping the page cache instead");
		close(reader->fd);
		reader->fd = reader->buffered_fd;
		reader->direct = 0;
	}
	drop_cached_range(reader->buffered_fd, offset, length);
	size_t got = read_fully(reader->buffered_fd, buffer, length, offset, &error);
	if (error)
		fail(EXIT_IO_ERROR, "reading back at offset %llu failed: %s", (unsigned long long)offset, strerror(error));
	return got;
}

void ring_init(struct ring *ring, size_t slots, int consumers)
{
	memset(ring, 0, sizeof *ring);
	pthread_mutex_init(&ring->lock, NULL);
	pthread_cond_init(&ring->changed, NULL);
	ring->slots = slots;
	ring->consumers = consumers;
}

static uint64_t slowest_consumer(struct ring *ring)
{
	uint64_t slowest = ring->consumed[0];
	for (int c = 1; c < ring->consumers; c++)
		if (ring->consumed[c] < slowest)
			slowest = ring->consumed[c];
	return slowest;
}

int64_t ring_claim(struct ring *ring)
{
	pthread_mutex_lock(&ring->lock);
	while (!ring->aborted && ring->produced - slowest_consumer(ring) >= ring->slots)
		pthread_cond_wait(&ring->changed, &ring->lock);
	int64_t sequence = ring->aborted ? -1 : (int64_t)ring->produced;
	pthread_mutex_unlock(&ring->lock);
	return sequence;
}

void ring_publish(struct ring *ring)
{
	pthread_mutex_lock(&ring->lock);
	ring->produced++;
	pthread_cond_broadcast(&ring->changed);
	pthread_mutex_unlock(&ring->lock);
}

void ring_close(struct ring *ring)
{
	pthread_mutex_lock(&ring->lock);
	ring->closed = 1;
	pthread_cond_broadcast(&ring->changed);
	pthread_mutex_unlock(&ring->lock);
}

int64_t ring_next(struct ring *ring, int consumer)
{
	pthread_mutex_lock(&ring->lock);
	while (!ring->aborted && !ring->closed && ring->consumed[consumer] == ring->produced)
		pthread_cond_wait(&ring->changed, &ring->lock);
	int64_t sequence = (ring->aborted || ring->consumed[consumer] == ring->produced) ? -1 : (int64_t)ring->consumed[consumer];
	pthread_mutex_unlock(&ring->lock);
	return sequence;
}

void ring_done(struct ring *ring, int consumer)
{
	pthread_mutex_lock(&ring->lock);
	ring->consumed[consumer]++;
	pthread_cond_broadcast(&ring->changed);
	pthread_mutex_unlock(&ring->lock);
}

void ring_abort(struct ring *ring)
{
	pthread_mutex_lock(&ring->lock);
	ring->aborted = 1;
	pthread_cond_broadcast(&ring->changed);
	pthread_mutex_unlock(&ring->lock);
}

int ring_aborted(struct ring *ring)
{
	pthread_mutex_lock(&ring->lock);
	int aborted = ring->aborted;
	pthread_mutex_unlock(&ring->lock);
	return aborted;
}
