/* The commonest locked steps of the IPC layer in C: a one-chunk send to a channel that
 * exists, a receive of a one-chunk message (hotpath.py says why they are hot), a one-chunk
 * send that makes its channel's entry and a receive that deletes it (each member of a group
 * whose receivers are not waiting: a late reader's channel is gone once it read its last
 * message, and made again by the next group_send, rarely in the same entry, so these steps
 * also look a channel up by its name's hash bucket instead of a cached entry).
 *
 * Why C: in Python these steps are a dozen struct unpacks and packs, about 2.5 µs each, and
 * the segment lock is held throughout; here they are a few hundred nanoseconds. Nothing else
 * changes: the same fields, the same journal records in the same order, the same commit
 * point (the one-byte journal flag) and the same test pause points as journal.commit_queue
 * and journal.commit_dequeue, so crash repair and the crash tests cover this code as they
 * cover the Python. Anything these steps do not handle answers NOT_HANDLED before writing
 * anything, and the caller takes the Python path in the same locked step. Every index read
 * from the segment is range-checked first: a corrupt segment gives NOT_HANDLED (then the
 * Python path raises), never a wild write.
 *
 * locked_send / locked_pop run a whole step: take the segment's robust mutex (trylock only:
 * a busy lock answers BUSY and the Python side waits its own way), check that the caller's
 * cached entry still holds the channel, step, let go. A dead holder (EOWNERDEAD), a journal
 * to replay or a case the step does not handle answer HELD: the lock is the caller's, who
 * repairs and goes on in Python. Together about 0.3 µs instead of 1.5.
 *
 * Optional: the package works without it (hotpath.py falls back to Python); the layout
 * numbers below are checked against layout.py at import (LAYOUT), and a mismatch disables it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define H_STATE 12
#define STATE_READY 2
#define H_FLUSHES 44
#define H_MUTEX 64
#define ENTRY_SIZE 144
#define E_NAME 36
#define MAX_NAME 100
#define E_A 8
#define E_C 16
#define E_E 24
#define CHUNK_SIZE 256
#define M_NEXT 4
#define FIRST_DATA 24
#define FIRST_ROOM (CHUNK_SIZE - FIRST_DATA)
#define WAKER_SLOTS 1024
#define WAKER_SIZE 32
#define W_STATE 0
#define W_TOKEN 8
#define H_JOURNAL_FLAG 13
#define H_CHUNK_BUMP 32
#define H_CHUNK_FREE 36
#define H_CHUNKS_USED 40
#define H_ENTRY_BUMP 24
#define H_ENTRY_FREE 28
#define E_NEXT 4
#define E_D 20
#define E_G 32
#define KIND_CHANNEL 1
#define KIND_COUNTER 2
#define KIND_MEMBER 4
#define VERSION 5 /* the layout's meaning too: a counter's A (its inbox) sends a step to Python */
#define MAX_CREATE_WRITES 11 /* u32 fields a creating send changes through the journal, at most */
#define RECORD_SIZE 10 /* journal record header: u64 offset, u16 length (layout.JOURNAL_RECORD) */

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    int has_view;
    uint8_t *mem;
    uint64_t size;
    uint64_t entries, chunks, journal, wakers, n_chunks, n_entries;
    PyObject *not_handled, *busy, *held; /* the answers that send the caller to the Python path */
    int robust; /* the segment lock is the robust mutex at H_MUTEX (else the locked_* answer BUSY) */
    pthread_mutex_t *mutex;
    char pause_at[256]; /* ASGI_IPC_TEST_PAUSE_AT, or "" */
} Core;

static inline uint32_t rd32(const uint8_t *mem, uint64_t off) { uint32_t v; memcpy(&v, mem + off, 4); return v; }
static inline void wr32(uint8_t *mem, uint64_t off, uint32_t v) { memcpy(mem + off, &v, 4); }
static inline void wr16(uint8_t *mem, uint64_t off, uint16_t v) { memcpy(mem + off, &v, 2); }
static inline void wr64(uint8_t *mem, uint64_t off, uint64_t v) { memcpy(mem + off, &v, 8); }
static inline double rdf64(const uint8_t *mem, uint64_t off) { double v; memcpy(&v, mem + off, 8); return v; }
static inline void wrf64(uint8_t *mem, uint64_t off, double v) { memcpy(mem + off, &v, 8); }

/* Stores before the flag are done before it, and the flag is cleared only after the others. */
static inline void set_flag(uint8_t *mem, uint8_t value) {
    __atomic_store_n(mem + H_JOURNAL_FLAG, value, __ATOMIC_RELEASE);
}

static void pause_point(Core *self, const char *label, const char *point) {
    char wanted[300];
    if (!self->pause_at[0] || !label) return;
    snprintf(wanted, sizeof wanted, "%s:%s", label, point);
    if (strcmp(wanted, self->pause_at) != 0) return;
    char line[320];
    int n = snprintf(line, sizeof line, "ASGI_IPC_PAUSED %s\n", wanted);
    if (write(1, line, (size_t)n) < 0) { /* the test reads it; nothing to do if it cannot */ }
    Py_BEGIN_ALLOW_THREADS
    for (;;) pause(); /* the test SIGKILLs this process here */
    Py_END_ALLOW_THREADS
}

static inline int entry_ok(Core *self, uint64_t index) { return index && index <= self->n_entries; }
static inline int chunk_ok(Core *self, uint64_t index) { return index && index <= self->n_chunks; }
static inline uint64_t entry_at(Core *self, uint64_t index) { return self->entries + index * ENTRY_SIZE; }
static inline uint64_t chunk_at(Core *self, uint64_t index) { return self->chunks + index * CHUNK_SIZE; }

/* A hash bucket's byte offset, as the caller computed it (hotentries.EntryWrites.bucket). */
static inline int bucket_ok(Core *self, uint64_t bucket) {
    return bucket >= self->wakers + WAKER_SLOTS * WAKER_SIZE && bucket + 4 <= self->entries && bucket % 4 == 0;
}

/* Journal record: offset, length, then the new bytes. Returns the position after it. */
static inline uint64_t record(uint8_t *mem, uint64_t pos, uint64_t off, uint16_t length) {
    wr64(mem, pos, off);
    wr16(mem, pos + 8, length);
    return pos + RECORD_SIZE;
}

/* Commit n u32 writes (offset, value pairs) as journal.commit_u32s: the same records, commit
 * point and pause points (the first half applied before "mid-apply"). */
static void commit_writes(Core *self, const char *label, const uint64_t *writes, int n) {
    uint8_t *mem = self->mem;
    uint64_t pos = self->journal + 4;
    for (int i = 0; i < n; i++) {
        pos = record(mem, pos, writes[2 * i], 4);
        wr32(mem, pos, (uint32_t)writes[2 * i + 1]);
        pos += 4;
    }
    wr32(mem, self->journal, (uint32_t)(pos - self->journal - 4));
    pause_point(self, label, "before-commit");
    set_flag(mem, 1); /* the commit point */
    for (int i = 0; i < n / 2; i++) wr32(mem, writes[2 * i], (uint32_t)writes[2 * i + 1]);
    pause_point(self, label, "mid-apply");
    for (int i = n / 2; i < n; i++) wr32(mem, writes[2 * i], (uint32_t)writes[2 * i + 1]);
    set_flag(mem, 0);
}

static int Core_init(Core *self, PyObject *args, PyObject *kwds) {
    PyObject *mem, *not_handled, *busy, *held;
    unsigned long long entries, chunks, journal, wakers, n_chunks, n_entries;
    int robust;
    const char *pause_at = NULL;
    (void)kwds;
    if (!PyArg_ParseTuple(args, "OOOOpKKKKKK|z", &mem, &not_handled, &busy, &held, &robust, &entries, &chunks,
                          &journal, &wakers, &n_chunks, &n_entries, &pause_at))
        return -1;
    if (self->has_view) {
        PyErr_SetString(PyExc_RuntimeError, "Core is initialised once");
        return -1;
    }
    if (PyObject_GetBuffer(mem, &self->view, PyBUF_WRITABLE | PyBUF_SIMPLE) < 0) return -1;
    self->has_view = 1;
    self->mem = (uint8_t *)self->view.buf;
    self->size = (uint64_t)self->view.len;
    self->entries = entries; self->chunks = chunks; self->journal = journal; self->wakers = wakers;
    self->n_chunks = n_chunks; self->n_entries = n_entries;
    if (chunks + (n_chunks + 1) * CHUNK_SIZE > self->size || entries + (n_entries + 1) * ENTRY_SIZE > self->size
        || wakers + WAKER_SLOTS * WAKER_SIZE > self->size || journal + 4096 > self->size
        || sizeof(pthread_mutex_t) > 64) {
        PyErr_SetString(PyExc_ValueError, "layout does not fit the buffer");
        return -1;
    }
    self->robust = robust;
    self->mutex = (pthread_mutex_t *)(self->mem + H_MUTEX);
    Py_INCREF(not_handled); Py_XSETREF(self->not_handled, not_handled);
    Py_INCREF(busy); Py_XSETREF(self->busy, busy);
    Py_INCREF(held); Py_XSETREF(self->held, held);
    self->pause_at[0] = 0;
    if (pause_at) snprintf(self->pause_at, sizeof self->pause_at, "%s", pause_at);
    return 0;
}

static PyObject *Core_release(Core *self, PyObject *unused) {
    (void)unused;
    if (self->has_view) {
        self->has_view = 0;
        self->mem = NULL;
        PyBuffer_Release(&self->view);
    }
    Py_RETURN_NONE;
}

static void Core_dealloc(Core *self) {
    Core_release(self, NULL);
    Py_XDECREF(self->not_handled);
    Py_XDECREF(self->busy);
    Py_XDECREF(self->held);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *not_handled(Core *self) {
    Py_INCREF(self->not_handled);
    return self->not_handled;
}

/* The send step: the caller holds the segment lock and found the channel's entry at off.
 * Returns the pokes tuple, NOT_HANDLED (nothing written), or NULL with an exception. */
static PyObject *send_step(Core *self, uint64_t off, const char *bytes, Py_ssize_t length, double expires,
                           long long capacity, const char *label) {
    uint8_t *mem = self->mem;
    if (length > FIRST_ROOM || off < self->entries || off + ENTRY_SIZE > self->size) return not_handled(self);

    uint32_t head = rd32(mem, off + 8), tail = rd32(mem, off + 12), count = rd32(mem, off + 16);
    uint32_t waiter = rd32(mem, off + 24), counter = rd32(mem, off + 28);
    uint64_t held_at;
    uint32_t held;
    if (counter) {
        if (!entry_ok(self, counter)) return not_handled(self);
        if (rd32(mem, entry_at(self, counter) + E_A)) return not_handled(self); /* its inbox goes first (inbox.py) */
        held_at = entry_at(self, counter) + E_C;
        held = rd32(mem, held_at);
        if (held >= capacity) return not_handled(self); /* Python prunes expired messages, then decides */
    } else {
        if (count >= capacity) return not_handled(self);
        held_at = off + E_C;
        held = count;
    }
    PyObject *pokes;
    uint32_t w_slot = 0, w_low = 0, w_high = 0;
    uint64_t w_token = 0;
    if (waiter) { /* one registered receive; several: the Python path collects them */
        if (!entry_ok(self, waiter)) return not_handled(self);
        uint64_t woff = entry_at(self, waiter) + E_A;
        uint32_t token_low = rd32(mem, woff + 4), following = rd32(mem, woff + 12);
        w_slot = rd32(mem, woff);
        w_low = rd32(mem, woff + 8);
        w_high = rd32(mem, woff + 16);
        if (following || !w_slot || w_slot >= WAKER_SLOTS) return not_handled(self);
        uint64_t slot_off = self->wakers + (uint64_t)w_slot * WAKER_SIZE;
        if (!mem[slot_off + W_STATE] || rd32(mem, slot_off + W_TOKEN) != token_low)
            return not_handled(self); /* a stale waiter: the Python path drops it */
        w_token = (uint64_t)rd32(mem, slot_off + W_TOKEN + 4) << 32 | token_low;
    }
    uint32_t bump = rd32(mem, H_CHUNK_BUMP), free_ = rd32(mem, H_CHUNK_FREE), used = rd32(mem, H_CHUNKS_USED);
    uint32_t first;
    if (free_) {
        if (!chunk_ok(self, free_)) return not_handled(self);
        first = free_;
        free_ = rd32(mem, chunk_at(self, first));
    } else if (bump <= self->n_chunks && bump) {
        first = bump;
        bump += 1;
    } else {
        return not_handled(self); /* the Python path raises SegmentFull with the details */
    }
    if (tail && !chunk_ok(self, tail)) return not_handled(self);
    if (w_low) {
        pokes = Py_BuildValue("((IKK))", w_slot, (unsigned long long)w_token,
                              (unsigned long long)w_high << 32 | w_low);
    } else {
        pokes = PyTuple_New(0);
    }
    if (!pokes) return NULL;

    /* from here on nothing fails: the message bytes go into the free chunk, then the commit */
    uint64_t first_off = chunk_at(self, first);
    memcpy(mem + first_off + FIRST_DATA, bytes, (size_t)length);
    wr32(mem, first_off + M_NEXT, 0);
    wr32(mem, first_off + M_NEXT + 4, (uint32_t)length);
    wr32(mem, first_off + M_NEXT + 8, first);
    wrf64(mem, first_off + M_NEXT + 12, expires);
    uint64_t link;
    uint32_t new_head = head;
    if (tail) {
        link = chunk_at(self, tail) + M_NEXT;
    } else {
        link = first_off + M_NEXT;
        new_head = first;
    }
    uint32_t linked = tail ? first : 0;
    uint64_t entry = off + E_A;
    /* journal: as journal.commit_queue */
    uint64_t pos = self->journal + 4;
    pos = record(mem, pos, H_CHUNK_BUMP, 12);
    wr32(mem, pos, bump); wr32(mem, pos + 4, free_); wr32(mem, pos + 8, used + 1); pos += 12;
    pos = record(mem, pos, entry, 12);
    wr32(mem, pos, new_head); wr32(mem, pos + 4, first); wr32(mem, pos + 8, count + 1); pos += 12;
    pos = record(mem, pos, link, 4);
    wr32(mem, pos, linked); pos += 4;
    pos = record(mem, pos, held_at, 4);
    wr32(mem, pos, held + 1); pos += 4;
    wr32(mem, self->journal, (uint32_t)(pos - self->journal - 4));
    pause_point(self, label, "before-commit");
    set_flag(mem, 1); /* the commit point */
    wr32(mem, H_CHUNK_BUMP, bump); wr32(mem, H_CHUNK_FREE, free_); wr32(mem, H_CHUNKS_USED, used + 1);
    wr32(mem, entry, new_head); wr32(mem, entry + 4, first); wr32(mem, entry + 8, count + 1);
    pause_point(self, label, "mid-apply");
    wr32(mem, link, linked);
    wr32(mem, held_at, held + 1);
    set_flag(mem, 0);
    return pokes;
}

/* The arguments of a send step, parsed from data, expires, capacity, label. */
typedef struct {
    const char *bytes;
    Py_ssize_t length;
    double expires;
    long long capacity;
    const char *label;
} SendArgs;

static int parse_send(PyObject *const *args, SendArgs *out) {
    if (!PyBytes_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "the message must be bytes");
        return -1;
    }
    out->bytes = PyBytes_AS_STRING(args[0]);
    out->length = PyBytes_GET_SIZE(args[0]);
    out->expires = PyFloat_AsDouble(args[1]);
    out->capacity = PyLong_AsLongLong(args[2]);
    out->label = PyUnicode_Check(args[3]) ? PyUnicode_AsUTF8(args[3]) : NULL;
    return PyErr_Occurred() ? -1 : 0;
}

/* send(entry_off, data, expires, capacity, label) -> pokes tuple, or NOT_HANDLED.
 * The caller holds the segment lock and found the channel's entry at entry_off (cached). */
static PyObject *Core_send(Core *self, PyObject *const *args, Py_ssize_t nargs) {
    SendArgs a;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "send(entry_off, data, expires, capacity, label)");
        return NULL;
    }
    uint64_t off = PyLong_AsUnsignedLongLong(args[0]);
    if (PyErr_Occurred() || parse_send(args + 1, &a) < 0) return NULL;
    if (!self->has_view) return not_handled(self);
    return send_step(self, off, a.bytes, a.length, a.expires, a.capacity, a.label);
}

/* The pop step: as HotPath.pop for a channel found at off that keeps its entry (it has more
 * messages, or waiters); slot 0: a plain pop; arm 0: a spinning receive, no arm. The caller
 * holds the segment lock. Returns bytes, None (empty), NOT_HANDLED (nothing written), or NULL. */
static PyObject *delete_step(Core *self, uint64_t off, uint64_t bucket, uint64_t counter_bucket, uint32_t head,
                             uint64_t head_off, uint32_t length);

static PyObject *pop_step(Core *self, uint64_t off, uint64_t bucket, uint64_t counter_bucket, double now,
                          unsigned long slot, unsigned long long token, int disarm, int arm, unsigned long long epoch) {
    uint8_t *mem = self->mem;
    if (off < self->entries || off + ENTRY_SIZE > self->size) return not_handled(self);

    uint32_t head = rd32(mem, off + 8), tail = rd32(mem, off + 12), count = rd32(mem, off + 16);
    uint32_t waiter = rd32(mem, off + 24), counter = rd32(mem, off + 28);
    uint64_t state = 0; /* our waiter's field C */
    uint32_t armed = 0;
    if (counter && (!entry_ok(self, counter) || rd32(mem, entry_at(self, counter) + E_A)))
        return not_handled(self); /* its process's inbox is taken apart first (inbox.py) */
    if (slot) {
        int steps = 0;
        while (waiter) {
            if (!entry_ok(self, waiter) || ++steps > WAKER_SLOTS) return not_handled(self);
            uint64_t woff = entry_at(self, waiter) + E_A;
            if (rd32(mem, woff) == slot && rd32(mem, woff + 4) == (uint32_t)token) {
                state = woff + 8;
                armed = rd32(mem, state);
                break;
            }
            waiter = rd32(mem, woff + 12);
        }
        if (!waiter) return not_handled(self); /* not registered: the Python path registers it */
    }
    if (!head) {
        if (state && arm) {
            wr32(mem, state, (uint32_t)epoch);
            wr32(mem, state + (E_E - E_C), (uint32_t)(epoch >> 32));
        }
        Py_RETURN_NONE;
    }
    if (!chunk_ok(self, head)) return not_handled(self);
    uint64_t head_off = chunk_at(self, head);
    uint32_t following = rd32(mem, head_off + M_NEXT), length = rd32(mem, head_off + M_NEXT + 4);
    double expires = rdf64(mem, head_off + M_NEXT + 12);
    if (expires <= now || length > FIRST_ROOM) return not_handled(self); /* expired, or long */
    if (!following && !waiter) return delete_step(self, off, bucket, counter_bucket, head, head_off, length);
    if (following && !chunk_ok(self, following)) return not_handled(self);
    uint64_t held_at;
    uint32_t held;
    if (counter) {
        if (!entry_ok(self, counter)) return not_handled(self);
        held_at = entry_at(self, counter) + E_C;
        held = rd32(mem, held_at) - 1;
    } else {
        held_at = off + E_C;
        held = count - 1;
    }
    PyObject *data = PyBytes_FromStringAndSize((const char *)mem + head_off + FIRST_DATA, length);
    if (!data) return NULL;
    uint32_t free_ = rd32(mem, H_CHUNK_FREE), used = rd32(mem, H_CHUNKS_USED) - 1;
    uint32_t new_tail = following ? tail : 0;
    uint64_t entry = off + E_A;
    const char *label = "receive";
    /* journal: as journal.commit_dequeue */
    uint64_t pos = self->journal + 4;
    pos = record(mem, pos, H_CHUNK_FREE, 8);
    wr32(mem, pos, head); wr32(mem, pos + 4, used); pos += 8;
    pos = record(mem, pos, head_off, 4);
    wr32(mem, pos, free_); pos += 4;
    pos = record(mem, pos, entry, 12);
    wr32(mem, pos, following); wr32(mem, pos + 4, new_tail); wr32(mem, pos + 8, count - 1); pos += 12;
    pos = record(mem, pos, held_at, 4);
    wr32(mem, pos, held); pos += 4;
    wr32(mem, self->journal, (uint32_t)(pos - self->journal - 4));
    pause_point(self, label, "before-commit");
    set_flag(mem, 1); /* the commit point */
    wr32(mem, H_CHUNK_FREE, head); wr32(mem, H_CHUNKS_USED, used);
    wr32(mem, head_off, free_);
    pause_point(self, label, "mid-apply");
    wr32(mem, entry, following); wr32(mem, entry + 4, new_tail); wr32(mem, entry + 8, count - 1);
    wr32(mem, held_at, held);
    set_flag(mem, 0);
    if (state && disarm && armed) wr32(mem, state, 0);
    return data;
}

/* Appends to writes (offset, value pairs) the one taking index out of the hash chain of bucket;
 * 0 if it is not there (corrupt: the Python path says so). */
static int unlink_hashed(Core *self, uint64_t bucket, uint32_t index, uint64_t *writes, int *n) {
    uint8_t *mem = self->mem;
    uint32_t following = rd32(mem, entry_at(self, index) + E_NEXT), current = rd32(mem, bucket);
    uint64_t link = bucket;
    for (uint64_t steps = 0; current && steps <= self->n_entries; steps++) {
        if (current == index) {
            writes[2 * *n] = link, writes[2 * *n + 1] = following, (*n)++;
            return 1;
        }
        if (!entry_ok(self, current)) return 0;
        link = entry_at(self, current) + E_NEXT;
        current = rd32(mem, link);
    }
    return 0;
}

#define MAX_DELETE_WRITES 12 /* u32 fields a receive deleting its channel changes, at most */

/* A pop that takes the last message of a channel nobody waits on (the lock held, the head
 * message at head_off checked): as HotPath.pop and EntryWrites.delete_channel, the message's chunk freed
 * and the channel's entry deleted (and its 'p!' counter's, if it was the process's last
 * channel) in one commit of u32 records, as journal.commit_u32s (the same records in the same
 * order, commit point and pause points). bucket and counter_bucket are the hash buckets of
 * the channel's name and of its 'p!' part (0: not known, NOT_HANDLED). A channel leaves its
 * counter's sibling list through its own links (D next, G previous): no walk. */
static PyObject *delete_step(Core *self, uint64_t off, uint64_t bucket, uint64_t counter_bucket, uint32_t head,
                             uint64_t head_off, uint32_t length) {
    uint8_t *mem = self->mem;
    if (!bucket_ok(self, bucket)) return not_handled(self);
    uint32_t index = (uint32_t)((off - self->entries) / ENTRY_SIZE), counter = rd32(mem, off + 28);
    if ((off - self->entries) % ENTRY_SIZE || !entry_ok(self, index)) return not_handled(self);
    uint64_t writes[2 * MAX_DELETE_WRITES];
    int n = 0;
#define WRITE(off_, value) (writes[2 * n] = (off_), writes[2 * n + 1] = (value), n++)
    WRITE(head_off, rd32(mem, H_CHUNK_FREE));
    WRITE(H_CHUNK_FREE, head);
    WRITE(H_CHUNKS_USED, rd32(mem, H_CHUNKS_USED) - 1);
    if (!unlink_hashed(self, bucket, index, writes, &n)) return not_handled(self);
    uint32_t doomed[2] = {index, 0}, n_doomed = 1;
    if (counter) {
        if (!entry_ok(self, counter)) return not_handled(self);
        uint64_t counter_off = entry_at(self, counter);
        uint32_t following = rd32(mem, off + E_D), previous = rd32(mem, off + E_G);
        if ((following && !entry_ok(self, following)) || (previous && !entry_ok(self, previous)))
            return not_handled(self);
        if (!previous && !following) { /* the last of this process's channels: the counter goes too */
            if (!bucket_ok(self, counter_bucket) || counter_bucket == bucket
                || !unlink_hashed(self, counter_bucket, counter, writes, &n))
                return not_handled(self);
            doomed[0] = counter, doomed[1] = index, n_doomed = 2;
        } else {
            WRITE(counter_off + E_C, rd32(mem, counter_off + E_C) - 1);
            WRITE(previous ? entry_at(self, previous) + E_D : counter_off + E_D, following);
            if (following) WRITE(entry_at(self, following) + E_G, previous);
        }
    }
    uint32_t free_head = rd32(mem, H_ENTRY_FREE); /* as EntryWrites.free: the last freed ends up first */
    for (uint32_t i = 0; i < n_doomed; i++) {
        uint64_t doomed_off = entry_at(self, doomed[i]);
        WRITE(doomed_off, 0); /* KIND_FREE */
        WRITE(doomed_off + E_NEXT, free_head);
        free_head = doomed[i];
    }
    WRITE(H_ENTRY_FREE, free_head);
#undef WRITE
    PyObject *data = PyBytes_FromStringAndSize((const char *)mem + head_off + FIRST_DATA, length);
    if (!data) return NULL;
    commit_writes(self, "receive", writes, n);
    return data;
}

/* The arguments of a pop step, parsed from now, slot, token, disarm, epoch (None: no arm). */
typedef struct {
    double now;
    unsigned long slot;
    unsigned long long token, epoch;
    int disarm, arm;
} PopArgs;

static int parse_pop(PyObject *const *args, PopArgs *out) {
    out->now = PyFloat_AsDouble(args[0]);
    out->slot = PyLong_AsUnsignedLong(args[1]);
    out->token = PyLong_AsUnsignedLongLong(args[2]);
    out->disarm = PyObject_IsTrue(args[3]);
    out->arm = args[4] != Py_None;
    out->epoch = out->arm ? PyLong_AsUnsignedLongLong(args[4]) : 0;
    return PyErr_Occurred() ? -1 : 0;
}

/* pop(entry_off, bucket, counter_bucket, now, slot, token, disarm, epoch) -> bytes, None (empty),
 * or NOT_HANDLED. The caller holds the segment lock; the buckets are those of the channel's
 * name and of its 'p!' part (0: none), for deleting a channel its last message leaves. */
static PyObject *Core_pop(Core *self, PyObject *const *args, Py_ssize_t nargs) {
    PopArgs a;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "pop(entry_off, bucket, counter_bucket, now, slot, token, disarm, epoch)");
        return NULL;
    }
    uint64_t off = PyLong_AsUnsignedLongLong(args[0]);
    uint64_t bucket = PyLong_AsUnsignedLongLong(args[1]), counter_bucket = PyLong_AsUnsignedLongLong(args[2]);
    if (PyErr_Occurred() || parse_pop(args + 3, &a) < 0) return NULL;
    if (!self->has_view) return not_handled(self);
    return pop_step(self, off, bucket, counter_bucket, a.now, a.slot, a.token, a.disarm, a.arm, a.epoch);
}

/* The entry of kind and name first in the chain of bucket (an offset), or 0 (0 too if the chain
 * is longer than the segment has entries: corrupt, and the Python path will say so). */
static uint32_t find_entry(Core *self, uint64_t bucket, uint32_t kind, const char *name, Py_ssize_t length) {
    uint8_t *mem = self->mem;
    uint32_t word = kind | (uint32_t)length << 8, index = rd32(mem, bucket);
    for (uint64_t steps = 0; index && steps <= self->n_entries; steps++) {
        if (!entry_ok(self, index)) return 0;
        uint64_t off = entry_at(self, index);
        if ((rd32(mem, off) & 0xFFFF) == word && memcmp(mem + off + E_NAME, name, (size_t)length) == 0) return index;
        index = rd32(mem, off + E_NEXT);
    }
    return 0;
}

/* The send step for a channel with no entry yet (the caller looked, the lock held): as
 * HotPath._send_creating, the channel's entry (and its 'p!' counter's, if it has none yet)
 * made and the message queued in one commit of u32 records, as journal.commit_u32s (the same
 * records, commit point and pause points). bucket and counter_bucket are the byte offsets of
 * the hash buckets of the channel and of its counter (counter_length bytes of the name, 0:
 * none). Returns () (nobody waits on a new channel) or NOT_HANDLED (nothing written). */
static PyObject *send_new_step(Core *self, const char *name, Py_ssize_t length, uint64_t bucket,
                               Py_ssize_t counter_length, uint64_t counter_bucket, const char *bytes,
                               Py_ssize_t size, double expires, long long capacity, const char *label) {
    uint8_t *mem = self->mem;
    uint64_t buckets_end = self->entries, buckets_start = self->wakers + WAKER_SLOTS * WAKER_SIZE;
    if (size > FIRST_ROOM || length < 1 || length > MAX_NAME || counter_length < 0 || counter_length > length
        || bucket < buckets_start || bucket + 4 > buckets_end || bucket % 4
        || (counter_length && (counter_bucket < buckets_start || counter_bucket + 4 > buckets_end || counter_bucket % 4)))
        return not_handled(self);
    uint32_t counter = 0, held = 0;
    if (counter_length) {
        counter = find_entry(self, counter_bucket, KIND_COUNTER, name, counter_length);
        if (counter) {
            if (rd32(mem, entry_at(self, counter) + E_A)) return not_handled(self); /* its inbox goes first */
            held = rd32(mem, entry_at(self, counter) + E_C);
            uint32_t sibling = rd32(mem, entry_at(self, counter) + E_D);
            if (sibling && !entry_ok(self, sibling)) return not_handled(self); /* it gets a back link */
        } else if (counter_bucket == bucket) return not_handled(self); /* two inserts into one bucket */
    }
    if ((long long)held >= capacity) return not_handled(self); /* Python prunes, then decides */

    uint64_t writes[2 * MAX_CREATE_WRITES]; /* offset, value */
    int n = 0;
#define WRITE(off, value) (writes[2 * n] = (off), writes[2 * n + 1] = (value), n++)
    /* entries: the channel's, then a new counter's; off the free list first, then fresh */
    uint32_t need = counter_length && !counter ? 2 : 1, taken[2], got = 0;
    uint32_t free_entry = rd32(mem, H_ENTRY_FREE);
    while (free_entry && got < need) {
        if (!entry_ok(self, free_entry)) return not_handled(self);
        taken[got++] = free_entry;
        free_entry = rd32(mem, entry_at(self, free_entry) + E_NEXT);
    }
    if (got) WRITE(H_ENTRY_FREE, free_entry);
    if (got < need) {
        uint32_t bump = rd32(mem, H_ENTRY_BUMP);
        if (!bump || bump + (need - got) - 1 > self->n_entries) return not_handled(self); /* SegmentFull */
        while (got < need) taken[got++] = bump++;
        WRITE(H_ENTRY_BUMP, bump);
    }
    /* the message's chunk */
    uint32_t chunk_bump = rd32(mem, H_CHUNK_BUMP), chunk_free = rd32(mem, H_CHUNK_FREE);
    uint32_t first;
    if (chunk_free) {
        if (!chunk_ok(self, chunk_free)) return not_handled(self);
        first = chunk_free;
        WRITE(H_CHUNK_FREE, rd32(mem, chunk_at(self, first)));
    } else if (chunk_bump && chunk_bump <= self->n_chunks) {
        first = chunk_bump;
        WRITE(H_CHUNK_BUMP, chunk_bump + 1);
    } else {
        return not_handled(self); /* the Python path raises SegmentFull with the details */
    }
    WRITE(H_CHUNKS_USED, rd32(mem, H_CHUNKS_USED) + 1);
    PyObject *pokes = PyTuple_New(0);
    if (!pokes) return NULL;

    /* from here on nothing fails. Bytes nothing points at yet go straight in: the message,
     * and each new entry's name and fields A..F (a free entry's belong to nobody). */
    uint32_t index = taken[0], sibling = 0;
    uint64_t first_off = chunk_at(self, first), off = entry_at(self, index);
    memcpy(mem + first_off + FIRST_DATA, bytes, (size_t)size);
    wr32(mem, first_off + M_NEXT, 0);
    wr32(mem, first_off + M_NEXT + 4, (uint32_t)size);
    wr32(mem, first_off + M_NEXT + 8, first);
    wrf64(mem, first_off + M_NEXT + 12, expires);
    if (counter) {
        uint64_t counter_off = entry_at(self, counter);
        sibling = rd32(mem, counter_off + E_D);
        WRITE(counter_off + E_D, index);
        WRITE(counter_off + E_C, held + 1);
        if (sibling) WRITE(entry_at(self, sibling) + E_G, index);
    } else if (counter_length) { /* a counter: C messages held, D first sibling (layout.KIND_COUNTER) */
        counter = taken[1];
        uint64_t counter_off = entry_at(self, counter);
        uint32_t fields[7] = {0, 0, 1, index, 0, 0, 0};
        memcpy(mem + counter_off + E_NAME, name, (size_t)counter_length);
        memcpy(mem + counter_off + E_A, fields, sizeof fields);
        WRITE(counter_off, KIND_COUNTER | (uint32_t)counter_length << 8);
        WRITE(counter_off + E_NEXT, rd32(mem, counter_bucket));
        WRITE(counter_bucket, counter);
    }
    /* A head, B tail, C count, D next sibling, E waiters, F counter, G previous sibling (layout.KIND_CHANNEL) */
    uint32_t fields[7] = {first, first, 1, sibling, 0, counter, 0};
    memcpy(mem + off + E_NAME, name, (size_t)length);
    memcpy(mem + off + E_A, fields, sizeof fields);
    WRITE(off, KIND_CHANNEL | (uint32_t)length << 8);
    WRITE(off + E_NEXT, rd32(mem, bucket));
    WRITE(bucket, index);
#undef WRITE
    commit_writes(self, label, writes, n);
    return pokes;
}

/* send_named(name, bucket, counter_length, counter_bucket, data, expires, capacity, label) -> pokes
 * tuple, or NOT_HANDLED. The caller holds the segment lock and has no cached entry for the
 * channel: it is looked up in bucket, and sent to (as send) or made (as HotPath._send_creating). */
static PyObject *Core_send_named(Core *self, PyObject *const *args, Py_ssize_t nargs) {
    SendArgs a;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "send_named(name, bucket, counter_length, counter_bucket, data, expires, capacity, label)");
        return NULL;
    }
    if (!PyBytes_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "the channel name must be bytes");
        return NULL;
    }
    uint64_t bucket = PyLong_AsUnsignedLongLong(args[1]);
    Py_ssize_t counter_length = PyLong_AsSsize_t(args[2]);
    uint64_t counter_bucket = PyLong_AsUnsignedLongLong(args[3]);
    if (PyErr_Occurred() || parse_send(args + 4, &a) < 0) return NULL;
    const char *name = PyBytes_AS_STRING(args[0]);
    Py_ssize_t length = PyBytes_GET_SIZE(args[0]);
    if (!self->has_view || !bucket_ok(self, bucket) || length < 1 || length > MAX_NAME) return not_handled(self);
    uint32_t index = find_entry(self, bucket, KIND_CHANNEL, name, length);
    if (index) return send_step(self, entry_at(self, index), a.bytes, a.length, a.expires, a.capacity, a.label);
    return send_new_step(self, name, length, bucket, counter_length, counter_bucket, a.bytes, a.length, a.expires,
                         a.capacity, a.label);
}

/* --- whole locked steps: take the lock, check the cached entry, step, let go ------------ */

/* 0: the lock is ours and the segment ready; BUSY: someone holds it (nothing taken);
 * HELD: the lock is ours but the Python side must go on (repair, or its own path). */
enum { TAKEN, BUSY, HELD };

static int take(Core *self) {
    if (!self->robust || !self->has_view) return BUSY;
    int result = pthread_mutex_trylock(self->mutex);
    if (result == EOWNERDEAD) {
        pthread_mutex_consistent(self->mutex); /* its holder died: ours; the Python side repairs */
        return HELD;
    }
    if (result) return BUSY; /* EBUSY; anything else the Python side's own take reports */
    if (self->mem[H_STATE] != STATE_READY || self->mem[H_JOURNAL_FLAG]) return HELD;
    return TAKEN;
}

/* The cached entry at off still holds this channel, and the segment was not re-formatted. */
static int still_cached(Core *self, uint64_t off, uint32_t kind_word, PyObject *name, uint32_t generation) {
    Py_ssize_t length = PyBytes_GET_SIZE(name);
    return off >= self->entries && off + ENTRY_SIZE <= self->size && rd32(self->mem, H_FLUSHES) == generation
           && (rd32(self->mem, off) & 0xFFFF) == kind_word && length <= MAX_NAME
           && memcmp(self->mem + off + E_NAME, PyBytes_AS_STRING(name), (size_t)length) == 0;
}

static PyObject *answer(Core *self, int state) {
    PyObject *sentinel = state == BUSY ? self->busy : self->held;
    Py_INCREF(sentinel);
    return sentinel;
}

/* After a step: let go of the lock unless the Python side must go on (NOT_HANDLED -> HELD). */
static PyObject *finish(Core *self, PyObject *result) {
    if (result == self->not_handled) {
        Py_DECREF(result);
        return answer(self, HELD);
    }
    pthread_mutex_unlock(self->mutex);
    return result; /* NULL (an exception) included: the lock is let go all the same */
}

/* The entry a locked step is for, parsed from entry_off, kind_word, name, generation: the cached
 * one if it still holds the channel, else (bucket nonzero) the one found in bucket. Then the lock
 * is taken. NULL when the step may run, the lock ours and *off the entry (0: there is none, only
 * with a bucket); else the answer to give (BUSY or HELD), or NULL with *failed set. */
static PyObject *begin(Core *self, PyObject *const *args, uint64_t bucket, uint64_t *off, int *failed) {
    *failed = 0;
    if (!PyBytes_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "the channel name must be bytes");
        *failed = 1;
        return NULL;
    }
    *off = PyLong_AsUnsignedLongLong(args[0]);
    uint32_t kind_word = (uint32_t)PyLong_AsUnsignedLong(args[1]);
    uint32_t generation = (uint32_t)PyLong_AsUnsignedLong(args[3]);
    if (PyErr_Occurred()) {
        *failed = 1;
        return NULL;
    }
    int state = take(self);
    if (state != TAKEN) return answer(self, state);
    if (*off && still_cached(self, *off, kind_word, args[2], generation)) return NULL;
    Py_ssize_t length = PyBytes_GET_SIZE(args[2]);
    if (!bucket || !bucket_ok(self, bucket) || length < 1 || length > MAX_NAME) return answer(self, HELD);
    uint32_t index = find_entry(self, bucket, KIND_CHANNEL, PyBytes_AS_STRING(args[2]), length);
    *off = index ? entry_at(self, index) : 0;
    return NULL;
}

/* locked_send(entry_off, kind_word, name, generation, bucket, counter_length, counter_bucket, data,
 * expires, capacity, label) -> pokes tuple (the lock taken and let go), BUSY (not taken) or HELD
 * (taken, still held). The channel is found as by locked_pop, and made if it has no entry (the
 * buckets are send_named's). */
static PyObject *Core_locked_send(Core *self, PyObject *const *args, Py_ssize_t nargs) {
    SendArgs a;
    int failed;
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "locked_send(entry_off, kind_word, name, generation, bucket, counter_length, "
                                         "counter_bucket, data, expires, capacity, label)");
        return NULL;
    }
    uint64_t bucket = PyLong_AsUnsignedLongLong(args[4]), counter_bucket = PyLong_AsUnsignedLongLong(args[6]);
    Py_ssize_t counter_length = PyLong_AsSsize_t(args[5]);
    if (PyErr_Occurred() || parse_send(args + 7, &a) < 0) return NULL;
    uint64_t off;
    PyObject *early = begin(self, args, bucket, &off, &failed);
    if (early || failed) return early;
    if (off) return finish(self, send_step(self, off, a.bytes, a.length, a.expires, a.capacity, a.label));
    return finish(self, send_new_step(self, PyBytes_AS_STRING(args[2]), PyBytes_GET_SIZE(args[2]), bucket,
                                      counter_length, counter_bucket, a.bytes, a.length, a.expires, a.capacity,
                                      a.label));
}

/* Whether the counter of p!-channel name (found in counter_bucket, 0: none) has an inbox. */
static int inbox_pending(Core *self, const char *name, Py_ssize_t length, uint64_t counter_bucket) {
    const char *bang = memchr(name, '!', (size_t)length);
    if (!counter_bucket || !bang || !bucket_ok(self, counter_bucket)) return 0;
    uint32_t counter = find_entry(self, counter_bucket, KIND_COUNTER, name, bang - name + 1);
    return counter && rd32(self->mem, entry_at(self, counter) + E_A) != 0;
}

/* locked_pop(entry_off, kind_word, name, generation, bucket, counter_bucket, now, slot, token, disarm,
 * epoch) -> bytes or None (the lock taken and let go), BUSY (not taken) or HELD (taken, still held).
 * The cached entry (entry_off 0: none) is used if it still holds the channel; else the channel is
 * looked up in bucket (a late reader's channel is made anew for each message, rarely in the
 * same entry). The buckets are pop's. */
static PyObject *Core_locked_pop(Core *self, PyObject *const *args, Py_ssize_t nargs) {
    PopArgs a;
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "locked_pop(entry_off, kind_word, name, generation, bucket, counter_bucket, "
                                         "now, slot, token, disarm, epoch)");
        return NULL;
    }
    uint64_t bucket = PyLong_AsUnsignedLongLong(args[4]), counter_bucket = PyLong_AsUnsignedLongLong(args[5]);
    if (PyErr_Occurred() || parse_pop(args + 6, &a) < 0) return NULL;
    uint64_t off;
    int failed;
    PyObject *early = begin(self, args, bucket, &off, &failed);
    if (early || failed) return early;
    if (!off) { /* no such channel: nothing to take; a receive that registers goes on in Python */
        if (a.slot || inbox_pending(self, PyBytes_AS_STRING(args[2]), PyBytes_GET_SIZE(args[2]), counter_bucket))
            return answer(self, HELD); /* so does one whose process's inbox may hold its copy (inbox.py) */
        pthread_mutex_unlock(self->mutex);
        Py_RETURN_NONE;
    }
    return finish(self, pop_step(self, off, bucket, counter_bucket, a.now, a.slot, a.token, a.disarm, a.arm,
                                 a.epoch));
}

/* live_members(group_off, now) -> {process: [channel name, ...]} of the group entry at group_off:
 * each process's members (its 'p!' part) in list order, normal channels under b""; None if one has
 * expired (or the list looks corrupt): the general path removes it. The caller holds the lock.
 * Every group_send reads its whole list and sorts it by process: a step a member, in Python, was
 * most of a group_send's own time once its copies went to inboxes. A process's members mostly
 * come in runs (it adds its own), so a key is made only where a run starts. */
static PyObject *Core_live_members(Core *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "live_members(group_off, now)");
        return NULL;
    }
    uint64_t group_off = PyLong_AsUnsignedLongLong(args[0]);
    double now = PyFloat_AsDouble(args[1]);
    if (PyErr_Occurred()) return NULL;
    uint8_t *mem = self->mem;
    if (group_off < self->entries || group_off + ENTRY_SIZE > self->size) Py_RETURN_NONE;
    PyObject *by_process = PyDict_New();
    if (!by_process) return NULL;
    PyObject *run = NULL; /* borrowed: the list of the current run's process */
    const uint8_t *run_key = NULL;
    Py_ssize_t run_length = -1;
    uint32_t member = rd32(mem, group_off + E_A);
    for (uint64_t steps = 0; member; steps++) {
        if (steps >= self->n_entries || !entry_ok(self, member)) break;
        uint64_t off = entry_at(self, member);
        uint8_t length = mem[off + 1];
        if (mem[off] != KIND_MEMBER || rdf64(mem, off + E_A) <= now || length > MAX_NAME) break;
        const uint8_t *name = mem + off + E_NAME;
        const uint8_t *bang = memchr(name, '!', length);
        Py_ssize_t key_length = bang ? bang - name + 1 : 0;
        if (key_length != run_length || (key_length && memcmp(name, run_key, (size_t)key_length) != 0)) {
            PyObject *key = PyBytes_FromStringAndSize((const char *)name, key_length);
            if (!key) goto failed;
            run = PyDict_GetItemWithError(by_process, key);
            if (!run && !PyErr_Occurred()) {
                PyObject *fresh = PyList_New(0);
                if (!fresh || PyDict_SetItem(by_process, key, fresh) < 0) {
                    Py_XDECREF(fresh);
                    Py_DECREF(key);
                    goto failed;
                }
                Py_DECREF(fresh); /* the dict holds it */
                run = fresh;
            }
            Py_DECREF(key);
            if (!run) goto failed;
            run_key = name;
            run_length = key_length;
        }
        PyObject *channel = PyBytes_FromStringAndSize((const char *)name, length);
        if (!channel || PyList_Append(run, channel) < 0) {
            Py_XDECREF(channel);
            goto failed;
        }
        Py_DECREF(channel);
        member = rd32(mem, off + E_D);
    }
    if (member) { /* stopped early: an expired member, or a list that looks corrupt */
        Py_DECREF(by_process);
        Py_RETURN_NONE;
    }
    return by_process;
failed:
    Py_DECREF(by_process);
    return NULL;
}

/* armed_siblings(counter_off) -> [(name, ((slot, token, epoch), ...)), ...]: the channels of a
 * process (the siblings of its counter at counter_off) with armed waiters, and those waiters; stale
 * ones are skipped (a send drops them). The caller holds the lock. For a group_send's copy in the
 * process's inbox: its armed members are poked (inbox.py). */
static PyObject *Core_armed_siblings(Core *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "armed_siblings(counter_off)");
        return NULL;
    }
    uint64_t counter_off = PyLong_AsUnsignedLongLong(args[0]);
    if (PyErr_Occurred()) return NULL;
    uint8_t *mem = self->mem;
    PyObject *found = PyList_New(0);
    if (!found) return NULL;
    if (counter_off < self->entries || counter_off + ENTRY_SIZE > self->size) return found;
    uint32_t index = rd32(mem, counter_off + E_D);
    for (uint64_t steps = 0; index && steps < self->n_entries; steps++) {
        if (!entry_ok(self, index)) break;
        uint64_t off = entry_at(self, index);
        uint32_t waiter = rd32(mem, off + E_E);
        PyObject *pokes = NULL;
        for (int w = 0; waiter && w < WAKER_SLOTS; w++) {
            if (!entry_ok(self, waiter)) break;
            uint64_t woff = entry_at(self, waiter) + E_A;
            uint32_t slot = rd32(mem, woff), token_low = rd32(mem, woff + 4), low = rd32(mem, woff + 8);
            uint32_t following = rd32(mem, woff + 12), high = rd32(mem, woff + 16);
            uint64_t slot_off = self->wakers + (uint64_t)slot * WAKER_SIZE;
            if (low && slot && slot < WAKER_SLOTS && mem[slot_off + W_STATE] && rd32(mem, slot_off + W_TOKEN) == token_low) {
                uint64_t token = (uint64_t)rd32(mem, slot_off + W_TOKEN + 4) << 32 | token_low;
                PyObject *poke = Py_BuildValue("(IKK)", slot, (unsigned long long)token,
                                               (unsigned long long)high << 32 | low);
                if (!poke || (!pokes && !(pokes = PyList_New(0))) || PyList_Append(pokes, poke) < 0) {
                    Py_XDECREF(poke);
                    Py_XDECREF(pokes);
                    Py_DECREF(found);
                    return NULL;
                }
                Py_DECREF(poke);
            }
            waiter = following;
        }
        if (pokes) {
            PyObject *item = Py_BuildValue("(y#N)", (const char *)mem + off + E_NAME, (Py_ssize_t)(mem[off + 1] < MAX_NAME ? mem[off + 1] : MAX_NAME), pokes);
            if (!item || PyList_Append(found, item) < 0) {
                Py_XDECREF(item);
                Py_DECREF(found);
                return NULL;
            }
            Py_DECREF(item);
        }
        index = rd32(mem, off + E_D);
    }
    return found;
}

static PyMethodDef Core_methods[] = {
    {"live_members", (PyCFunction)(void (*)(void))Core_live_members, METH_FASTCALL,
     "A group's members by process, or None if one expired (the lock held)."},
    {"armed_siblings", (PyCFunction)(void (*)(void))Core_armed_siblings, METH_FASTCALL,
     "The channels of a process with armed waiters, and those waiters (the lock held)."},
    {"send", (PyCFunction)(void (*)(void))Core_send, METH_FASTCALL, "A one-chunk send to a cached channel."},
    {"pop", (PyCFunction)(void (*)(void))Core_pop, METH_FASTCALL, "A receive of a one-chunk message."},
    {"send_named", (PyCFunction)(void (*)(void))Core_send_named, METH_FASTCALL,
     "A one-chunk send to a channel looked up by name: sent to, or made."},
    {"locked_send", (PyCFunction)(void (*)(void))Core_locked_send, METH_FASTCALL,
     "send or send_named with the lock taken here: pokes, BUSY or HELD."},
    {"locked_pop", (PyCFunction)(void (*)(void))Core_locked_pop, METH_FASTCALL,
     "pop with the lock taken here: bytes, None, BUSY or HELD."},
    {"release", (PyCFunction)Core_release, METH_NOARGS, "Let go of the buffer (so the map can close)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "reference_layers.ipc._hotcore.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Core_init,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_methods = Core_methods,
    .tp_doc = "Core(mem, NOT_HANDLED, BUSY, HELD, robust, entries, chunks, journal, wakers, n_chunks, n_entries, pause_at=None)",
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_hotcore", NULL, -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__hotcore(void) {
    if (PyType_Ready(&CoreType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&CoreType);
    if (PyModule_AddObject(m, "Core", (PyObject *)&CoreType) < 0) return NULL;
    PyObject *layout = Py_BuildValue(
        "{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,"
        "s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i}",
        "ENTRY_SIZE", ENTRY_SIZE, "E_A", E_A, "E_C", E_C, "E_E", E_E, "CHUNK_SIZE", CHUNK_SIZE,
        "M_NEXT", M_NEXT, "FIRST_DATA", FIRST_DATA, "FIRST_ROOM", FIRST_ROOM, "WAKER_SLOTS", WAKER_SLOTS,
        "WAKER_SIZE", WAKER_SIZE, "W_STATE", W_STATE, "W_TOKEN", W_TOKEN, "H_JOURNAL_FLAG", H_JOURNAL_FLAG,
        "H_CHUNK_BUMP", H_CHUNK_BUMP, "H_CHUNK_FREE", H_CHUNK_FREE, "H_CHUNKS_USED", H_CHUNKS_USED,
        "H_STATE", H_STATE, "STATE_READY", STATE_READY, "H_FLUSHES", H_FLUSHES, "H_MUTEX", H_MUTEX,
        "E_NAME", E_NAME, "MAX_NAME", MAX_NAME, "H_ENTRY_BUMP", H_ENTRY_BUMP, "H_ENTRY_FREE", H_ENTRY_FREE,
        "E_NEXT", E_NEXT, "E_D", E_D, "E_G", E_G, "KIND_CHANNEL", KIND_CHANNEL, "KIND_COUNTER", KIND_COUNTER,
        "VERSION", VERSION, "KIND_MEMBER", KIND_MEMBER);
    if (!layout || PyModule_AddObject(m, "LAYOUT", layout) < 0) return NULL;
    return m;
}
