/*
 * The fan-out engine's per-packet loop, in C: for every viewer of a stream, write the RTP
 * header (SSRC, sequence number, timestamp, payload type, header extensions) in front of
 * payloads packetized once per stream, protect it with that viewer's SRTP keys and send
 * the access unit's packets with one sendmmsg. The GIL is released for all of it,
 * so several lanes of viewers can send at once on several cores.
 *
 * Each Viewer holds its own dup() of the socket ICE selected, so the descriptor stays
 * valid (and never names another socket) whatever aiortc does with its own; and a mutex,
 * because libsrtp contexts are not thread-safe and retransmissions come from the event
 * loop while a lane sends.
 *
 * libsrtp is pylibsrtp's, the one aiortc uses: Python makes each viewer's session with
 * pylibsrtp and hands over the context and the addresses of srtp_protect and
 * srtp_protect_rtcp (engine/srtp.py checks their signature first). So building this needs
 * only a C compiler, and the viewer keeps its pylibsrtp session alive while it sends.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RING 1024        /* sequence number -> stream packet index, for NACKs */
#define MAX_EXT 32       /* bytes of header extension block */
#define MAX_PAYLOAD 1500 /* an RTP payload never exceeds a datagram */
#define BATCH 64         /* packets per sendmmsg */
#define HEADER_ROOM (12 + MAX_EXT + 2)
#define GSO_SEGMENTS 64   /* the kernel's UDP_MAX_SEGMENTS */
#define GSO_BYTES 65000   /* one GSO message stays under 64 KiB */
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#define SRTP_MAX_TRAILER_LEN (16 + 128) /* libsrtp 2: SRTP_MAX_TAG_LEN + SRTP_MAX_MKI_LEN */
#define PACKET_ROOM (HEADER_ROOM + MAX_PAYLOAD + SRTP_MAX_TRAILER_LEN)

/* libsrtp 2's context and its protect functions (0 is srtp_err_status_ok). */
typedef struct srtp_ctx_t_ *srtp_t;
typedef int (*protect_fn)(srtp_t ctx, void *packet, int *len);
static protect_fn srtp_protect = NULL, srtp_protect_rtcp = NULL;
#define SRTP_OK 0

typedef struct {
    uint16_t seq;
    uint32_t timestamp; /* as given, before the viewer's offset */
    int64_t index;
} RingEntry;

typedef struct {
    PyObject_HEAD
    pthread_mutex_t lock;
    srtp_t srtp;
    PyObject *session; /* the pylibsrtp session that owns srtp */
    int fd;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint32_t ssrc;
    uint8_t payload_type;
    uint16_t seq;
    uint32_t ts_offset;
    int rtx_payload_type; /* -1: no RTX, retransmit on the media SSRC */
    uint32_t rtx_ssrc;
    uint16_t rtx_seq;
    uint8_t ext[MAX_EXT];
    int ext_len;      /* 0: no extensions */
    int abs_offset;   /* where abs-send-time's 3 bytes go in ext, -1 none */
    int closed;
    int gso; /* UDP GSO for runs of equal-sized packets; off after the route refuses it */
    unsigned long long packets, octets, dropped, retransmits, send_errors, syscalls;
    uint32_t last_ts;
    uint64_t last_ntp;
    int last_errno;
    RingEntry ring[RING];
} Viewer;

static uint64_t ntp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seconds = (uint64_t)ts.tv_sec + 2208988800ULL;
    uint64_t fraction = ((uint64_t)ts.tv_nsec << 32) / 1000000000ULL;
    return (seconds << 32) | fraction;
}

static void put16(uint8_t *p, uint16_t v) {
    p[0] = v >> 8;
    p[1] = v & 0xff;
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = v >> 24;
    p[1] = (v >> 16) & 0xff;
    p[2] = (v >> 8) & 0xff;
    p[3] = v & 0xff;
}

/* Header and extensions into buf; returns the header length. Caller holds the lock. */
static int write_header(Viewer *v, uint8_t *buf, uint8_t pt, int marker, uint16_t seq,
                        uint32_t ts, uint32_t ssrc, uint32_t abs_send_time) {
    buf[0] = 0x80 | (v->ext_len ? 0x10 : 0);
    buf[1] = (uint8_t)((marker ? 0x80 : 0) | (pt & 0x7f));
    put16(buf + 2, seq);
    put32(buf + 4, ts);
    put32(buf + 8, ssrc);
    if (!v->ext_len) return 12;
    memcpy(buf + 12, v->ext, v->ext_len);
    if (v->abs_offset >= 0) {
        uint8_t *a = buf + 12 + v->abs_offset;
        a[0] = (abs_send_time >> 16) & 0xff;
        a[1] = (abs_send_time >> 8) & 0xff;
        a[2] = abs_send_time & 0xff;
    }
    return 12 + v->ext_len;
}

static int parse_address(const char *host, int port, struct sockaddr_storage *out,
                         socklen_t *len) {
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *in4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof(*in4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*in6);
        return 0;
    }
    return -1;
}

static void viewer_release(Viewer *v) {
    if (v->closed) return;
    v->closed = 1;
    v->srtp = NULL;
    Py_CLEAR(v->session); /* pylibsrtp deallocates the context with its session */
    if (v->fd >= 0) close(v->fd);
    v->fd = -1;
}

static PyObject *Viewer_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    Viewer *self = (Viewer *)type->tp_alloc(type, 0);
    if (self) {
        self->closed = 1; /* nothing to send with until __init__ succeeds */
        self->fd = -1;
    }
    return (PyObject *)self;
}

static int Viewer_init(Viewer *self, PyObject *args, PyObject *kwds) {
    if (self->srtp) {
        PyErr_SetString(PyExc_RuntimeError, "Viewer is already initialised");
        return -1;
    }
    static char *kwlist[] = {"fd", "host", "port", "session", "srtp", "ssrc", "payload_type",
                             "seq", "ts_offset", "mid_id", "mid", "abs_send_time_id",
                             "rtx_ssrc", "rtx_payload_type", "rtx_seq", "gso", NULL};
    int fd, port, payload_type, seq, mid_id, abs_id, rtx_pt, rtx_seq, gso = 1;
    const char *host;
    PyObject *session;
    unsigned long long context;
    Py_buffer mid;
    unsigned int ssrc, ts_offset, rtx_ssrc;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "isiOKIiiIiy*iIii|p", kwlist, &fd, &host,
                                     &port, &session, &context, &ssrc, &payload_type, &seq,
                                     &ts_offset, &mid_id, &mid, &abs_id, &rtx_ssrc, &rtx_pt,
                                     &rtx_seq, &gso))
        return -1;
    int ok = -1;
    self->fd = -1;
    self->srtp = NULL;
    self->closed = 1; /* until fully set up: a failed init leaves nothing to release */
    if (!srtp_protect || !srtp_protect_rtcp || !context) {
        PyErr_SetString(PyExc_RuntimeError, "no SRTP context or protect functions (bind first)");
        goto done;
    }
    if (parse_address(host, port, &self->addr, &self->addrlen) < 0) {
        PyErr_Format(PyExc_ValueError, "not an IP address: %s", host);
        goto done;
    }
    if (payload_type < 0 || payload_type > 127 || rtx_pt > 127 || seq < 0 || seq > 0xffff ||
        rtx_seq < 0 || rtx_seq > 0xffff) {
        PyErr_SetString(PyExc_ValueError, "payload type or sequence number out of range");
        goto done;
    }
    /* One-byte header extensions (RFC 8285): mid, then abs-send-time. */
    self->ext_len = 0;
    self->abs_offset = -1;
    int body = 0;
    uint8_t ext[MAX_EXT];
    if (mid_id > 0 && mid.len > 0) {
        if (mid_id > 14 || mid.len > 16) {
            PyErr_SetString(PyExc_ValueError, "mid does not fit a one-byte extension");
            goto done;
        }
        ext[4 + body] = (uint8_t)((mid_id << 4) | (mid.len - 1));
        memcpy(ext + 5 + body, mid.buf, mid.len);
        body += 1 + (int)mid.len;
    }
    if (abs_id > 0) {
        if (abs_id > 14) {
            PyErr_SetString(PyExc_ValueError, "abs-send-time id out of range");
            goto done;
        }
        ext[4 + body] = (uint8_t)((abs_id << 4) | 2);
        self->abs_offset = 4 + body + 1;
        body += 4;
    }
    if (body) {
        int words = (body + 3) / 4;
        memset(ext + 4 + body, 0, words * 4 - body);
        ext[0] = 0xbe;
        ext[1] = 0xde;
        put16(ext + 2, (uint16_t)words);
        self->ext_len = 4 + words * 4;
        memcpy(self->ext, ext, self->ext_len);
    }

    self->fd = dup(fd);
    if (self->fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    self->srtp = (srtp_t)(uintptr_t)context;
    Py_INCREF(session);
    self->session = session;
    pthread_mutex_init(&self->lock, NULL);
    self->ssrc = ssrc;
    self->payload_type = (uint8_t)payload_type;
    self->seq = (uint16_t)seq;
    self->ts_offset = ts_offset;
    self->rtx_payload_type = rtx_pt;
    self->rtx_ssrc = rtx_ssrc;
    self->rtx_seq = (uint16_t)rtx_seq;
    self->gso = gso;
    self->packets = self->octets = self->dropped = self->retransmits = self->send_errors = 0;
    self->syscalls = 0;
    self->last_ts = 0;
    self->last_ntp = 0;
    self->last_errno = 0;
    for (int i = 0; i < RING; i++) self->ring[i].index = -1;
    self->closed = 0;
    ok = 0;
done:
    PyBuffer_Release(&mid);
    return ok;
}

static void Viewer_dealloc(Viewer *self) {
    if (!self->closed) {
        viewer_release(self);
        pthread_mutex_destroy(&self->lock);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

typedef struct {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
} Control;

/* Send the protected packets iovs[0..n) to the viewer: one sendmmsg; with GSO, each run of
 * equal-sized packets (and one shorter packet after it) is one message the kernel cuts into
 * datagrams, so the stack is walked once per run instead of once per packet. Returns the
 * packets that did not go. */
static unsigned int flush(Viewer *v, struct iovec *iovs, unsigned int n, struct mmsghdr *msgs,
                          Control *ctrl, unsigned int *segs) {
    unsigned int m = 0;
    for (unsigned int i = 0; i < n; m++) {
        unsigned int k = 1;
        size_t size = iovs[i].iov_len, total = size;
        if (v->gso) {
            while (i + k < n && k < GSO_SEGMENTS && iovs[i + k].iov_len == size &&
                   total + size <= GSO_BYTES) {
                total += size;
                k++;
            }
            if (i + k < n && k < GSO_SEGMENTS && iovs[i + k].iov_len < size &&
                total + iovs[i + k].iov_len <= GSO_BYTES)
                k++; /* the last segment may be shorter */
        }
        struct msghdr *h = &msgs[m].msg_hdr;
        memset(h, 0, sizeof(*h));
        h->msg_name = &v->addr;
        h->msg_namelen = v->addrlen;
        h->msg_iov = &iovs[i];
        h->msg_iovlen = k;
        if (k > 1) {
            h->msg_control = ctrl[m].buf;
            h->msg_controllen = sizeof(ctrl[m].buf);
            struct cmsghdr *c = CMSG_FIRSTHDR(h);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t gso_size = (uint16_t)size;
            memcpy(CMSG_DATA(c), &gso_size, sizeof(gso_size));
        }
        segs[m] = k;
        i += k;
    }
    unsigned int done = 0, done_packets = 0;
    while (done < m) {
        int sent = sendmmsg(v->fd, msgs + done, m - done, MSG_DONTWAIT);
        if (sent < 0) {
            if (errno == EINTR) continue;
            if (v->gso && segs[done] > 1 &&
                (errno == EIO || errno == EINVAL || errno == ENOPROTOOPT || errno == EOPNOTSUPP)) {
                /* This route cannot segment: the rest, and all later sends, without GSO. */
                v->gso = 0;
                return flush(v, iovs + done_packets, n - done_packets, msgs, ctrl, segs);
            }
            v->last_errno = errno;
            unsigned int left = n - done_packets;
            /* A full send buffer (a slow viewer) loses these packets; NACK may repair. */
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
                v->dropped += left;
            else
                v->send_errors += left;
            return left;
        }
        v->syscalls++;
        for (int j = 0; j < sent; j++) done_packets += segs[done + j];
        done += (unsigned int)sent;
    }
    return 0;
}

typedef struct {
    const uint8_t *data;
    Py_ssize_t len;
} Payload;

/* One access unit to one viewer. Caller holds the lock; the GIL is released. */
static unsigned int send_unit_to(Viewer *v, const Payload *payloads, Py_ssize_t count,
                                 uint32_t timestamp, int64_t first_index, uint8_t *room,
                                 struct mmsghdr *msgs, struct iovec *iovs, Control *ctrl,
                                 unsigned int *segs) {
    if (v->closed) return 0;
    uint64_t ntp = ntp_now();
    uint32_t abs_send_time = (uint32_t)((ntp >> 14) & 0x00ffffff);
    uint32_t ts = timestamp + v->ts_offset;
    unsigned int queued = 0, sent_total = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        uint8_t *buf = room + (size_t)queued * PACKET_ROOM;
        uint16_t seq = v->seq++;
        int h = write_header(v, buf, v->payload_type, i == count - 1, seq, ts, v->ssrc,
                             abs_send_time);
        memcpy(buf + h, payloads[i].data, payloads[i].len);
        int len = h + (int)payloads[i].len;
        RingEntry *slot = &v->ring[seq % RING];
        slot->seq = seq;
        slot->timestamp = timestamp;
        slot->index = first_index + i;
        if (srtp_protect(v->srtp, buf, &len) == SRTP_OK) {
            iovs[queued].iov_base = buf;
            iovs[queued].iov_len = (size_t)len;
            v->packets++;
            v->octets += (unsigned long long)payloads[i].len;
            queued++;
        } else {
            v->send_errors++;
        }
        if (queued && (queued == BATCH || i == count - 1)) {
            sent_total += queued - flush(v, iovs, queued, msgs, ctrl, segs);
            queued = 0;
        }
    }
    v->last_ts = ts;
    v->last_ntp = ntp;
    return sent_total;
}

static PyTypeObject ViewerType;

static PyObject *fanout_send_unit(PyObject *module, PyObject *args) {
    PyObject *viewers_arg, *payloads_arg;
    unsigned int timestamp;
    long long first_index;
    if (!PyArg_ParseTuple(args, "OOIL", &viewers_arg, &payloads_arg, &timestamp, &first_index))
        return NULL;
    if (!PyTuple_Check(viewers_arg) || !PyTuple_Check(payloads_arg)) {
        PyErr_SetString(PyExc_TypeError, "viewers and payloads must be tuples");
        return NULL;
    }
    Py_ssize_t nv = PyTuple_GET_SIZE(viewers_arg), np = PyTuple_GET_SIZE(payloads_arg);
    if (np == 0 || nv == 0) return PyLong_FromLong(0);
    for (Py_ssize_t i = 0; i < nv; i++) {
        if (!PyObject_TypeCheck(PyTuple_GET_ITEM(viewers_arg, i), &ViewerType)) {
            PyErr_SetString(PyExc_TypeError, "viewers must be Viewer objects");
            return NULL;
        }
    }
    PyObject *result = NULL;
    Payload *payloads = PyMem_RawMalloc(sizeof(Payload) * np);
    size_t room_count = np < BATCH ? (size_t)np : BATCH;
    uint8_t *room = PyMem_RawMalloc(room_count * PACKET_ROOM);
    struct mmsghdr *msgs = PyMem_RawMalloc(sizeof(struct mmsghdr) * room_count);
    struct iovec *iovs = PyMem_RawMalloc(sizeof(struct iovec) * room_count);
    Control *ctrl = PyMem_RawMalloc(sizeof(Control) * room_count);
    unsigned int *segs = PyMem_RawMalloc(sizeof(unsigned int) * room_count);
    if (!payloads || !room || !msgs || !iovs || !ctrl || !segs) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < np; i++) {
        PyObject *p = PyTuple_GET_ITEM(payloads_arg, i);
        if (!PyBytes_Check(p) || PyBytes_GET_SIZE(p) > MAX_PAYLOAD) {
            PyErr_SetString(PyExc_ValueError, "payloads must be bytes of at most 1500");
            goto done;
        }
        payloads[i].data = (const uint8_t *)PyBytes_AS_STRING(p);
        payloads[i].len = PyBytes_GET_SIZE(p);
    }
    unsigned long long total = 0;
    /* The tuples (held by our caller) keep viewers and payloads alive without the GIL. */
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < nv; i++) {
        Viewer *v = (Viewer *)PyTuple_GET_ITEM(viewers_arg, i);
        if (v->closed) continue;
        pthread_mutex_lock(&v->lock);
        total += send_unit_to(v, payloads, np, timestamp, first_index, room, msgs, iovs, ctrl,
                              segs);
        pthread_mutex_unlock(&v->lock);
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromUnsignedLongLong(total);
done:
    PyMem_RawFree(payloads);
    PyMem_RawFree(room);
    PyMem_RawFree(msgs);
    PyMem_RawFree(iovs);
    PyMem_RawFree(ctrl);
    PyMem_RawFree(segs);
    return result;
}

static PyObject *Viewer_retransmit(Viewer *self, PyObject *args) {
    unsigned int seq_arg, timestamp;
    int marker;
    Py_buffer payload;
    if (!PyArg_ParseTuple(args, "Iy*Ip", &seq_arg, &payload, &timestamp, &marker)) return NULL;
    if (payload.len > MAX_PAYLOAD) {
        PyBuffer_Release(&payload);
        PyErr_SetString(PyExc_ValueError, "payload larger than 1500 bytes");
        return NULL;
    }
    uint8_t buf[PACKET_ROOM + 2];
    int sent = 0;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->lock);
    if (!self->closed) {
        uint32_t abs_send_time = (uint32_t)((ntp_now() >> 14) & 0x00ffffff);
        uint32_t ts = timestamp + self->ts_offset;
        int h, len;
        if (self->rtx_payload_type >= 0) {
            /* RFC 4588: the RTX stream carries the original sequence number first. */
            h = write_header(self, buf, (uint8_t)self->rtx_payload_type, marker,
                             self->rtx_seq++, ts, self->rtx_ssrc, abs_send_time);
            put16(buf + h, (uint16_t)seq_arg);
            memcpy(buf + h + 2, payload.buf, payload.len);
            len = h + 2 + (int)payload.len;
        } else {
            h = write_header(self, buf, self->payload_type, marker, (uint16_t)seq_arg, ts,
                             self->ssrc, abs_send_time);
            memcpy(buf + h, payload.buf, payload.len);
            len = h + (int)payload.len;
        }
        if (srtp_protect(self->srtp, buf, &len) == SRTP_OK &&
            sendto(self->fd, buf, (size_t)len, MSG_DONTWAIT, (struct sockaddr *)&self->addr,
                   self->addrlen) == len) {
            self->retransmits++;
            sent = 1;
        } else {
            self->dropped++;
        }
    }
    pthread_mutex_unlock(&self->lock);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&payload);
    return PyBool_FromLong(sent);
}

static PyObject *Viewer_send_rtcp(Viewer *self, PyObject *args) {
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data)) return NULL;
    if (data.len > MAX_PAYLOAD) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "RTCP compound larger than 1500 bytes");
        return NULL;
    }
    uint8_t buf[MAX_PAYLOAD + SRTP_MAX_TRAILER_LEN + 4];
    int len = (int)data.len, sent = 0;
    memcpy(buf, data.buf, data.len);
    PyBuffer_Release(&data);
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->lock);
    if (!self->closed && srtp_protect_rtcp(self->srtp, buf, &len) == SRTP_OK)
        sent = sendto(self->fd, buf, (size_t)len, MSG_DONTWAIT, (struct sockaddr *)&self->addr,
                      self->addrlen) == len;
    pthread_mutex_unlock(&self->lock);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(sent);
}

static PyObject *Viewer_lookup(Viewer *self, PyObject *arg) {
    long seq = PyLong_AsLong(arg);
    if (seq == -1 && PyErr_Occurred()) return NULL;
    pthread_mutex_lock(&self->lock);
    RingEntry e = self->ring[(uint16_t)seq % RING];
    pthread_mutex_unlock(&self->lock);
    if (e.index < 0 || e.seq != (uint16_t)seq) Py_RETURN_NONE;
    return Py_BuildValue("(LI)", (long long)e.index, e.timestamp);
}

static PyObject *Viewer_sender_info(Viewer *self, PyObject *unused) {
    pthread_mutex_lock(&self->lock);
    PyObject *r = Py_BuildValue("(KKKKKIKi)", self->packets, self->octets, self->dropped,
                                self->retransmits, self->send_errors, self->last_ts,
                                (unsigned long long)self->last_ntp, (int)self->seq);
    pthread_mutex_unlock(&self->lock);
    return r;
}

static PyObject *Viewer_retarget(Viewer *self, PyObject *args) {
    int fd, port;
    const char *host;
    if (!PyArg_ParseTuple(args, "isi", &fd, &host, &port)) return NULL;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    if (parse_address(host, port, &addr, &addrlen) < 0) {
        PyErr_Format(PyExc_ValueError, "not an IP address: %s", host);
        return NULL;
    }
    int copy = dup(fd);
    if (copy < 0) return PyErr_SetFromErrno(PyExc_OSError);
    pthread_mutex_lock(&self->lock);
    if (self->closed) {
        close(copy);
    } else {
        close(self->fd);
        self->fd = copy;
        self->addr = addr;
        self->addrlen = addrlen;
    }
    pthread_mutex_unlock(&self->lock);
    Py_RETURN_NONE;
}

static PyObject *Viewer_close(Viewer *self, PyObject *unused) {
    if (self->closed) Py_RETURN_NONE;
    pthread_mutex_lock(&self->lock);
    viewer_release(self);
    pthread_mutex_unlock(&self->lock);
    Py_RETURN_NONE;
}

static PyObject *Viewer_closed(Viewer *self, void *closure) {
    return PyBool_FromLong(self->closed);
}

static PyObject *Viewer_gso(Viewer *self, void *closure) { return PyBool_FromLong(self->gso); }

static PyObject *Viewer_syscalls(Viewer *self, void *closure) {
    return PyLong_FromUnsignedLongLong(self->syscalls);
}

static PyMethodDef Viewer_methods[] = {
    {"retransmit", (PyCFunction)Viewer_retransmit, METH_VARARGS,
     "retransmit(seq, payload, timestamp, marker): resend a packet (as RTX if negotiated)"},
    {"send_rtcp", (PyCFunction)Viewer_send_rtcp, METH_VARARGS,
     "send_rtcp(compound): protect with SRTCP and send"},
    {"lookup", (PyCFunction)Viewer_lookup, METH_O,
     "lookup(seq): (stream packet index, timestamp) sent with this sequence number, or None"},
    {"sender_info", (PyCFunction)Viewer_sender_info, METH_NOARGS,
     "(packets, octets, dropped, retransmits, errors, last_ts, last_ntp, next_seq)"},
    {"retarget", (PyCFunction)Viewer_retarget, METH_VARARGS,
     "retarget(fd, host, port): send on another socket, to another address (ICE moved)"},
    {"close", (PyCFunction)Viewer_close, METH_NOARGS, "stop sending; release keys and socket"},
    {NULL}};

static PyGetSetDef Viewer_getset[] = {
    {"closed", (getter)Viewer_closed, NULL, NULL, NULL},
    {"gso", (getter)Viewer_gso, NULL, "whether runs of packets go out as one GSO send", NULL},
    {"syscalls", (getter)Viewer_syscalls, NULL, "sendmmsg calls made for this viewer", NULL},
    {NULL}};

static PyTypeObject ViewerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media_server.engine._fanout.Viewer",
    .tp_doc = "One viewer's SRTP session, socket and RTP header state.",
    .tp_basicsize = sizeof(Viewer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Viewer_new,
    .tp_init = (initproc)Viewer_init,
    .tp_dealloc = (destructor)Viewer_dealloc,
    .tp_methods = Viewer_methods,
    .tp_getset = Viewer_getset,
};

static PyObject *fanout_bind(PyObject *module, PyObject *args) {
    unsigned long long protect, protect_rtcp;
    if (!PyArg_ParseTuple(args, "KK", &protect, &protect_rtcp)) return NULL;
    if (!protect || !protect_rtcp) {
        PyErr_SetString(PyExc_ValueError, "null protect function");
        return NULL;
    }
    srtp_protect = (protect_fn)(uintptr_t)protect;
    srtp_protect_rtcp = (protect_fn)(uintptr_t)protect_rtcp;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"bind", fanout_bind, METH_VARARGS,
     "bind(srtp_protect, srtp_protect_rtcp): the addresses of libsrtp's protect functions"},
    {"send_unit", fanout_send_unit, METH_VARARGS,
     "send_unit(viewers, payloads, timestamp, first_index): one access unit to every viewer "
     "(the last payload carries the marker bit); returns the packets sent"},
    {NULL}};

static struct PyModuleDef fanout_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_fanout",
    .m_doc = "The engine's native send path.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__fanout(void) {
    if (PyType_Ready(&ViewerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&fanout_module);
    if (!m) return NULL;
    Py_INCREF(&ViewerType);
    if (PyModule_AddObject(m, "Viewer", (PyObject *)&ViewerType) < 0) {
        Py_DECREF(&ViewerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
