/*-------------------------------------------------------------------------
 *
 * channel.c
 *	  The NOTIFY channel of a room.
 *
 * Channel names are identifiers of at most 63 bytes, and room names are
 * up to 200 bytes of the user's text, so a room's channel is its name
 * where that fits and a prefix plus a hash where it does not.  Kept apart
 * from rooms.c so that the fuzzer (test/fuzz/) can drive it directly.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"

#include "presence.h"

#define PRESENCE_ROOM_HASH_HEX			24	/* 96 bits of SHA-256 */

/*
 * Whether a channel name ends like a hashed one: "~" and the hex digits.
 */
static bool
LooksHashed(const char *channel, int len)
{
	if (len < PRESENCE_ROOM_HASH_HEX + 1 ||
		channel[len - PRESENCE_ROOM_HASH_HEX - 1] != '~')
		return false;
	for (int i = len - PRESENCE_ROOM_HASH_HEX; i < len; i++)
	{
		if (!((channel[i] >= '0' && channel[i] <= '9') ||
			  (channel[i] >= 'a' && channel[i] <= 'f')))
			return false;
	}
	return true;
}

/*
 * The NOTIFY channel of a room: the status channel, a colon and the room
 * name, when that fits PostgreSQL's 63-byte limit.  A longer name keeps as
 * much of that prefix as fits, cut at a character boundary, and ends with
 * "~" and 96 bits of the name's SHA-256.  So does a short name that ends
 * like that itself, so that no room can take another's channel by copying
 * it: a plain channel never looks hashed, and two hashed ones are the same
 * only if 96 bits of SHA-256 are.
 */
char *
PresenceRoomChannel(const char *room)
{
	StringInfoData buf;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	int			keep;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s:%s", presence_channel, room);
	if (buf.len < NAMEDATALEN && !LooksHashed(buf.data, buf.len))
		return buf.data;

	PresenceSha256((const uint8 *) room, strlen(room), digest);
	keep = pg_mbcliplen(buf.data, buf.len,
						NAMEDATALEN - 1 - 1 - PRESENCE_ROOM_HASH_HEX);
	buf.len = keep;
	buf.data[keep] = '\0';
	appendStringInfoChar(&buf, '~');
	for (int i = 0; i < PRESENCE_ROOM_HASH_HEX / 2; i++)
		appendStringInfo(&buf, "%02x", digest[i]);
	return buf.data;
}
