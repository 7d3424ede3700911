/*-------------------------------------------------------------------------
 *
 * str.c
 *	  presence_watch: memory and strings.  Allocation that cannot fail
 *	  quietly, and the growing string that both the JSON reader (event.c)
 *	  and the screen buffer (render.c) append to.
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "watch.h"

/*
 * Allocation that cannot fail quietly: a viewer out of memory has nothing
 * sensible left to do but say so.
 */
void *
watch_malloc(size_t size)
{
	void	   *p = calloc(1, size ? size : 1);

	if (p == NULL)
	{
		fprintf(stderr, "%s: out of memory\n", WATCH_PROGNAME);
		exit(EXIT_WATCH_ERROR);
	}
	return p;
}

/* strdup that cannot fail quietly. */
char *
watch_strdup(const char *s)
{
	size_t		len = strlen(s);
	char	   *p = watch_malloc(len + 1);

	memcpy(p, s, len + 1);
	return p;
}

/*
 * printf into a new string, for messages built in several places.
 */
char *
watch_vprintf(const char *fmt, va_list ap)
{
	va_list		ap2;
	int			len;
	char	   *p;

	va_copy(ap2, ap);
	len = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	p = watch_malloc(len + 1);
	vsnprintf(p, len + 1, fmt, ap);
	return p;
}

char *
watch_printf(const char *fmt,...)
{
	va_list		ap;
	char	   *p;

	va_start(ap, fmt);
	p = watch_vprintf(fmt, ap);
	va_end(ap);
	return p;
}

/* Make room for more bytes and a terminating NUL. */
void
str_reserve(Str *s, size_t more)
{
	if (s->len + more + 1 > s->cap)
	{
		size_t		cap = (s->len + more + 1) * 2;
		char	   *d = watch_malloc(cap);

		if (s->data)
			memcpy(d, s->data, s->len);
		free(s->data);
		s->data = d;
		s->cap = cap;
	}
}

/* Append n bytes. */
void
str_addn(Str *s, const char *p, size_t n)
{
	str_reserve(s, n);
	memcpy(s->data + s->len, p, n);
	s->len += n;
	s->data[s->len] = '\0';
}

/* Append a C string. */
void
str_add(Str *s, const char *p)
{
	str_addn(s, p, strlen(p));
}

/* Append one byte. */
void
str_addc(Str *s, char c)
{
	str_addn(s, &c, 1);
}
