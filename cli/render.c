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

#include "mb/pg_wchar.h"

#include "pgbatch_cli.h"

/* the space between two columns of a table */
#define COLUMN_GAP	2

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
 * pgbcli_screen_text
 *		Appends text to the current line, in a colour (or NULL), as much of
 *		it as fits.  Control characters (pgbcli_control_len) become spaces:
 *		text from the server never reaches the terminal as an escape.
 */
void
pgbcli_screen_text(PgbcliScreen *scr, const char *color, const char *text)
{
	int			encoding = pgbcli_out.encoding;
	const char *p = text;

	begin_color(scr, color);
	while (*p)
	{
		int			ctl = pgbcli_control_len(p, encoding);
		int			len = ctl > 0 ? ctl : PQmblenBounded(p, encoding);
		int			w = ctl > 0 ? 1 : PQdsplen(p, encoding);

		if (w < 0)
			w = 0;
		if (scr->width > 0 && scr->col + w > scr->width)
			break;
		if (ctl > 0)
			appendPQExpBufferChar(&scr->buf, ' ');
		else
			appendBinaryPQExpBuffer(&scr->buf, p, len);
		scr->col += w;
		p += len;
	}
	end_color(scr, color);
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
 * print_cell
 *		Appends one cell padded to its column's width (the last column is
 *		not padded on the right).
 */
static void
print_cell(PgbcliScreen *scr, const PgbcliTable *table, int col, int width,
		   const char *color, const char *text, bool header)
{
	char		kind = header ? 'l' : table->kinds[col];
	int			w = pgbcli_display_width(text) + (kind == 'b' ? 2 : 0);
	bool		last = col == table->ncols - 1;

	if (col > 0)
		pgbcli_screen_pad(scr, COLUMN_GAP);
	if (kind == 'r')
		pgbcli_screen_pad(scr, width - w);
	if (kind == 'b')
		pgbcli_screen_bar(scr, text);
	else
		pgbcli_screen_text(scr, color, text);
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
