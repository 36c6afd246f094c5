/*
 * smallload: the small-file load generator of bench/run.py, in C.
 *
 *     smallload HOST PORT USER PASSWORD NAME SIZE SESSIONS DURATION
 *
 * Does what `bench/load.py small` does, at a fraction of its CPU per transfer (the Python
 * generator costs about as much of the load core per transfer as the fastest servers
 * cost theirs, so it, not the server, was the limit): SESSIONS FTP sessions log in once
 * (at most 8 logins in flight), then each loops EPSV, connect to the EPSV port, RETR NAME
 * (SIZE bytes) until DURATION seconds after the last login. One process, one epoll loop,
 * every session a non-blocking state machine; bench/run.py starts several of these, all
 * pinned to the load core (the affinity is inherited).
 *
 * Output: one JSON line on stdout, the keys of load.py's small mode:
 *   transfers, seconds, errors, error_samples (the first 3), latencies (seconds, each
 *   transfer's EPSV-to-226-and-EOF time), cpu (user+system seconds of the timed part).
 *
 * Bounded: loopback targets only (127.0.0.0/8, ::1); 60 s for the logins, 60 s for any
 * one wait on a socket; the timed part ends DURATION + 25 s after it started whatever is
 * still in flight, and an alarm kills the process if all of that somehow fails.
 * Data is received into one buffer per process and never kept.
 *
 * What it still costs is nearly all kernel time: on loopback a send runs the receiving
 * socket's TCP processing in the sender's system call, so connect, send and close here
 * also pay for the server side of the handshake, the commands and the FIN.
 *
 * Build (bench/run.py does it into its work directory; by hand, bench/build/ is ignored):
 *     cc -std=c11 -O2 -Wall -Wextra -o bench/build/smallload bench/smallload.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LOGIN_SLOTS 8          /* logins in flight per process (ramped, as load.py) */
#define LOGIN_BUDGET 60.0      /* seconds for all logins, before the clock starts */
#define IO_TIMEOUT 60.0        /* seconds any one wait on a socket may take */
#define ERROR_PAUSE 0.05       /* seconds a session waits after a failed round */
#define TAIL_BUDGET 25.0       /* seconds after the deadline for rounds in flight */
#define TICK_MS 5              /* timer resolution: pauses and timeouts */
#define CTL_BUF 8192           /* one control connection's unparsed replies */
#define SAMPLES 3              /* error texts reported */
#define SAMPLE_LEN 200         /* bytes of each (load.py: repr(e)[:200]) */
#define MAX_EVENTS 256

/* What a session is doing; the comment says what it waits for. */
enum state {
    ST_NEW,      /* not started: waits for a login slot */
    ST_CONNECT,  /* control connect in progress: waits for writability */
    ST_BANNER,   /* connected: waits for the 220 banner, then sends USER */
    ST_USER,     /* USER sent: 331 -> send PASS, 230 -> send TYPE I */
    ST_PASS,     /* PASS sent: 230 -> send TYPE I */
    ST_TYPE,     /* TYPE I sent: 200 -> logged in */
    ST_READY,    /* logged in: waits for the clock to start (every session logged in) */
    ST_EPSV,     /* EPSV sent (the round's clock runs): 229 (|||port|) -> connect there */
    ST_DCONNECT, /* data connect in progress: connected -> send RETR */
    ST_RETR,     /* RETR sent: waits for 150/125 (the data may already be arriving) */
    ST_XFER,     /* 150/125 in: waits for the 226 and the data's EOF, in either order */
    ST_PAUSE,    /* a round failed: waits 50 ms, then starts the next one */
    ST_DONE,     /* the control connection is closed: the session is over */
};

static const char *const state_name[] = {
    "new", "connect", "banner", "USER", "PASS", "TYPE I", "ready",
    "EPSV", "data connect", "RETR", "RETR end", "pause", "done",
};

struct session {
    enum state st;
    int ctl;              /* control socket, -1 when closed */
    int data;             /* data socket of the current round, -1 when none */
    uint32_t data_gen;    /* counts data sockets: tells a stale epoll event from a new one */
    bool got_end;         /* ST_XFER: the 226 is in */
    bool data_eof;        /* ST_RETR/ST_XFER: the data connection reached EOF */
    size_t data_bytes;    /* bytes received on this round's data connection */
    double round_start;   /* when this round's EPSV was sent */
    double wait_until;    /* when the current wait on a socket times out (0: none) */
    double wake_at;       /* ST_PAUSE: when the next round starts */
    size_t inlen;         /* bytes in `in` */
    char in[CTL_BUF];     /* control bytes received and not yet parsed as replies */
};

/* The run's parameters and counters (one process, one loop: globals keep it plain). */
static struct sockaddr_storage target;  /* HOST:PORT; data connects change the port */
static socklen_t target_len;
static int family;
static const char *user_cmd, *pass_cmd, *retr_cmd;
static size_t want_size;
static int nsessions;
static struct session *sessions;
static int epfd;

static int logins_in_flight, next_login, logged_in, login_failed;
static int active;                       /* sessions not yet ST_DONE */
static double stop_at;                   /* the deadline: no round starts after it */

static long transfers, errors, nsamples;
static char samples[SAMPLES][SAMPLE_LEN + 1];
static double *latencies;
static size_t nlat, cap_lat;

static char sink[1 << 18];               /* every data connection is read into this */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "smallload: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(2);
}

/* epoll tags: bit 0 = data socket, bits 1-31 = session index, bits 32-63 = data_gen */
static uint64_t tag(int idx, bool is_data, uint32_t gen)
{
    return ((uint64_t)gen << 32) | ((uint64_t)(uint32_t)idx << 1) | (is_data ? 1u : 0u);
}

/* --- errors ------------------------------------------------------------------------ */

/* Count an error; keep its text ("WHAT: reply text", no trailing CRLF) if among the
 * first SAMPLES. */
static void note_error(const char *what, const char *text, size_t len)
{
    errors++;
    if (nsamples >= SAMPLES)
        return;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    if (len > SAMPLE_LEN)
        len = SAMPLE_LEN;
    snprintf(samples[nsamples++], SAMPLE_LEN + 1, "%s: %.*s", what, (int)len, text);
}

static void note_errno(const char *what, int err)
{
    const char *msg = strerror(err);
    note_error(what, msg, strlen(msg));
}

/* --- sockets ----------------------------------------------------------------------- */

static void close_data(struct session *s)
{
    if (s->data >= 0) {
        close(s->data);  /* also leaves the epoll set */
        s->data = -1;
    }
    s->data_gen++;
}

/* Close everything of this session: it is over. */
static void end_session(struct session *s)
{
    close_data(s);
    if (s->ctl >= 0) {
        close(s->ctl);
        s->ctl = -1;
    }
    s->st = ST_DONE;
    s->wait_until = 0;
    active--;
}

/* A non-blocking socket connecting to `target` at `port` (0: the control port),
 * registered in epoll with `events`; -1 and errno on failure. */
static int start_connect(uint16_t port, uint32_t events, uint64_t epoll_tag)
{
    struct sockaddr_storage sa = target;
    if (port) {
        if (family == AF_INET)
            ((struct sockaddr_in *)&sa)->sin_port = htons(port);
        else
            ((struct sockaddr_in6 *)&sa)->sin6_port = htons(port);
    }
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, target_len) < 0 && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    struct epoll_event ev = {.events = events, .data.u64 = epoll_tag};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

/* The pending error of a socket whose connect finished (0: connected). */
static int connect_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

/* Send one command on the control connection. Commands are short and only one is
 * outstanding, so the socket buffer always takes it whole; anything else is an error. */
static bool send_cmd(struct session *s, const char *cmd, enum state next)
{
    size_t len = strlen(cmd);
    ssize_t n = send(s->ctl, cmd, len, MSG_NOSIGNAL);
    if (n != (ssize_t)len) {
        note_errno(state_name[next], n < 0 ? errno : EAGAIN);
        end_session(s);
        return false;
    }
    s->st = next;
    s->wait_until = now() + IO_TIMEOUT;
    return true;
}

/* --- logins ------------------------------------------------------------------------ */

static void start_next_login(void);

/* A login ended (logged in or failed): its slot goes to the next session. */
static void login_over(bool ok)
{
    logins_in_flight--;
    if (ok)
        logged_in++;
    else
        login_failed++;
    start_next_login();
}

static void login_failed_with(struct session *s, const char *what, const char *text,
                              size_t len)
{
    char label[64];
    snprintf(label, sizeof label, "login: %s", what);
    note_error(label, text, len);
    end_session(s);
    login_over(false);
}

/* ST_NEW -> ST_CONNECT for sessions while a login slot is free. A failed connect frees
 * its slot again and calls back here: the outer call's loop takes the next one. */
static void start_next_login(void)
{
    static bool running;
    if (running)
        return;
    running = true;
    while (logins_in_flight < LOGIN_SLOTS && next_login < nsessions) {
        int idx = next_login++;
        struct session *s = &sessions[idx];
        logins_in_flight++;
        /* EPOLLOUT only until connected (then EPOLLIN only, level-triggered) */
        s->ctl = start_connect(0, EPOLLOUT, tag(idx, false, 0));
        if (s->ctl < 0) {
            int err = errno;
            const char *msg = strerror(err);
            login_failed_with(s, "connect", msg, strlen(msg));
            continue;
        }
        s->st = ST_CONNECT;
        s->wait_until = now() + IO_TIMEOUT;
    }
    running = false;
}

/* --- rounds: EPSV, data connect, RETR ----------------------------------------------- */

/* Start a round (EPSV), or close the session if the deadline has passed. */
static void begin_round(struct session *s)
{
    if (now() >= stop_at) {
        end_session(s);
        return;
    }
    s->round_start = now();
    send_cmd(s, "EPSV\r\n", ST_EPSV);
}

/* A round failed: count it, drop its data connection, pause 50 ms. */
static void round_failed(struct session *s, const char *what, const char *text, size_t len)
{
    note_error(what, text, len);
    close_data(s);
    s->st = ST_PAUSE;
    s->wait_until = 0;
    s->wake_at = now() + ERROR_PAUSE;
}

static void round_failed_errno(struct session *s, const char *what, int err)
{
    const char *msg = strerror(err);
    round_failed(s, what, msg, strlen(msg));
}

/* The round is complete when the 226 and the data EOF are both in. */
static void maybe_round_done(struct session *s)
{
    if (s->st != ST_XFER || !s->got_end || !s->data_eof)
        return;
    if (s->data_bytes != want_size) {
        char msg[96];
        int n = snprintf(msg, sizeof msg, "226 but %zu bytes, not %zu", s->data_bytes,
                         want_size);
        round_failed(s, "RETR end", msg, (size_t)n);
        return;
    }
    double t = now();
    if (nlat == cap_lat) {
        cap_lat = cap_lat ? cap_lat * 2 : 4096;
        latencies = realloc(latencies, cap_lat * sizeof *latencies);
        if (!latencies)
            die("%s", "out of memory");
    }
    latencies[nlat++] = t - s->round_start;
    transfers++;
    close_data(s);
    begin_round(s);
}

/* "229 Entering Extended Passive Mode (|||port|)": the port, or 0. */
static uint16_t epsv_port(const char *text, size_t len)
{
    for (size_t i = 0; i + 4 < len; i++) {
        if (memcmp(text + i, "(|||", 4) != 0)
            continue;
        unsigned long port = 0;
        size_t j = i + 4;
        while (j < len && text[j] >= '0' && text[j] <= '9' && port <= 65535)
            port = port * 10 + (unsigned long)(text[j++] - '0');
        if (j > i + 4 && j + 1 < len && text[j] == '|' && text[j + 1] == ')' &&
            port >= 1 && port <= 65535)
            return (uint16_t)port;
    }
    return 0;
}

/* The data socket connected: send RETR. */
static void data_connected(struct session *s)
{
    s->data_eof = false;
    s->data_bytes = 0;
    s->got_end = false;
    send_cmd(s, retr_cmd, ST_RETR);
}

/* --- replies ----------------------------------------------------------------------- */

/* The first complete reply in s->in: its length (0: not complete yet). A multi-line
 * reply ("DDD-" ... "DDD ") ends at the line that repeats its code and a space. */
static size_t take_reply(const struct session *s)
{
    const char *buf = s->in, *end = s->in + s->inlen;
    const char *nl = memchr(buf, '\n', s->inlen);
    if (!nl)
        return 0;
    if (s->inlen < 4 || buf[3] != '-')
        return (size_t)(nl + 1 - buf);
    const char *line = nl + 1;
    for (;;) {
        nl = memchr(line, '\n', (size_t)(end - line));
        if (!nl)
            return 0;
        if (nl - line >= 4 && memcmp(line, buf, 3) == 0 && line[3] == ' ')
            return (size_t)(nl + 1 - buf);
        line = nl + 1;
    }
}

static int reply_code(const char *text, size_t len)
{
    if (len < 3)
        return 0;
    for (int i = 0; i < 3; i++)
        if (text[i] < '0' || text[i] > '9')
            return 0;
    return (text[0] - '0') * 100 + (text[1] - '0') * 10 + (text[2] - '0');
}

/* Does this state wait for a control reply? (Otherwise replies stay queued in s->in
 * for the next command, as load.py's do.) */
static bool wants_reply(enum state st)
{
    switch (st) {
    case ST_BANNER: case ST_USER: case ST_PASS: case ST_TYPE:
    case ST_EPSV: case ST_RETR: case ST_XFER:
        return true;
    default:
        return false;
    }
}

/* One reply for a session in a state that waits for one. */
static void on_reply(struct session *s, int code, const char *text, size_t len)
{
    switch (s->st) {
    case ST_BANNER:
        if (code == 220)
            send_cmd(s, user_cmd, ST_USER);
        else
            login_failed_with(s, "banner", text, len);
        break;
    case ST_USER:
        if (code == 331)
            send_cmd(s, pass_cmd, ST_PASS);
        else if (code == 230)
            send_cmd(s, "TYPE I\r\n", ST_TYPE);
        else
            login_failed_with(s, "USER", text, len);
        break;
    case ST_PASS:
        if (code == 230)
            send_cmd(s, "TYPE I\r\n", ST_TYPE);
        else
            login_failed_with(s, "PASS", text, len);
        break;
    case ST_TYPE:
        if (code != 200) {
            login_failed_with(s, "TYPE I", text, len);
            break;
        }
        s->wait_until = 0;
        s->st = ST_READY;
        login_over(true);
        break;
    case ST_EPSV: {
        uint16_t port = code == 229 ? epsv_port(text, len) : 0;
        if (!port) {
            round_failed(s, "EPSV", text, len);
            break;
        }
        int idx = (int)(s - sessions);
        uint32_t gen = ++s->data_gen;
        /* edge-triggered, both directions: one registration serves the connect
         * (EPOLLOUT) and the reads (EPOLLIN), no EPOLL_CTL_MOD per transfer */
        s->data = start_connect(port, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                tag(idx, true, gen));
        if (s->data < 0) {
            round_failed_errno(s, "data connect", errno);
            break;
        }
        s->st = ST_DCONNECT;
        s->wait_until = now() + IO_TIMEOUT;
        break;
    }
    case ST_RETR:
        if (code == 150 || code == 125)
            s->st = ST_XFER;
        else
            round_failed(s, "RETR", text, len);
        break;
    case ST_XFER:
        if (code == 226) {
            s->got_end = true;
            maybe_round_done(s);
        } else {
            round_failed(s, "RETR end", text, len);
        }
        break;
    default:
        break;
    }
}

/* Deliver the complete replies in s->in while the session waits for one. */
static void pump(struct session *s)
{
    size_t len;
    while (wants_reply(s->st) && (len = take_reply(s)) > 0) {
        /* on_reply reads the reply in place (it never touches s->in), then it goes */
        on_reply(s, reply_code(s->in, len), s->in, len);
        s->inlen -= len;
        memmove(s->in, s->in + len, s->inlen);
    }
}

/* --- events ------------------------------------------------------------------------ */

/* The control connection closed or failed: an error (the session ends). */
static void ctl_lost(struct session *s, const char *why)
{
    bool in_login = s->st >= ST_CONNECT && s->st <= ST_TYPE;
    char what[64];
    snprintf(what, sizeof what, "%scontrol connection %s", in_login ? "login: " : "",
             why);
    note_error(what, state_name[s->st], strlen(state_name[s->st]));
    end_session(s);
    if (in_login)
        login_over(false);
}

static void on_ctl_event(struct session *s, uint32_t events)
{
    if (s->st == ST_CONNECT) {
        int err = (events & (EPOLLERR | EPOLLHUP)) ? connect_error(s->ctl) : 0;
        if (err || (events & (EPOLLERR | EPOLLHUP))) {
            const char *msg = strerror(err ? err : ECONNREFUSED);
            login_failed_with(s, "connect", msg, strlen(msg));
            return;
        }
        int one = 1;
        setsockopt(s->ctl, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = {.events = EPOLLIN,
                                 .data.u64 = tag((int)(s - sessions), false, 0)};
        if (epoll_ctl(epfd, EPOLL_CTL_MOD, s->ctl, &ev) < 0) {
            const char *msg = strerror(errno);
            login_failed_with(s, "epoll_ctl", msg, strlen(msg));
            return;
        }
        s->st = ST_BANNER;
        s->wait_until = now() + IO_TIMEOUT;
        return;
    }
    /* readable (level-triggered: one read per event is enough) */
    if (s->inlen == sizeof s->in) {
        ctl_lost(s, "sent a reply longer than the buffer in");
        return;
    }
    ssize_t n = recv(s->ctl, s->in + s->inlen, sizeof s->in - s->inlen, 0);
    if (n == 0) {
        ctl_lost(s, "closed in");
        return;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        ctl_lost(s, "failed in");
        return;
    }
    s->inlen += (size_t)n;
}

static void on_data_event(struct session *s, uint32_t events)
{
    if (s->st == ST_DCONNECT) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = (events & (EPOLLERR | EPOLLHUP)) ? connect_error(s->data) : 0;
        if (err || (events & EPOLLERR)) {
            round_failed_errno(s, "data connect", err ? err : ECONNREFUSED);
            return;
        }
        data_connected(s);  /* the data may have come with this same edge: read on */
    }
    if ((s->st != ST_RETR && s->st != ST_XFER) ||
        !(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        return;  /* nothing to read (edge-triggered: EPOLLOUT rides along) */
    /* edge-triggered: read until EAGAIN or EOF. As load.py's, a reset or error ends the
     * data like EOF does, and the byte count then decides. */
    while (!s->data_eof) {
        ssize_t n = recv(s->data, sink, sizeof sink, 0);
        if (n > 0) {
            s->data_bytes += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        s->data_eof = true;
    }
    close_data(s);
    maybe_round_done(s);
}

/* Timers: pauses that are over start the next round; waits past IO_TIMEOUT fail. */
static void tick(double t)
{
    for (int i = 0; i < nsessions; i++) {
        struct session *s = &sessions[i];
        if (s->st == ST_PAUSE && t >= s->wake_at) {
            begin_round(s);
            pump(s);
        } else if (s->wait_until > 0 && t >= s->wait_until) {
            /* out of step with the server: the session ends (a login frees its slot) */
            bool in_login = s->st >= ST_CONNECT && s->st <= ST_TYPE;
            char what[64];
            snprintf(what, sizeof what, "%stimeout (%.0f s) in",
                     in_login ? "login: " : "", IO_TIMEOUT);
            note_error(what, state_name[s->st], strlen(state_name[s->st]));
            end_session(s);
            if (in_login)
                login_over(false);
        }
    }
}

/* Run the loop until `done()` or `until` (monotonic seconds). */
static void run_loop(bool (*done)(void), double until)
{
    struct epoll_event evs[MAX_EVENTS];
    double next_tick = now();
    while (!done()) {
        double t = now();
        if (t >= until)
            return;
        if (t >= next_tick) {
            tick(t);
            next_tick = t + TICK_MS * 1e-3;
            continue;
        }
        int ms = (int)((next_tick - t) * 1e3) + 1;
        int n = epoll_wait(epfd, evs, MAX_EVENTS, ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            uint64_t u = evs[i].data.u64;
            struct session *s = &sessions[(u >> 1) & 0x7fffffffu];
            if (s->st == ST_DONE)
                continue;
            if (u & 1) {
                /* a data socket closed earlier in this batch: its event is stale */
                if ((uint32_t)(u >> 32) != s->data_gen || s->data < 0)
                    continue;
                on_data_event(s, evs[i].events);
            } else {
                on_ctl_event(s, evs[i].events);
            }
            pump(s);
        }
    }
}

static bool logins_done(void)
{
    return logged_in + login_failed >= nsessions;
}

static bool all_done(void)
{
    return active == 0;
}

/* --- output ------------------------------------------------------------------------ */

static void json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            printf("\\u%04x", *p);  /* control and non-ASCII bytes, as Latin-1 */
        else
            putchar(*p);
    }
    putchar('"');
}

static void emit(double seconds, double cpu)
{
    printf("{\"transfers\": %ld, \"seconds\": %.6f, \"errors\": %ld, \"error_samples\": [",
           transfers, seconds, errors);
    for (long i = 0; i < nsamples; i++) {
        if (i)
            fputs(", ", stdout);
        json_string(samples[i]);
    }
    fputs("], \"latencies\": [", stdout);
    for (size_t i = 0; i < nlat; i++)
        printf(i ? ", %.7g" : "%.7g", latencies[i]);
    printf("], \"cpu\": %.6f}\n", cpu);
    fflush(stdout);
}

/* --- setup ------------------------------------------------------------------------- */

static long parse_long(const char *what, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        die("bad %s", what);
    return v;
}

/* HOST must be a numeric loopback address: this project sends traffic to loopback only. */
static void set_target(const char *host, uint16_t port)
{
    memset(&target, 0, sizeof target);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&target;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&target;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        if ((ntohl(v4->sin_addr.s_addr) >> 24) != 127)
            die("%s is not a loopback address (127.0.0.0/8 or ::1 only)", host);
        v4->sin_family = family = AF_INET;
        v4->sin_port = htons(port);
        target_len = sizeof *v4;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr))
            die("%s is not a loopback address (127.0.0.0/8 or ::1 only)", host);
        v6->sin6_family = family = AF_INET6;
        v6->sin6_port = htons(port);
        target_len = sizeof *v6;
    } else {
        die("HOST must be a numeric address, not %s", host);
    }
}

/* A command line "VERB ARG\r\n"; ARG must not contain CR or LF. */
static const char *command(const char *verb, const char *arg)
{
    if (strpbrk(arg, "\r\n"))
        die("%s argument contains CR or LF", verb);
    size_t len = strlen(verb) + strlen(arg) + 4;
    char *c = malloc(len);
    if (!c)
        die("%s", "out of memory");
    snprintf(c, len, "%s %s\r\n", verb, arg);
    return c;
}

/* Two descriptors a session (control and data) and a few more. */
static void raise_nofile(void)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)nsessions * 2 + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = want;
    if (rl.rlim_max < want)
        rl.rlim_max = want;  /* needs CAP_SYS_RESOURCE: else the error below */
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("cannot raise RLIMIT_NOFILE for the sessions: %s", strerror(errno));
}

int main(int argc, char **argv)
{
    if (argc != 9) {
        fprintf(stderr,
                "usage: %s HOST PORT USER PASSWORD NAME SIZE SESSIONS DURATION\n",
                argv[0]);
        return 2;
    }
    set_target(argv[1], (uint16_t)parse_long("PORT", argv[2], 1, 65535));
    user_cmd = command("USER", argv[3]);
    pass_cmd = command("PASS", argv[4]);
    retr_cmd = command("RETR", argv[5]);
    want_size = (size_t)parse_long("SIZE", argv[6], 0, LONG_MAX);
    nsessions = (int)parse_long("SESSIONS", argv[7], 1, 1000000);
    char *end;
    double duration = strtod(argv[8], &end);
    if (end == argv[8] || *end || !(duration > 0 && duration <= 3600))
        die("bad DURATION %s (0 < seconds <= 3600)", argv[8]);

    /* last resort: whatever happens, the process does not outlive its budget */
    alarm((unsigned)(LOGIN_BUDGET + duration + TAIL_BUDGET + 10));
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    sessions = calloc((size_t)nsessions, sizeof *sessions);
    if (!sessions)
        die("%s", "out of memory");
    for (int i = 0; i < nsessions; i++) {
        sessions[i].st = ST_NEW;
        sessions[i].ctl = sessions[i].data = -1;
    }
    active = nsessions;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1: %s", strerror(errno));

    /* 1. logins, ramped; every session logged in or failed before the clock starts */
    start_next_login();
    run_loop(logins_done, now() + LOGIN_BUDGET);
    for (int i = 0; i < nsessions; i++) {
        struct session *s = &sessions[i];
        if (s->st == ST_NEW || (s->st >= ST_CONNECT && s->st <= ST_TYPE)) {
            const char *msg = "not logged in within the login budget (60 s)";
            note_error("login", msg, strlen(msg));
            end_session(s);
        }
    }

    /* 2. the timed part: every logged-in session loops rounds until the deadline; rounds
     * in flight then finish (as load.py's), within TAIL_BUDGET */
    double c0 = cpu_seconds(), t0 = now();
    stop_at = t0 + duration;
    for (int i = 0; i < nsessions; i++) {
        struct session *s = &sessions[i];
        if (s->st == ST_READY) {
            begin_round(s);
            pump(s);
        }
    }
    run_loop(all_done, stop_at + TAIL_BUDGET);
    double seconds = now() - t0, cpu = cpu_seconds() - c0;
    emit(seconds, cpu);
    return 0;
}
