/*-------------------------------------------------------------------------
 *
 * term.c
 *		The terminal while watch uses it: its size, the keyboard read a key
 *		at a time (for q), the cursor hidden while frames are drawn, and all
 *		of it put back as it was on every way out (normal end, error exit,
 *		or a second Ctrl-C, from the signal handler).
 *
 * cli/term.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "pgbatch_cli.h"

/* what the end of drawing writes: colours off, cursor shown */
#define TERM_RESET			"\033[0m\033[?25h"

/* the keyboard's settings before we changed them */
static struct termios saved_termios;

/* what to undo (read by the signal handler, hence sig_atomic_t) */
static volatile sig_atomic_t keyboard_changed = false;
static volatile sig_atomic_t drawing = false;

/* whether pgbcli_term_end is registered to run at exit */
static bool at_exit_registered = false;

/*
 * pgbcli_term_size
 *		The terminal's columns and rows (80 x 24 when it does not say).
 */
void
pgbcli_term_size(int *cols, int *rows)
{
	struct winsize ws;

	*cols = 80;
	*rows = 24;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 &&
		ws.ws_row > 0)
	{
		*cols = ws.ws_col;
		*rows = ws.ws_row;
	}
}

/*
 * register_at_exit
 *		Makes sure the terminal is put back however the program exits.
 */
static void
register_at_exit(void)
{
	if (!at_exit_registered)
	{
		atexit(pgbcli_term_end);
		at_exit_registered = true;
	}
}

/*
 * pgbcli_term_keyboard_begin
 *		If stdin is a terminal, reads it a key at a time without echo (keys
 *		like Ctrl-C still send their signals).
 */
void
pgbcli_term_keyboard_begin(void)
{
	struct termios raw;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_termios) != 0)
		return;
	raw = saved_termios;
	raw.c_lflag &= ~(ICANON | ECHO);
	raw.c_cc[VMIN] = 1;
	raw.c_cc[VTIME] = 0;
	register_at_exit();
	if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0)
		keyboard_changed = true;
}

/*
 * pgbcli_term_draw_begin
 *		Hides the cursor and clears the screen, for frames drawn in place.
 */
void
pgbcli_term_draw_begin(void)
{
	register_at_exit();
	drawing = true;
	fputs("\033[?25l\033[2J\033[H", stdout);
	fflush(stdout);
}

/*
 * pgbcli_term_keyboard_fd
 *		The descriptor to read keys from, or -1 when keys are not read.
 */
int
pgbcli_term_keyboard_fd(void)
{
	return keyboard_changed ? STDIN_FILENO : -1;
}

/*
 * pgbcli_term_end
 *		Puts the terminal back: colours reset, cursor shown, the keyboard's
 *		settings restored.  Safe to call more than once.
 */
void
pgbcli_term_end(void)
{
	if (drawing)
	{
		fputs(TERM_RESET, stdout);
		fflush(stdout);
		drawing = false;
	}
	if (keyboard_changed)
	{
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
		keyboard_changed = false;
	}
}

/*
 * pgbcli_term_emergency_end
 *		pgbcli_term_end for a signal handler: only async-signal-safe calls
 *		(write and tcsetattr), for when the program must stop at once.
 */
void
pgbcli_term_emergency_end(void)
{
	if (drawing)
	{
		ssize_t		rc pg_attribute_unused();

		rc = write(STDOUT_FILENO, TERM_RESET "\n", strlen(TERM_RESET "\n"));
		drawing = false;
	}
	if (keyboard_changed)
	{
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
		keyboard_changed = false;
	}
}
