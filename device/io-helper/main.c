#include "io.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
	"usage: cm4prov-io write|hash|backup [options]   (cm4prov-io COMMAND --help for each)\n"
	"       cm4prov-io --version";

int main(int argc, char **argv)
{
	if (argc < 2)
		fail(EXIT_USAGE, "%s", usage);
	if (!strcmp(argv[1], "--version")) {
		printf("cm4prov-io %s\n", IO_VERSION);
		return EXIT_DONE;
	}
	if (!strcmp(argv[1], "write"))
		return command_write(argc - 1, argv + 1);
	if (!strcmp(argv[1], "hash"))
		return command_hash(argc - 1, argv + 1);
	if (!strcmp(argv[1], "backup"))
		return command_backup(argc - 1, argv + 1);
	fail(EXIT_USAGE, "unknown command '%s'\n%s", argv[1], usage);
}
