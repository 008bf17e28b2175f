/*-------------------------------------------------------------------------
 *
 * render.c
 *		Text output: lines laid out in a buffer (cut to the terminal's width
 *		when watch draws, coloured when colours are on), tables of aligned
 *		columns, progress bars, and the formats of durations and rates.
 *		Widths are display columns in the client encoding.
 *
 * cli/render.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <limits.h>

#include "mb/pg_wchar.h"

#include "pgbatch_cli.h"

/* the space between two columns of a table */
#define COLUMN_GAP	2

/* the narrowest a text column is made to fit the terminal */
#define MIN_COLUMN	8

/*
 * pgbcli_screen_init
 *		Starts an empty screen whose lines are cut at width columns (0: not
 *		cut).
 */
void
pgbcli_screen_init(PgbcliScreen *scr, int width)
{
	initPQExpBuffer(&scr->buf);
	scr->width = width;
	scr->col = 0;
	scr->lines = 0;
	scr->erase = false;
}

/*
 * begin_color, end_color
 *		Switch a colour on and off around text, when colours are on.
 */
static void
begin_color(PgbcliScreen *scr, const char *color)
{
	if (color != NULL && pgbcli_out.color)
		appendPQExpBuffer(&scr->buf, "\033[%sm", color);
}

static void
end_color(PgbcliScreen *scr, const char *color)
{
	if (color != NULL && pgbcli_out.color)
		appendPQExpBufferStr(&scr->buf, "\033[0m");
}

/*
 * pgbcli_control_len
 *		If text starts with a control character, the bytes it takes, else
 *		0.  Control characters are C0, DEL, and C1 (U+0080 to U+009F: two
 *		bytes in UTF-8, one in the single-byte encodings),
 *		any of which can start a terminal escape sequence.  The one rule for
 *		every string from the server that reaches a terminal.
 */
int
pgbcli_control_len(const char *text, int encoding)
{
	const unsigned char *p = (const unsigned char *) text;

	if (*p < 0x20 || *p == 0x7f)
		return 1;
	if (encoding == PG_UTF8)
		return (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) ? 2 : 0;
	/* (SQL_ASCII says nothing about bytes above 0x7f) */
	if (encoding != PG_SQL_ASCII && pg_encoding_max_length(encoding) == 1 &&
		*p >= 0x80 && *p <= 0x9f)
		return 1;
	return 0;
}

/*
 * char_width
 *		The bytes and the columns of the character text starts with (a
 *		control character counts one column: it is shown as a space).
 */
static void
char_width(const char *text, int *len, int *w)
{
	int			encoding = pgbcli_out.encoding;
	int			ctl = pgbcli_control_len(text, encoding);

	*len = ctl > 0 ? ctl : PQmblenBounded(text, encoding);
	*w = ctl > 0 ? 1 : PQdsplen(text, encoding);
	if (*w < 0)
		*w = 0;
}

/*
 * screen_text_max
 *		Appends text to the current line, in a colour (or NULL), in at most
 *		'room' columns (and what is left of the line): when it does not
 *		fit, as much as fits before an ellipsis.  Control characters
 *		(pgbcli_control_len) become spaces: text from the server never
 *		reaches the terminal as an escape.
 */
static void
screen_text_max(PgbcliScreen *scr, const char *color, const char *text, int room)
{
	int			encoding = pgbcli_out.encoding;
	const char *ellipsis = encoding == PG_UTF8 ? "\xe2\x80\xa6" : "~";
	const char *p = text;
	int			total = 0;
	int			len;
	int			w;

	if (scr->width > 0)
		room = Min(room, scr->width - scr->col);
	if (room <= 0)
		return;
	for (const char *q = text; *q; q += len)
	{
		char_width(q, &len, &w);
		total += w;
	}
	/* cut: keep a column for the ellipsis */
	if (total > room)
		room--;

	begin_color(scr, color);
	while (*p)
	{
		char_width(p, &len, &w);
		if (w > room)
			break;
		if (pgbcli_control_len(p, encoding) > 0)
			appendPQExpBufferChar(&scr->buf, ' ');
		else
			appendBinaryPQExpBuffer(&scr->buf, p, len);
		scr->col += w;
		room -= w;
		p += len;
	}
	if (*p)
	{
		appendPQExpBufferStr(&scr->buf, ellipsis);
		scr->col++;
	}
	end_color(scr, color);
}

/*
 * pgbcli_screen_text
 *		Appends text to the current line, in a colour (or NULL): as much as
 *		fits, then an ellipsis (screen_text_max).
 */
void
pgbcli_screen_text(PgbcliScreen *scr, const char *color, const char *text)
{
	screen_text_max(scr, color, text, INT_MAX);
}

/*
 * pgbcli_screen_init_out
 *		Starts a screen for a command's output: lines cut to the terminal's
 *		width on a terminal, not cut in a pipe or a file.
 */
void
pgbcli_screen_init_out(PgbcliScreen *scr)
{
	int			cols = 0;
	int			rows;

	if (pgbcli_out.redraw)
		pgbcli_term_size(&cols, &rows);
	pgbcli_screen_init(scr, cols);
}

/*
 * pgbcli_screen_printf
 *		pgbcli_screen_text of a formatted text.
 */
void
pgbcli_screen_printf(PgbcliScreen *scr, const char *color, const char *fmt,...)
{
	char		small[256];
	char	   *text = small;
	va_list		args;
	int			len;

	va_start(args, fmt);
	len = vsnprintf(small, sizeof(small), fmt, args);
	va_end(args);
	if (len < 0)
		return;
	if ((size_t) len >= sizeof(small))
	{
		text = pg_malloc(len + 1);
		va_start(args, fmt);
		vsnprintf(text, len + 1, fmt, args);
		va_end(args);
	}
	pgbcli_screen_text(scr, color, text);
	if (text != small)
		free(text);
}

/*
 * pgbcli_screen_pad
 *		Appends n spaces (as many as fit).
 */
void
pgbcli_screen_pad(PgbcliScreen *scr, int n)
{
	for (; n > 0; n--)
		pgbcli_screen_text(scr, NULL, " ");
}

/*
 * bar_color
 *		The colour of one character of a progress bar (see pgbcli_bar).
 */
static const char *
bar_color(char c)
{
	switch (c)
	{
		case '#':
			return PGBCLI_GREEN;
		case '>':
			return PGBCLI_CYAN;
		case '~':
			return PGBCLI_YELLOW;
		case 'x':
			return PGBCLI_RED;
		case '-':
			return PGBCLI_MAGENTA;
		default:
			return PGBCLI_DIM;
	}
}

/*
 * pgbcli_screen_bar
 *		Appends a progress bar made by pgbcli_bar, each run of one kind of
 *		item in its colour, between brackets.
 */
void
pgbcli_screen_bar(PgbcliScreen *scr, const char *bar)
{
	char		run[256];

	pgbcli_screen_text(scr, NULL, "[");
	while (*bar)
	{
		size_t		n = 0;

		while (bar[n] == bar[0] && n < sizeof(run) - 1)
		{
			run[n] = bar[n];
			n++;
		}
		run[n] = '\0';
		pgbcli_screen_text(scr, bar_color(bar[0]), run);
		bar += n;
	}
	pgbcli_screen_text(scr, NULL, "]");
}

/*
 * pgbcli_screen_newline
 *		Ends the current line (erasing what an earlier frame left to its
 *		right, when watch redraws in place).
 */
void
pgbcli_screen_newline(PgbcliScreen *scr)
{
	if (scr->erase)
		appendPQExpBufferStr(&scr->buf, "\033[K");
	appendPQExpBufferChar(&scr->buf, '\n');
	scr->col = 0;
	scr->lines++;
}

/*
 * pgbcli_screen_flush
 *		Writes what was laid out to stdout and starts again.
 */
void
pgbcli_screen_flush(PgbcliScreen *scr)
{
	fwrite(scr->buf.data, 1, scr->buf.len, stdout);
	fflush(stdout);
	resetPQExpBuffer(&scr->buf);
	scr->col = 0;
}

/*
 * pgbcli_screen_free
 *		Frees the screen's buffer.
 */
void
pgbcli_screen_free(PgbcliScreen *scr)
{
	termPQExpBuffer(&scr->buf);
}

/*
 * pgbcli_table_init
 *		Starts a table of ncols columns with these headers and kinds (per
 *		column: 'l' left-aligned, 'r' right-aligned, 'b' a progress bar).
 */
void
pgbcli_table_init(PgbcliTable *table, int ncols, const char *const *headers,
				  const char *kinds)
{
	table->ncols = ncols;
	table->nrows = 0;
	table->maxrows = 0;
	table->headers = headers;
	table->kinds = kinds;
	table->cells = NULL;
	table->colors = NULL;
}

/*
 * pgbcli_table_add_row
 *		Adds a row of empty cells; returns its number.
 */
int
pgbcli_table_add_row(PgbcliTable *table)
{
	int			ncols = table->ncols;

	if (table->nrows == table->maxrows)
	{
		table->maxrows = table->maxrows == 0 ? 16 : table->maxrows * 2;
		table->cells = pg_realloc(table->cells,
								  sizeof(char *) * table->maxrows * ncols);
		table->colors = pg_realloc(table->colors,
								   sizeof(char *) * table->maxrows * ncols);
	}
	for (int col = 0; col < ncols; col++)
	{
		table->cells[table->nrows * ncols + col] = NULL;
		table->colors[table->nrows * ncols + col] = NULL;
	}
	return table->nrows++;
}

/*
 * pgbcli_table_set
 *		Sets a cell: a copy of text (control characters made spaces; NULL
 *		for an empty cell), in a colour (or NULL).
 */
void
pgbcli_table_set(PgbcliTable *table, int row, int col, const char *color,
				 const char *text)
{
	int			i = row * table->ncols + col;

	free(table->cells[i]);
	table->cells[i] = pgbcli_sanitize(text != NULL ? text : "");
	table->colors[i] = color;
}

/*
 * column_widths
 *		The display width of each column: its widest cell or header.
 */
static int *
column_widths(const PgbcliTable *table)
{
	int		   *widths = pg_malloc0(sizeof(int) * table->ncols);

	for (int col = 0; col < table->ncols; col++)
	{
		widths[col] = pgbcli_display_width(table->headers[col]);
		for (int row = 0; row < table->nrows; row++)
		{
			const char *cell = table->cells[row * table->ncols + col];
			int			w = cell != NULL ? pgbcli_display_width(cell) : 0;

			if (table->kinds[col] == 'b')
				w += 2;			/* the brackets */
			widths[col] = Max(widths[col], w);
		}
	}
	return widths;
}

/*
 * fit_columns
 *		Narrows the text columns ('l') of a table, widest first but none
 *		below MIN_COLUMN, until its lines fit the screen's width (if it has
 *		one); their cells are then cut with an ellipsis.
 */
static void
fit_columns(const PgbcliScreen *scr, const PgbcliTable *table, int indent, int *widths)
{
	int			total = indent + COLUMN_GAP * (table->ncols - 1);

	if (scr->width <= 0)
		return;
	for (int col = 0; col < table->ncols; col++)
		total += widths[col];
	while (total > scr->width)
	{
		int			widest = -1;

		for (int col = 0; col < table->ncols; col++)
			if (table->kinds[col] == 'l' && widths[col] > MIN_COLUMN &&
				(widest < 0 || widths[col] > widths[widest]))
				widest = col;
		if (widest < 0)
			break;
		widths[widest]--;
		total--;
	}
}

/*
 * print_cell
 *		Appends one cell padded to its column's width, cut to it with an
 *		ellipsis if it is wider (the last column is not padded on the
 *		right).
 */
static void
print_cell(PgbcliScreen *scr, const PgbcliTable *table, int col, int width,
		   const char *color, const char *text, bool header)
{
	char		kind = header ? 'l' : table->kinds[col];
	int			w = Min(pgbcli_display_width(text) + (kind == 'b' ? 2 : 0), width);
	bool		last = col == table->ncols - 1;

	if (col > 0)
		pgbcli_screen_pad(scr, COLUMN_GAP);
	if (kind == 'r')
		pgbcli_screen_pad(scr, width - w);
	if (kind == 'b')
		pgbcli_screen_bar(scr, text);
	else
		screen_text_max(scr, color, text, width);
	if (kind != 'r' && !last)
		pgbcli_screen_pad(scr, width - w);
}

/*
 * pgbcli_table_print
 *		Appends the table, its header first, each line indented.
 */
void
pgbcli_table_print(PgbcliScreen *scr, const PgbcliTable *table, int indent)
{
	int		   *widths = column_widths(table);

	fit_columns(scr, table, indent, widths);
	pgbcli_screen_pad(scr, indent);
	for (int col = 0; col < table->ncols; col++)
		print_cell(scr, table, col, widths[col], PGBCLI_BOLD,
				   table->headers[col], true);
	pgbcli_screen_newline(scr);

	for (int row = 0; row < table->nrows; row++)
	{
		pgbcli_screen_pad(scr, indent);
		for (int col = 0; col < table->ncols; col++)
		{
			int			i = row * table->ncols + col;

			print_cell(scr, table, col, widths[col], table->colors[i],
					   table->cells[i] != NULL ? table->cells[i] : "", false);
		}
		pgbcli_screen_newline(scr);
	}
	free(widths);
}

/*
 * pgbcli_table_free
 *		Frees the table's cells.
 */
void
pgbcli_table_free(PgbcliTable *table)
{
	for (int i = 0; i < table->nrows * table->ncols; i++)
		free(table->cells[i]);
	free(table->cells);
	free(table->colors);
	table->cells = NULL;
	table->colors = NULL;
	table->nrows = table->maxrows = 0;
}

/*
 * sanitize
 *		A copy of text (malloc'd) with control characters
 *		(pgbcli_control_len: tabs, escapes, C1) made spaces, and newlines
 *		too unless keep_newlines.
 */
static char *
sanitize(const char *text, bool keep_newlines)
{
	PQExpBufferData buf;
	const char *p = text;

	initPQExpBuffer(&buf);
	while (*p)
	{
		int			ctl = pgbcli_control_len(p, pgbcli_out.encoding);

		if (ctl > 0)
		{
			appendPQExpBufferChar(&buf, keep_newlines && *p == '\n' ? '\n' : ' ');
			p += ctl;
		}
		else
		{
			int			len = PQmblenBounded(p, pgbcli_out.encoding);

			appendBinaryPQExpBuffer(&buf, p, len);
			p += len;
		}
	}
	return buf.data;
}

/*
 * pgbcli_sanitize
 *		A copy of text fit for one line of a terminal: control characters
 *		(newlines, tabs, escapes, C1) become spaces.
 */
char *
pgbcli_sanitize(const char *text)
{
	return sanitize(text, false);
}

/*
 * pgbcli_sanitize_lines
 *		pgbcli_sanitize, keeping newlines: for messages of several lines.
 */
char *
pgbcli_sanitize_lines(const char *text)
{
	return sanitize(text, true);
}

/*
 * pgbcli_display_width
 *		The columns text takes on a terminal, in the client encoding.
 */
int
pgbcli_display_width(const char *text)
{
	int			encoding = pgbcli_out.encoding;
	int			width = 0;

	while (*text)
	{
		int			w = PQdsplen(text, encoding);

		if (w > 0)
			width += w;
		text += PQmblenBounded(text, encoding);
	}
	return width;
}

/*
 * pgbcli_format_duration
 *		A duration for people: 45s, 12m05s, 3h04m, 2d03h; "-" if unknown
 *		(negative).
 */
void
pgbcli_format_duration(double seconds, char *out, size_t outlen)
{
	long		s;

	if (!(seconds >= 0) || seconds > 1e9)
	{
		snprintf(out, outlen, "-");
		return;
	}
	s = (long) (seconds + 0.5);
	if (s < 60)
		snprintf(out, outlen, "%lds", s);
	else if (s < 3600)
		snprintf(out, outlen, "%ldm%02lds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(out, outlen, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
	else
		snprintf(out, outlen, "%ldd%02ldh", s / 86400, (s % 86400) / 3600);
}

/*
 * pgbcli_format_rate
 *		Items per second for people: 0.25/s, 12/s; "-" if unknown.
 */
void
pgbcli_format_rate(double rate, char *out, size_t outlen)
{
	if (!(rate >= 0))
		snprintf(out, outlen, "-");
	else if (rate < 10)
		snprintf(out, outlen, "%.2f/s", rate);
	else
		snprintf(out, outlen, "%.0f/s", rate);
}

/*
 * pgbcli_level_color
 *		The colour of a log level: errors red, warnings yellow.
 */
const char *
pgbcli_level_color(const char *level)
{
	if (strcmp(level, "error") == 0)
		return PGBCLI_RED;
	if (strcmp(level, "warning") == 0)
		return PGBCLI_YELLOW;
	return NULL;
}
