/*
 * evstore-cli — the command-line tool for evstore stores.
 *
 *   evstore-cli [--db DIR | --connect HOST:PORT [--token TOKEN]] [--json]
 *               COMMAND ...
 *
 * main() resolves the global options and environment, finds the command
 * and runs it; each command lives in a cmd_*.c file. See docs/cli.md and
 * the man page evstore-cli(1).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define DEFAULT_DB "./var/evstore"

static const cli_command *const commands[] = {
  &cli_cmd_append,    &cli_cmd_read,     &cli_cmd_read_all,
  &cli_cmd_state,     &cli_cmd_streams,  &cli_cmd_info,
  &cli_cmd_subscribe, &cli_cmd_metadata, &cli_cmd_delete,
  &cli_cmd_replay,    &cli_cmd_export,   &cli_cmd_import,
  &cli_cmd_verify,    &cli_cmd_stats,    NULL,
};

static const cli_command *find_command(const char *name) {
  for (size_t i = 0; commands[i]; i++)
    if (strcmp(commands[i]->name, name) == 0)
      return commands[i];
  return NULL;
}

static const char global_help[] =
    "Global options (accepted before or after the command):\n"
    "  --db DIR            local store directory (default: $EVSTORE_DB, or\n"
    "                      " DEFAULT_DB ")\n"
    "  --connect HOST:PORT an evstored server (default: $EVSTORE_CONNECT);\n"
    "                      every command works the same on it\n"
    "  --token TOKEN       token for --connect (default: $EVSTORE_TOKEN)\n"
    "  --json              JSON lines output (the default when stdout is not\n"
    "                      a terminal)\n"
    "  --table             table output even when stdout is not a terminal\n"
    "  --durability MODE   sync (default), nometasync or nosync, for writes\n"
    "                      (default: $EVSTORE_DURABILITY); nosync is for\n"
    "                      throwaway data only. Local stores only: with\n"
    "                      --connect the server's --durability applies\n"
    "  --help, -h          help (also: evstore-cli help COMMAND)\n"
    "  --version           print the version\n";

static void print_main_help(void) {
  printf("Usage: %s [--db DIR | --connect HOST:PORT [--token TOKEN]] "
         "[--json] COMMAND ...\n\n"
         "Reads and writes an evstore event store.\n\nCommands:\n",
         CLI_PROG);
  for (size_t i = 0; commands[i]; i++)
    printf("  %-10s %s\n", commands[i]->name, commands[i]->summary);
  printf("  %-10s %s\n\n", "help", "help on a command");
  fputs(global_help, stdout);
  printf("\nExit status: 0 success, 1 runtime error, 2 usage error or "
         "invalid input,\n3 wrong expected version, 4 stream not found or "
         "deleted.\n\n"
         "Run '%s COMMAND --help' for a command's options; see also "
         "evstore-cli(1).\n",
         CLI_PROG);
}

static void print_command_help(const cli_command *c) {
  printf("Usage: %s [global options] %s\n\n%s\n%s", CLI_PROG, c->synopsis,
         c->help, global_help);
}

static void print_help_help(void) {
  printf("Usage: %s help [COMMAND]\n\n"
         "Without COMMAND, lists the commands and the global options (as\n"
         "'%s --help' does); with COMMAND, describes that command, its\n"
         "options, output and exit statuses (as '%s COMMAND --help' does).\n",
         CLI_PROG, CLI_PROG, CLI_PROG);
}

static int is_help_word(const char *s) {
  return strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0 ||
         strcmp(s, "help") == 0;
}

static void print_version(void) {
  printf("%s %s (libevstore %s)\n", CLI_PROG, EVS_VERSION_STRING,
         evs_version_string());
}

/* Picks the store: flags first, then the environment, then the default. */
static int resolve_target(cli_ctx *ctx) {
  if (ctx->db_flag && ctx->connect_flag)
    return cli_usage(ctx, "give either --db or --connect, not both");
  if (!ctx->db_flag && !ctx->connect_flag) {
    const char *db = getenv("EVSTORE_DB");
    const char *connect = getenv("EVSTORE_CONNECT");
    if (db && db[0])
      ctx->db = db;
    else if (connect && connect[0])
      ctx->connect = connect;
  }
  if (ctx->connect_flag || (ctx->connect && !ctx->db)) {
    ctx->db = NULL;
    const char *colon = strrchr(ctx->connect, ':');
    if (colon == NULL || colon == ctx->connect || colon[1] == '\0' ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1))
      return cli_usage(ctx, "%s needs HOST:PORT or [IPv6]:PORT, not '%s'",
                       ctx->connect_flag ? "--connect" : "$EVSTORE_CONNECT",
                       ctx->connect);
    if (!ctx->token_flag) {
      const char *token = getenv("EVSTORE_TOKEN");
      ctx->token = token && token[0] ? token : NULL;
    }
  } else {
    ctx->connect = NULL;
    if (ctx->token_flag)
      return cli_usage(ctx, "--token is only used with --connect");
    if (ctx->db == NULL)
      ctx->db = DEFAULT_DB;
    if (ctx->db[0] == '\0')
      return cli_usage(ctx, "--db needs a directory");
  }
  return 0;
}

static int durability_from_env(cli_ctx *ctx) {
  const char *d = getenv("EVSTORE_DURABILITY");
  if (d == NULL || d[0] == '\0')
    return 0;
  if (strcmp(d, "sync") == 0)
    ctx->durability = EVS_SYNC;
  else if (strcmp(d, "nometasync") == 0)
    ctx->durability = EVS_NOMETASYNC;
  else if (strcmp(d, "nosync") == 0)
    ctx->durability = EVS_NOSYNC;
  else
    return cli_usage(ctx,
                     "EVSTORE_DURABILITY must be sync, nometasync or nosync, "
                     "not '%s'",
                     d);
  return 0;
}

int main(int argc, char **argv) {
  static cli_ctx ctx;
  ctx.durability = EVS_SYNC;
  if (durability_from_env(&ctx))
    return CLI_EXIT_USAGE;
  int help = 0;
  int i = cli_parse_globals(&ctx, argc - 1, argv + 1, &help);
  if (i < 0)
    return CLI_EXIT_USAGE;
  i += 1;
  if (i >= argc) {
    if (ctx.want_version) {
      print_version();
      return CLI_EXIT_OK;
    }
    if (help) {
      print_main_help();
      return CLI_EXIT_OK;
    }
    fprintf(stderr,
            "%s: missing command\nUsage: %s [--db DIR] COMMAND ...\n"
            "Try '%s --help'.\n",
            CLI_PROG, CLI_PROG, CLI_PROG);
    return CLI_EXIT_USAGE;
  }
  const char *name = argv[i];
  if (strcmp(name, "help") == 0) {
    /* Help on help itself: "help --help", "help -h", "help help", and
     * "--help help" like "--help COMMAND". */
    if (help || (i + 1 < argc && is_help_word(argv[i + 1]))) {
      print_help_help();
      return CLI_EXIT_OK;
    }
    if (i + 1 >= argc) {
      print_main_help();
      return CLI_EXIT_OK;
    }
    const cli_command *c = find_command(argv[i + 1]);
    if (c == NULL) {
      fprintf(stderr, "%s: unknown command '%s'\nTry '%s --help'.\n", CLI_PROG,
              argv[i + 1], CLI_PROG);
      return CLI_EXIT_USAGE;
    }
    print_command_help(c);
    return CLI_EXIT_OK;
  }
  const cli_command *c = find_command(name);
  if (c == NULL) {
    fprintf(stderr, "%s: unknown command '%s'\nTry '%s --help'.\n", CLI_PROG,
            name, CLI_PROG);
    return CLI_EXIT_USAGE;
  }
  ctx.cmd = c->name;
  if (help) {
    print_command_help(c);
    return CLI_EXIT_OK;
  }
  cli_args args;
  int status = cli_parse_args(&ctx, argc - i - 1, argv + i + 1, c->opts, &args);
  if (status)
    return status;
  if (args.help) {
    cli_args_free(&args);
    print_command_help(c);
    return CLI_EXIT_OK;
  }
  if (ctx.want_version) {
    cli_args_free(&args);
    print_version();
    return CLI_EXIT_OK;
  }
  if ((status = resolve_target(&ctx))) {
    cli_args_free(&args);
    return status;
  }
  ctx.stdout_tty = isatty(STDOUT_FILENO);
  ctx.stderr_tty = isatty(STDERR_FILENO);
  ctx.json = ctx.opt_json || (!ctx.stdout_tty && !ctx.opt_table);
  if (!ctx.stdout_tty) {
    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
  }
  status = c->run(&ctx, &args);
  cli_args_free(&args);
  fflush(stdout);
  if (ctx.be)
    ctx.be->ops->close(ctx.be, status != CLI_EXIT_OK);
  cli_buf_free(&ctx.line);
  return status;
}
