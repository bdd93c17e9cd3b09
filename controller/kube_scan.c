/*
 * kube_scan.c - cuts a streamed LIST response into its items.
 *
 * A LIST is one JSON object, {"kind":..,"metadata":{..},"items":[{..},{..},..]},
 * that can run to many megabytes. Instead of holding it whole, this scanner
 * reads it byte by byte with just enough state (depth, inside a string, after
 * a backslash, the last member name at depth 1) to see where each element of
 * the top-level "items" array starts and ends; each element goes to a
 * callback on its own, and the rest of the document (kind, metadata with
 * resourceVersion and continue, "items":[]) is kept to be parsed at the end.
 * Memory: one item plus the small rest.
 */
#include "kube_internal.h"

#include <stdlib.h>

int lm__kbuf_add(lm__kbuf_t *b, const char *p, size_t n, size_t max)
{
    if (b->len + n + 1 > max)
        return LM_ERROR;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb)
            return LM_ERROR;
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
    b->buf[b->len] = '\0';
    return LM_OK;
}

void lm__kbuf_reset(lm__kbuf_t *b)
{
    b->len = 0;
    if (b->cap > LM__KBUF_KEEP) { /* one big object should not pin megabytes for good */
        free(b->buf);
        b->buf = NULL;
        b->cap = 0;
    }
}

void lm__kbuf_free(lm__kbuf_t *b)
{
    free(b->buf);
    memset(b, 0, sizeof(*b));
}

void lm__kscan_reset(lm__kscan_t *s)
{
    lm__kbuf_t item = s->item, rest = s->rest;
    lm__kbuf_reset(&item);
    lm__kbuf_reset(&rest);
    memset(s, 0, sizeof(*s));
    s->item = item;
    s->rest = rest;
}

void lm__kscan_free(lm__kscan_t *s)
{
    lm__kbuf_free(&s->item);
    lm__kbuf_free(&s->rest);
}

static bool lm__ws(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

int lm__kscan_feed(lm__kscan_t *s, const char *p, size_t n, lm__kscan_item_cb on_item, void *ctx)
{
    size_t i = 0;
    while (i < n) {
        if (s->in_item) { /* inside an element: find its end, copy it in one go */
            size_t start = i;
            bool done = false;
            for (; i < n && !done; i++) {
                char c = p[i];
                if (s->in_str) {
                    if (s->esc)
                        s->esc = false;
                    else if (c == '\\')
                        s->esc = true;
                    else if (c == '"')
                        s->in_str = false;
                } else if (c == '"') {
                    s->in_str = true;
                } else if (c == '{' || c == '[') {
                    s->depth++;
                } else if ((c == '}' || c == ']') && --s->depth == 2) {
                    done = true;
                }
            }
            if (lm__kbuf_add(&s->item, p + start, i - start, LM__KSCAN_MAX_ITEM) != LM_OK)
                return LM__KSCAN_TOO_LARGE;
            if (done) {
                s->in_item = false;
                if (s->item.len > s->max_item)
                    s->max_item = s->item.len;
                int rc = on_item(ctx, s->item.buf, s->item.len);
                lm__kbuf_reset(&s->item);
                if (rc != LM_OK)
                    return LM__KSCAN_STOPPED;
            }
            continue;
        }
        char c = p[i++];
        if (s->in_items && s->depth == 2) { /* between elements */
            if (c == '{' || c == '[') {
                s->in_item = true;
                s->depth++;
                if (lm__kbuf_add(&s->item, &c, 1, LM__KSCAN_MAX_ITEM) != LM_OK)
                    return LM__KSCAN_TOO_LARGE;
            } else if (c == ']') {
                s->depth--;
                s->in_items = false;
                if (lm__kbuf_add(&s->rest, &c, 1, LM__KSCAN_MAX_REST) != LM_OK)
                    return LM__KSCAN_MALFORMED;
            } else if (c != ',' && !lm__ws(c)) {
                return LM__KSCAN_MALFORMED; /* items are objects */
            }
            continue;
        }
        if (lm__kbuf_add(&s->rest, &c, 1, LM__KSCAN_MAX_REST) != LM_OK)
            return LM__KSCAN_MALFORMED;
        if (s->in_str) {
            if (s->esc) {
                s->esc = false;
            } else if (c == '\\') {
                s->esc = true;
            } else if (c == '"') {
                s->in_str = false;
                if (s->in_key) {
                    s->in_key = false;
                    s->items_key = s->key_len == 5 && memcmp(s->key, "items", 5) == 0;
                }
                continue;
            }
            if (s->in_key) {
                if (s->key_len < sizeof(s->key))
                    s->key[s->key_len] = c;
                s->key_len++;
            }
            continue;
        }
        switch (c) {
        case '"':
            s->in_str = true;
            if (s->depth == 1 && s->expect_key) {
                s->in_key = true;
                s->key_len = 0;
            }
            break;
        case ':':
            if (s->depth == 1)
                s->expect_key = false;
            break;
        case ',':
            if (s->depth == 1) {
                s->expect_key = true;
                s->items_key = false;
            }
            break;
        case '{':
            if (++s->depth == 1)
                s->expect_key = true;
            break;
        case '[':
            if (++s->depth == 2 && s->items_key && !s->expect_key)
                s->in_items = true;
            break;
        case '}':
        case ']':
            s->depth--;
            break;
        default:
            break;
        }
    }
    return LM__KSCAN_OK;
}

cJSON *lm__kscan_finish(lm__kscan_t *s)
{
    cJSON *rest = NULL;
    if (s->depth == 0 && !s->in_item && !s->in_str && s->rest.len)
        rest = cJSON_ParseWithLength(s->rest.buf, s->rest.len);
    lm__kbuf_reset(&s->rest);
    if (rest && !cJSON_IsObject(rest)) {
        cJSON_Delete(rest);
        rest = NULL;
    }
    return rest;
}
